//! Replacing an object's rows: when a new version of an object arrives, the rows its earlier
//! version left in the lake files are removed by rewriting those files without them.

use arrow::array::{Array, BooleanArray, StringArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use auditlake_schema::{self as schema, LakeFile};

use super::file::OpenFile;
use super::store::Store;
use super::{LakeWriter, WriteError};

impl LakeWriter {
    /// Removes the rows that came from `source_uri` from the lake files `files` (as the ledger
    /// listed them when that object was committed), so that a new version of an object
    /// replaces the rows of the version ingested before. Files of tables without a
    /// `source_uri` column (alerts) are left alone. Repeating it changes nothing.
    ///
    /// A file is never rewritten in place: its rows without the object's go to its next
    /// generation, a new name beside it (see [`LakeFile::generation`]), which is published
    /// whole before the old one is deleted. A query that listed the old file reads it whole or
    /// finds it gone (and starts again); a crash between the two leaves both, and the next
    /// rewrite of that file (the redo of the replacement, which the ledger has not recorded)
    /// deletes the older one. So the ledger's entries of the other objects in the file keep
    /// the name they were committed with, and each rewrite starts from the newest generation.
    ///
    /// Rewrites are serialized in the process: the objects of one commit group share its files.
    pub fn remove_rows_of(&self, source_uri: &str, files: &[LakeFile]) -> Result<(), WriteError> {
        static REWRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _rewriting = REWRITING.lock().unwrap_or_else(|p| p.into_inner());
        let store = Store(self.root());
        for listed in files {
            let table = listed.table();
            if schema::file_schema(table).is_none_or(|s| s.column_with_name("source_uri").is_none())
            {
                continue;
            }
            let mut generations = store.generations(listed)?;
            let Some(current) = generations.pop() else {
                continue;
            };
            // Older generations are left by a crash after their successor was published.
            self.discard(&generations)?;
            let Some(bytes) = store.read(&current)? else {
                continue;
            };
            let Some(kept) = self.rows_without(&current, bytes, source_uri)? else {
                continue;
            };
            if !kept.is_empty() {
                let next = current.next_generation().ok_or_else(|| WriteError::Io {
                    action: "naming the rewrite of",
                    path: current.to_string(),
                    source: std::io::Error::other("not a lake file name"),
                })?;
                let mut file = OpenFile::create(self.root(), next.clone(), kept[0].schema())?;
                for batch in &kept {
                    file.write(batch)?;
                }
                let (_, sink) = file.finish()?;
                if let Some(dir) = store.publish(&next, sink)? {
                    Store::sync_folders(&[dir])?;
                }
            }
            self.discard(std::slice::from_ref(&current))?;
        }
        Ok(())
    }

    /// The rows of `file` that did not come from `source_uri` (empty batches left out), or
    /// `None` when it holds none of that object's rows.
    fn rows_without(
        &self,
        file: &LakeFile,
        bytes: bytes::Bytes,
        source_uri: &str,
    ) -> Result<Option<Vec<RecordBatch>>, WriteError> {
        let parquet_err = |source| WriteError::Parquet {
            path: file.to_string(),
            source,
        };
        let arrow_err = |source| WriteError::Arrow {
            table: file.table().to_owned(),
            source,
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(parquet_err)?;
        let mut kept = Vec::new();
        let mut removed = 0;
        for batch in reader {
            let batch = batch.map_err(arrow_err)?;
            let uris = batch
                .column_by_name("source_uri")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>());
            let Some(uris) = uris else {
                kept.push(batch);
                continue;
            };
            let others: BooleanArray = uris.iter().map(|u| Some(u != Some(source_uri))).collect();
            removed += batch.num_rows() - others.true_count();
            kept.push(filter_record_batch(&batch, &others).map_err(arrow_err)?);
        }
        kept.retain(|b| b.num_rows() > 0);
        Ok((removed > 0).then_some(kept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::fixtures::*;

    /// A group of objects `a`, `b` and `c` sharing one rejected file, and the files of each.
    fn shared_file(writer: &LakeWriter) -> Vec<Vec<LakeFile>> {
        let mut group = writer.open_group("g-1".into());
        let files = ["a", "b", "c"]
            .iter()
            .map(|uri| {
                group
                    .append(schema::REJECTED, &rows(uri, &[500_000, 500_000]), 0)
                    .expect("append")
            })
            .collect();
        group.finish().expect("finish").publish().expect("publish");
        files
    }

    #[test]
    fn removing_an_objects_rows_keeps_the_others_and_deletes_emptied_files() {
        let (dir, writer) = local_lake();
        let mut group = writer.open_group("g-1".into());
        let a_files = group
            .append(schema::REJECTED, &rows("a", &[500_000, 500_001]), 0)
            .expect("append a");
        group
            .append(schema::REJECTED, &rows("b", &[500_000]), 0)
            .expect("append b");
        group.finish().expect("finish").publish().expect("publish");
        writer.remove_rows_of("a", &a_files).expect("remove");
        writer.remove_rows_of("a", &a_files).expect("repeat");
        let files = parquet_files(dir.path());
        assert_eq!(files.len(), 1, "a's own file is gone: {files:?}");
        assert_eq!(read_uris(dir.path(), &files[0]), ["b"]);
    }

    #[test]
    fn a_shared_file_is_rewritten_under_a_new_name_and_found_again_by_its_first_name() {
        let (dir, writer) = local_lake();
        let files = shared_file(&writer);
        let first = files[0][0].clone();
        assert_eq!(
            files[1],
            std::slice::from_ref(&first),
            "the objects share the file"
        );

        writer.remove_rows_of("a", &files[0]).expect("remove a");
        let after_a = parquet_files(dir.path());
        let second = first.next_generation().expect("next");
        assert_eq!(
            after_a,
            [second.to_string()],
            "the first name is gone, never rewritten"
        );
        assert_eq!(read_uris(dir.path(), &after_a[0]), ["b", "b", "c", "c"]);

        // The ledger still lists b's and c's rows under the name they were committed with.
        writer.remove_rows_of("b", &files[1]).expect("remove b");
        let after_b = parquet_files(dir.path());
        let third = second.next_generation().expect("next");
        assert_eq!(after_b, [third.to_string()]);
        assert_eq!(read_uris(dir.path(), &after_b[0]), ["c", "c"]);

        writer.remove_rows_of("b", &files[1]).expect("repeat");
        assert_eq!(
            parquet_files(dir.path()),
            after_b,
            "a repeat changes nothing"
        );
        writer.remove_rows_of("c", &files[2]).expect("remove c");
        assert_eq!(parquet_files(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn a_crash_between_publishing_a_rewrite_and_deleting_its_predecessor_is_undone_by_the_redo() {
        let (dir, writer) = local_lake();
        let files = shared_file(&writer);
        let first = files[0][0].clone();
        let kept = dir.path().join(format!("{first}.kept"));
        std::fs::copy(dir.path().join(first.as_str()), &kept).expect("keep");
        writer.remove_rows_of("a", &files[0]).expect("remove a");
        // As a crash leaves it: the rewrite published, its predecessor still there.
        std::fs::rename(&kept, dir.path().join(first.as_str())).expect("restore");
        assert_eq!(parquet_files(dir.path()).len(), 2);

        writer.remove_rows_of("a", &files[0]).expect("redo");
        let files_now = parquet_files(dir.path());
        let second = first.next_generation().expect("next");
        assert_eq!(files_now, [second.to_string()], "the predecessor is gone");
        assert_eq!(read_uris(dir.path(), &files_now[0]), ["b", "b", "c", "c"]);
    }
}
