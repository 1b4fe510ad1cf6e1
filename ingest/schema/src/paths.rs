//! Where lake files live: the lake's root ([`LakeRoot`], a local folder or an object store
//! prefix) and a file's path below it ([`LakeFile`], `<table>/date=…/hour=…/<name>.parquet`).
//! The ingest side names files with these and the query side lists the same folders, so a
//! file written is a file read.

use std::path::PathBuf;
use std::sync::Arc;

use crate::Partition;

/// Where the lake lives: a local folder, or a prefix of an object store (`s3://bucket/prefix/`)
/// with the store that reaches it (built by the caller, who holds the credentials).
#[derive(Clone)]
pub enum LakeRoot {
    Local(PathBuf),
    Store {
        /// The lake root, ending in `/`.
        url: url::Url,
        store: Arc<dyn object_store::ObjectStore>,
    },
}

impl std::fmt::Debug for LakeRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

impl LakeRoot {
    /// The root as a path or URL, for messages.
    pub fn display(&self) -> String {
        match self {
            LakeRoot::Local(path) => path.display().to_string(),
            LakeRoot::Store { url, .. } => url.to_string(),
        }
    }

    /// Where `file` is in a local lake; `None` for a lake on an object store.
    pub fn local_path(&self, file: &LakeFile) -> Option<PathBuf> {
        match self {
            LakeRoot::Local(root) => Some(root.join(file.as_str())),
            LakeRoot::Store { .. } => None,
        }
    }

    /// The key of `file` in the object store of a lake rooted at `url` (any root: only the
    /// URL's path counts).
    pub fn store_location(url: &url::Url, file: &str) -> object_store::path::Path {
        object_store::path::Path::from(format!("{}{file}", url.path().trim_start_matches('/')))
    }

    /// `file` as a full path or URL, for messages.
    pub fn display_file(&self, file: &str) -> String {
        match self {
            LakeRoot::Local(root) => root.join(file).display().to_string(),
            LakeRoot::Store { url, .. } => format!("{url}{file}"),
        }
    }
}

/// The path of a lake file relative to the lake root, with `/` between its parts whatever the
/// platform: `<table>/date=YYYY-MM-DD/hour=HH/<name>`. The ledger stores it as written.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct LakeFile(String);

impl LakeFile {
    /// The file `name` in `partition` of `table`.
    pub fn new(table: &str, partition: &Partition, name: &str) -> Self {
        LakeFile(format!("{table}/{}/{name}", partition.path()))
    }

    /// The path as written, relative to the lake root.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The table the file belongs to (its first folder).
    pub fn table(&self) -> &str {
        self.0.split('/').next().unwrap_or_default()
    }

    /// The folder the file is in (its partition), without a trailing `/`.
    pub fn folder(&self) -> &str {
        self.0.rsplit_once('/').map_or("", |(folder, _)| folder)
    }

    /// The file's name, after its last `/`.
    pub fn name(&self) -> &str {
        self.0.rsplit_once('/').map_or(&self.0, |(_, name)| name)
    }

    /// The file's base name and generation: a file written by a group is `<base>.parquet`
    /// (generation 0), and each rewrite of it without some rows (a newer version of one of
    /// its objects replaced them) is a new file `<base>.r<N>.parquet` beside it, never the
    /// same name again, so that a query that read a footer never reads another file's bytes
    /// at its offsets. Bases hold no `.`; `None` for a name of another shape.
    pub fn generation(&self) -> Option<(&str, u32)> {
        let stem = self.name().strip_suffix(".parquet")?;
        match stem.split_once('.') {
            None => Some((stem, 0)),
            Some((base, generation)) => {
                let number = generation.strip_prefix('r')?;
                let parsed: u32 = number.parse().ok()?;
                (parsed > 0 && !number.starts_with('0')).then_some((base, parsed))
            }
        }
    }

