//! Replacing an object's rows: when a new version of an object arrives, the rows its earlier
//! version left in the lake files are removed by rewriting those files without them.

use arrow::array::{Array, BooleanArray, StringArray};
use arrow::compute::filter_record_batch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use auditlake_schema::{self as schema, LakeFile};

use super::file::OpenFile;
use super::store::Store;
use super::{LakeWriter, WriteError};

impl LakeWriter {
    /// Removes the rows that came from `source_uri` from the lake files `files`
    /// (rewriting each file without them, or deleting it when none remain), so that a new
    /// version of an object replaces the rows of the version ingested before. Files of tables
    /// without a `source_uri` column (alerts) are left alone. Repeating it changes nothing.
    ///
    /// Rewrites are serialized in the process: the objects of one commit group share its files,
    /// and two of them replaced at once would each read the file, drop their own rows and write
    /// it back under the same temporary name.
    pub fn remove_rows_of(&self, source_uri: &str, files: &[LakeFile]) -> Result<(), WriteError> {
        static REWRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _rewriting = REWRITING.lock().unwrap_or_else(|p| p.into_inner());
        let store = Store(self.root());
        for relative in files {
            let table = relative.table();
            if schema::file_schema(table).is_none_or(|s| s.column_with_name("source_uri").is_none())
            {
                continue;
            }
            let Some(bytes) = store.read(relative)? else {
                continue;
            };
            let parquet_err = |source| WriteError::Parquet {
                path: relative.to_string(),
                source,
            };
            let arrow_err = |source| WriteError::Arrow {
                table: table.to_owned(),
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
                let others: BooleanArray =
                    uris.iter().map(|u| Some(u != Some(source_uri))).collect();
                removed += batch.num_rows() - others.true_count();
                kept.push(filter_record_batch(&batch, &others).map_err(arrow_err)?);
            }
            if removed == 0 {
                continue;
            }
            if kept.iter().all(|b| b.num_rows() == 0) {
                self.discard(std::slice::from_ref(relative))?;
                continue;
            }
            let mut file = OpenFile::create(self.root(), relative.clone(), kept[0].schema())?;
            for batch in kept.iter().filter(|b| b.num_rows() > 0) {
                file.write(batch)?;
            }
            let (_, sink) = file.finish()?;
            if let Some(dir) = store.publish(relative, sink)? {
                Store::sync_folders(&[dir])?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::fixtures::*;

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
}
