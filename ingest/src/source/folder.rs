//! A local folder tree as a source: every regular file below the root is an object.
//!
//! A file counts as complete once its modification time is at least `settle` old, so a file
//! being copied in is not read half-written; it is listed on a later scan instead.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::layout::{self, ObjectKind};
use super::{Listing, LogSource, SourceError, SourceObject};

/// A folder source; see the module documentation.
#[derive(Debug)]
pub struct FolderSource {
    name: String,
    root: PathBuf,
    settle: Duration,
    atlas_project: Option<String>,
}

impl FolderSource {
    /// A source over `root`, which must exist (it is made absolute here).
    pub fn new(
        root: &Path,
        settle: Duration,
        atlas_project: Option<String>,
    ) -> Result<Self, SourceError> {
        let root = std::fs::canonicalize(root).map_err(|source| SourceError::List {
            location: root.display().to_string(),
            source,
        })?;
        Ok(FolderSource {
            name: format!("folder:{}", root.display()),
            root,
            settle,
            atlas_project,
        })
    }
}

/// Lists the complete files below `root`; see the module documentation.
fn scan_folder(root: &Path, settle: Duration) -> Result<Listing, SourceError> {
    let mut listing = Listing::default();
    let now = SystemTime::now();
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| SourceError::List {
            location: root.display().to_string(),
            source: e.into(),
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy();
        // Temporary and hidden files are someone else's work in progress.
        if name.starts_with('.') || name.ends_with(".tmp") {
            continue;
        }
        let meta = entry.metadata().map_err(|e| SourceError::List {
            location: entry.path().display().to_string(),
            source: e.into(),
        })?;
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if now.duration_since(modified).unwrap_or_default() < settle {
            listing.unsettled += 1;
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(root) else {
            continue;
        };
        let key = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let modified_micros = modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        listing.objects.push(SourceObject {
            uri: format!("file://{}", entry.path().display()),
            key,
            version: format!("{}-{}", meta.len(), modified_micros),
            size: meta.len(),
            modified_micros,
        });
    }
    Ok(listing)
}

#[async_trait::async_trait]
impl LogSource for FolderSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn classify(&self, object: &SourceObject) -> ObjectKind {
        layout::classify(&object.key, self.atlas_project.as_deref())
    }

    async fn list(&self) -> Result<Listing, SourceError> {
        let (root, settle) = (self.root.clone(), self.settle);
        tokio::task::spawn_blocking(move || scan_folder(&root, settle))
            .await
            .unwrap_or_else(|e| {
                Err(SourceError::List {
                    location: "folder scan task".into(),
                    source: std::io::Error::other(e),
                })
            })
    }

    async fn fetch(&self, object: &SourceObject) -> Result<Vec<u8>, SourceError> {
        let path = self.root.join(&object.key);
        tokio::fs::read(&path)
            .await
            .map_err(|source| SourceError::Fetch {
                uri: object.uri.clone(),
                source,
            })
    }
}
