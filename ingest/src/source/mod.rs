//! Where objects come from.
//!
//! A [`LogSource`] lists the objects it holds and fetches their bytes; it knows nothing of
//! decoding or of what was ingested before. The pipeline asks the ledger which listed objects
//! are new (by URI and version), classifies their keys with [`layout::classify`], and fetches
//! only those. A source must list an object under the same URI every time, and change its
//! `version` whenever its content may have changed.

pub mod cloudwatch;
pub mod folder;
pub mod keytime;
pub mod layout;
pub mod notify;
pub mod s3;

use std::fmt::Debug;

/// One object a source holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceObject {
    /// Stable, unique address (`file:///...`, `s3://bucket/key`); names lake files and ledger rows.
    pub uri: String,
    /// The key relative to the source root, `/`-separated; used to classify the object.
    pub key: String,
    /// Changes whenever the content may have changed (size and modification time, or ETag).
    pub version: String,
    /// Size in bytes as listed.
    pub size: u64,
    /// Last modification, microseconds since the epoch; the partition time of rows without one.
    pub modified_micros: i64,
}

/// Errors of a source, each naming what was being attempted.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("listing {location}: {source}")]
    List {
        location: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {uri}: {source}")]
    Fetch {
        uri: String,
        #[source]
        source: std::io::Error,
    },
    /// The object no longer exists; retrying cannot help.
    #[error("{uri} is gone (deleted after it was listed)")]
    Gone { uri: String },
    #[error("{location}: {message}")]
    Remote { location: String, message: String },
}

impl SourceError {
    /// A short, stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::List { .. } => "list",
            SourceError::Fetch { .. } => "fetch",
            SourceError::Gone { .. } => "gone",
            SourceError::Remote { .. } => "remote",
        }
    }
}

/// A place that holds log objects.
///
/// Contract: `list` returns every object currently present that is complete (a file still being
/// written is left for a later call); it may return objects already ingested. `fetch` returns
/// the bytes of one listed object, or an error naming it; it never returns partial content.
#[async_trait::async_trait]
pub trait LogSource: Send + Sync + Debug {
    /// A short name for logs and metrics.
    fn name(&self) -> &str;
    /// Project name stamped on Atlas rows from this source, if configured.
    fn atlas_project(&self) -> Option<&str> {
        None
    }
    /// What an object is, from its key; by default the key layout decides.
    fn classify(&self, key: &str) -> layout::ObjectKind {
        layout::classify(key, self.atlas_project())
    }
    /// Objects present now; see the trait contract.
    async fn list(&self) -> Result<Listing, SourceError>;
    /// The bytes of one object.
    async fn fetch(&self, object: &SourceObject) -> Result<Vec<u8>, SourceError>;
}

/// The result of one listing.
#[derive(Debug, Default)]
pub struct Listing {
    /// Complete objects.
    pub objects: Vec<SourceObject>,
    /// Objects seen but not yet complete (still being written); listed again later.
    pub unsettled: usize,
    /// Listing positions to save once every listed object is recorded (see
    /// [`crate::ledger::Ledger::save_cursors`]); the source reads them back on its next listing.
    pub cursors: Vec<(String, Vec<u8>)>,
}