    /// The name of the next rewrite of this file (see [`LakeFile::generation`]).
    pub fn next_generation(&self) -> Option<LakeFile> {
        let (base, generation) = self.generation()?;
        let name = format!("{base}.r{}.parquet", generation + 1);
        Some(LakeFile(match self.folder() {
            "" => name,
            folder => format!("{folder}/{name}"),
        }))
    }

    /// Whether `other` is a generation of the same file (same folder, same base).
    pub fn same_base(&self, other: &LakeFile) -> bool {
        self.folder() == other.folder()
            && matches!(
                (self.generation(), other.generation()),
                (Some((a, _)), Some((b, _))) if a == b
            )
    }
}

impl std::fmt::Display for LakeFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for LakeFile {
    fn from(path: String) -> Self {
        LakeFile(path)
    }
}

impl From<&str> for LakeFile {
    fn from(path: &str) -> Self {
        LakeFile(path.to_owned())
    }
}

impl AsRef<str> for LakeFile {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<&str> for LakeFile {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<str> for LakeFile {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lake_file_names_its_table_and_partition() {
        let file = LakeFile::new("cloudtrail", &Partition::of_micros(0), "a.parquet");
        assert_eq!(file, "cloudtrail/date=1970-01-01/hour=00/a.parquet");
        assert_eq!(file.table(), "cloudtrail");
        let root = LakeRoot::Local(PathBuf::from("lake"));
        assert_eq!(
            root.local_path(&file),
            Some(PathBuf::from(
                "lake/cloudtrail/date=1970-01-01/hour=00/a.parquet"
            ))
        );
    }

    #[test]
    fn a_rewrite_is_a_new_generation_beside_the_file_and_never_its_name() {
        let first = LakeFile::from("cloudtrail/date=2026-01-01/hour=05/g-1a2b.parquet");
        assert_eq!(first.folder(), "cloudtrail/date=2026-01-01/hour=05");
        assert_eq!(first.name(), "g-1a2b.parquet");
        assert_eq!(first.generation(), Some(("g-1a2b", 0)));
        let second = first.next_generation().expect("next");
        assert_eq!(
            second,
            "cloudtrail/date=2026-01-01/hour=05/g-1a2b.r1.parquet"
        );
        assert_eq!(second.generation(), Some(("g-1a2b", 1)));
        let tenth = (1..10).fold(second.clone(), |f, _| f.next_generation().expect("next"));
        assert_eq!(tenth.name(), "g-1a2b.r10.parquet");
        assert!(first.same_base(&second) && second.same_base(&tenth));
        assert!(!first.same_base(&"cloudtrail/date=2026-01-01/hour=05/g-1a2b-1.parquet".into()));
        assert!(!first.same_base(&"cloudtrail/date=2026-01-01/hour=06/g-1a2b.parquet".into()));
        for odd in [
            "x.r0.parquet",
            "x.r01.parquet",
            "x.v1.parquet",
            "x.rz.parquet",
            "x.json",
        ] {
            assert_eq!(LakeFile::from(odd).generation(), None, "{odd}");
        }
    }

    #[test]
    fn a_store_location_is_below_the_roots_prefix() {
        let url = url::Url::parse("s3://bucket/lake/").expect("url");
        assert_eq!(
            LakeRoot::store_location(&url, "alerts/x.parquet").as_ref(),
            "lake/alerts/x.parquet"
        );
        let url = url::Url::parse("s3://bucket/").expect("url");
        assert_eq!(
            LakeRoot::store_location(&url, "alerts/x.parquet").as_ref(),
            "alerts/x.parquet"
        );
    }

    #[test]
    fn a_lake_file_serializes_as_its_path() {
        let file = LakeFile::from("rejected/date=2026-01-01/hour=05/x.parquet");
        let json = serde_json::to_string(&file).expect("json");
        assert_eq!(json, "\"rejected/date=2026-01-01/hour=05/x.parquet\"");
        assert_eq!(serde_json::from_str::<LakeFile>(&json).expect("back"), file);
    }
}
