//! [`LakeWriter`], the lake's entry point for the pipeline: it opens commit groups' files
//! ([`GroupFiles`]), undoes what an abandoned group wrote, cleans up after a crash, tells
//! whether the lake takes writes, and (in `rewrite`) replaces an object's rows.

use std::collections::BTreeMap;

use auditlake_schema::{self as schema, LakeFile, LakeRoot};

use super::WriteError;
use super::group::GroupFiles;
use super::store::Store;

/// Writes batches into a lake root; see the module documentation of [`crate::lake`].
#[derive(Debug, Clone)]
pub struct LakeWriter {
    root: LakeRoot,
}

impl LakeWriter {
    /// A writer under `root`, creating the folder of every table of a local lake.
    pub fn create(root: LakeRoot) -> Result<Self, WriteError> {
        if let LakeRoot::Local(path) = &root {
            for table in schema::TABLES {
                let dir = path.join(table);
                std::fs::create_dir_all(&dir).map_err(super::io("creating", &dir))?;
            }
        }
        Ok(LakeWriter { root })
    }

    /// The lake root.
    pub fn root(&self) -> &LakeRoot {
        &self.root
    }

    /// Opens a set of files named `<stem>.parquet`, one per table and partition that rows are
    /// appended to; see [`GroupFiles`].
    pub fn open_group(&self, stem: String) -> GroupFiles {
        GroupFiles {
            root: self.root.clone(),
            stem,
            open: BTreeMap::new(),
            closed: Vec::new(),
            opened: Vec::new(),
            appends: 0,
        }
    }

    /// Deletes the temporary files a stopped run left in a local lake (a group being filled when
    /// the process was killed, or one that failed), those last modified more than `older_than`
    /// ago, or all of them with `None`; returns how many. A lake on an object store has none.
    pub fn remove_stray_temp_files(
        &self,
        older_than: Option<std::time::Duration>,
    ) -> Result<usize, WriteError> {
        let LakeRoot::Local(root) = &self.root else {
            return Ok(0);
        };
        let mut removed = 0;
        for table in schema::TABLES {
            for entry in walkdir::WalkDir::new(root.join(table))
                .into_iter()
                .flatten()
            {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy();
                if !entry.file_type().is_file() || !name.starts_with('.') || !name.ends_with(".tmp")
                {
                    continue;
                }
                let old_enough = match older_than {
                    None => true,
                    Some(age) => entry
                        .metadata()
                        .ok()
                        .and_then(|m| m.modified().ok())
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|elapsed| elapsed > age),
                };
                if !old_enough {
                    continue;
                }
                match std::fs::remove_file(path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(super::io("deleting", path)(e)),
                }
            }
        }
        Ok(removed)
    }

    /// Whether the lake takes a write now. A local lake writes, syncs and deletes a file of
    /// 1 MiB at its root (a group needs at least that much room); a lake on an object store
    /// puts and deletes a small object there.
    pub fn probe(&self) -> Result<(), WriteError> {
        Store(&self.root).probe()
    }

    /// Deletes lake files and, in a local lake, their temporary names; files already gone are
    /// fine. Used to undo files of a group that was never committed.
    pub fn discard(&self, files: &[LakeFile]) -> Result<(), WriteError> {
        files
            .iter()
            .try_for_each(|file| Store(&self.root).delete(file, true))
    }

    /// Deletes what a group wrote before publishing: the temporary names of local files
    /// (object store files are only put on publish).
    pub fn discard_unpublished(&self, files: &[LakeFile]) -> Result<(), WriteError> {
        files
            .iter()
            .try_for_each(|file| Store(&self.root).delete(file, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::fixtures::*;

    #[test]
    fn stray_temporary_files_are_removed_at_start_and_nothing_else() {
        let (dir, writer) = local_lake();
        let partition = dir.path().join("cloudtrail/date=2026-11-01/hour=10");
        std::fs::create_dir_all(&partition).expect("partition");
        let old = partition.join(".g-1.parquet.tmp");
        let new = partition.join(".g-2.parquet.tmp");
        let published = partition.join("g-0.parquet");
        for path in [&old, &new, &published] {
            std::fs::write(path, b"x").expect("file");
        }
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(an_hour_ago))
            .expect("age");

        // Shared lake: only what no live worker can still be writing.
        let removed = writer
            .remove_stray_temp_files(Some(std::time::Duration::from_secs(3600)))
            .expect("remove");
        assert_eq!(removed, 1);
        assert!(!old.exists() && new.exists() && published.exists());
        // A lake of its own: every temporary file.
        assert_eq!(writer.remove_stray_temp_files(None).expect("remove"), 1);
        assert!(!new.exists() && published.exists());
    }

    #[test]
    fn discard_deletes_published_and_temporary_files() {
        let (dir, writer) = local_lake();
        let mut published = writer.open_group("g-1".into());
        published
            .append(schema::REJECTED, &rows("a", &[500_000]), 0)
            .expect("append");
        let published_paths = published.paths();
        published
            .finish()
            .expect("finish")
            .publish()
            .expect("publish");
        let mut unfinished = writer.open_group("g-2".into());
        unfinished
            .append(schema::REJECTED, &rows("b", &[500_000]), 0)
            .expect("append");
        let unfinished_paths = unfinished.paths();
        drop(unfinished);
        assert_eq!(walk(dir.path()).len(), 2, "one file and one temporary file");
        writer.discard(&published_paths).expect("discard");
        writer.discard(&unfinished_paths).expect("discard");
        writer
            .discard(&unfinished_paths)
            .expect("discarding again is fine");
        assert!(walk(dir.path()).is_empty());
    }
}
