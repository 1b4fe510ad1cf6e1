//! The files of one commit group: rows of several objects, partitioned by hour, stream into
//! one [`OpenFile`] per table and partition; a finished group is published whole.

use std::collections::BTreeMap;

use arrow::array::{Array, RecordBatch, TimestampMicrosecondArray};
use arrow::compute::{SortOptions, sort_to_indices, take_record_batch};

use auditlake_schema::{self as schema, LakeFile, LakeRoot, Partition};

use super::file::OpenFile;
use super::store::{Sink, Store};
use super::{WriteError, WrittenFile};

/// Files a group keeps open at once (each holds its row group's encoded pages in memory).
pub const MAX_OPEN_FILES: usize = 3;

/// The files of one commit group: rows of several objects stream into one Parquet file per
/// table and partition. An open file holds its row group's encoded pages in memory, so at most
/// [`MAX_OPEN_FILES`] stay open: appending to another partition completes the one used least
/// recently (objects arrive in time order, so an hour left behind is seldom met again; if it
/// is, a second file is opened for it). Nothing is visible in the lake until
/// [`GroupFiles::finish`] then [`FinishedGroup::publish`]; dropping the group instead leaves at
/// most temporary files, which [`LakeWriter::discard`] of their paths removes.
pub struct GroupFiles {
    pub(super) root: LakeRoot,
    pub(super) stem: String,
    pub(super) open: BTreeMap<(String, Partition), OpenFile>,
    /// Files completed before the group was.
    pub(super) closed: Vec<(WrittenFile, Sink)>,
    /// Every file opened so far, whether it was completed or not (its position names the next
    /// one).
    pub(super) opened: Vec<LakeFile>,
    /// Appends so far (orders open files by last use).
    pub(super) appends: u64,
}

impl std::fmt::Debug for GroupFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupFiles")
            .field("stem", &self.stem)
            .field("files", &self.open.len())
            .finish()
    }
}

impl GroupFiles {
    /// Appends `batch` of `table`, each row to its partition's file (rows without a time to
    /// the partition of `fallback_micros`), a batch spread over partitions sorted by time
    /// first (see below). Returns the
    /// files the rows went to, relative to the lake root.
    pub fn append(
        &mut self,
        table: &str,
        batch: &RecordBatch,
        fallback_micros: i64,
    ) -> Result<Vec<LakeFile>, WriteError> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let column = schema::time_column(table).unwrap_or_default();
        let times = time_array(batch, table, column)?;
        let arrow_err = |source| WriteError::Arrow {
            table: table.to_owned(),
            source,
        };

        // One sort by time (rows without one first, as the fallback partition's) and one copy;
        // each partition is then a contiguous run of the sorted rows. Logs written as events
        // happen (MongoDB's audit log) are in order already, and an object whose rows all fall
        // in one hour (a CloudTrail file covers minutes) is one run already: neither is copied.
        let in_order = times.null_count() == 0 && times.values().is_sorted();
        let sorted = if in_order || one_partition(times, fallback_micros) {
            batch.clone()
        } else {
            let order = sort_to_indices(
                times,
                Some(SortOptions {
                    descending: false,
                    nulls_first: true,
                }),
                None,
            )
            .map_err(arrow_err)?;
            take_record_batch(batch, &order).map_err(arrow_err)?
        };
        let sorted_times = time_array(&sorted, table, column)?;
        let micros_of = |row: usize| {
            if sorted_times.is_null(row) {
                fallback_micros
            } else {
                sorted_times.value(row)
            }
        };
        let mut touched = Vec::new();
        let mut start = 0;
        while start < sorted.num_rows() {
            let partition = Partition::of_micros(micros_of(start));
            let mut end = start + 1;
            while end < sorted.num_rows() && Partition::of_micros(micros_of(end)) == partition {
                end += 1;
            }
            let key = (table.to_owned(), partition);
            if !self.open.contains_key(&key) {
                self.make_room()?;
                let name = match self.opened.len() {
                    0 => format!("{}.parquet", self.stem),
                    n => format!("{}-{n}.parquet", self.stem),
                };
                let relative = LakeFile::new(table, &key.1, &name);
                // Noted first: a file that fails half created is still the group's to delete.
                self.opened.push(relative.clone());
                let file = OpenFile::create(&self.root, relative, sorted.schema())?;
                self.open.insert(key.clone(), file);
            }
            self.appends += 1;
            let Some(file) = self.open.get_mut(&key) else {
                unreachable!("the partition's file was opened above");
            };
            file.last_append = self.appends;
            file.write(&sorted.slice(start, end - start))?;
            if !touched.contains(&file.relative) {
                touched.push(file.relative.clone());
            }
            start = end;
        }
        Ok(touched)
    }

    /// Completes the least recently used file if [`MAX_OPEN_FILES`] are open.
    fn make_room(&mut self) -> Result<(), WriteError> {
        if self.open.len() < MAX_OPEN_FILES {
            return Ok(());
        }
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, f)| f.last_append)
            .map(|(k, _)| k.clone());
        if let Some(file) = oldest.and_then(|k| self.open.remove(&k)) {
            self.closed.push(file.finish()?);
        }
        Ok(())
    }

    /// Rows appended so far.
    pub fn rows(&self) -> usize {
        self.open.values().map(|f| f.rows).sum::<usize>()
            + self.closed.iter().map(|(f, _)| f.rows).sum::<usize>()
    }

    /// Bytes held in memory: encoded row groups not yet flushed, and whole files bound for an
    /// object store.
    pub fn buffered_bytes(&self) -> usize {
        self.open
            .values()
            .map(OpenFile::memory_size)
            .chain(self.closed.iter().map(|(_, sink)| sink.memory_size()))
            .sum()
    }

    /// The files opened so far (also those whose writing failed).
    pub fn paths(&self) -> Vec<LakeFile> {
        self.opened.clone()
    }

    /// Completes every file (footers written; local files synced under their temporary names).
    pub fn finish(self) -> Result<FinishedGroup, WriteError> {
        let mut files = self.closed;
        for file in self.open.into_values() {
            files.push(file.finish()?);
        }
        Ok(FinishedGroup {
            root: self.root,
            files,
        })
    }
}

/// The complete files of a group, not yet in the lake.
pub struct FinishedGroup {
    pub(super) root: LakeRoot,
    pub(super) files: Vec<(WrittenFile, Sink)>,
}

impl std::fmt::Debug for FinishedGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FinishedGroup")
            .field("files", &self.files())
            .finish()
    }
}

impl FinishedGroup {
    /// The files, relative to the lake root, with their rows.
    pub fn files(&self) -> Vec<WrittenFile> {
        self.files.iter().map(|(f, _)| f.clone()).collect()
    }

    /// Puts every file in place: local files renamed then their folders synced, so each is
    /// durable on return; object store files put whole, one PUT each.
    pub fn publish(self) -> Result<(), WriteError> {
        let store = Store(&self.root);
        let mut folders = Vec::new();
        for (file, sink) in self.files {
            if let Some(dir) = store.publish(&file.relative_path, sink)?
                && !folders.contains(&dir)
            {
                folders.push(dir);
            }
        }
        // The renames are durable only once the directory entries are.
        Store::sync_folders(&folders)
    }
}

/// The time column of `table` in `batch`.
fn time_array<'b>(
    batch: &'b RecordBatch,
    table: &str,
    column: &str,
) -> Result<&'b TimestampMicrosecondArray, WriteError> {
    batch
        .column_by_name(column)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
        .ok_or_else(|| WriteError::NoTimeColumn {
            table: table.to_owned(),
            column: column.to_owned(),
        })
}

/// Whether all of `times` (a missing time counting as `fallback_micros`) fall in one partition.
fn one_partition(times: &TimestampMicrosecondArray, fallback_micros: i64) -> bool {
    let mut partitions = times
        .iter()
        .map(|t| Partition::of_micros(t.unwrap_or(fallback_micros)));
    match partitions.next() {
        Some(first) => partitions.all(|p| p == first),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::fixtures::*;

    #[test]
    fn a_group_writes_one_file_per_partition_and_nothing_before_publish() {
        let (dir, writer) = local_lake();
        let mut group = writer.open_group("g-1".into());
        let first = group
            .append(schema::REJECTED, &rows("a", &[500_001, 500_000]), 0)
            .expect("append a");
        let second = group
            .append(schema::REJECTED, &rows("b", &[500_000]), 0)
            .expect("append b");
        assert_eq!(first.len(), 2);
        assert_eq!(second.len(), 1);
        assert_eq!(group.rows(), 3);
        let finished = group.finish().expect("finish");
        assert!(
            parquet_files(dir.path()).is_empty(),
            "nothing visible before publish"
        );
        finished.publish().expect("publish");
        let files = parquet_files(dir.path());
        assert_eq!(files.len(), 2, "{files:?}");
        let both = files
            .iter()
            .find(|f| second.iter().any(|s| s == f.as_str()))
            .expect("b's file");
        assert_eq!(read_uris(dir.path(), both), ["a", "b"]);
        assert!(
            walk(dir.path())
                .iter()
                .all(|p| !p.to_string_lossy().ends_with(".tmp")),
            "temporary names are gone"
        );
    }

    #[test]
    fn rows_spread_over_hours_are_sorted_and_rows_of_one_hour_kept_in_their_order() {
        let (dir, writer) = local_lake();
        let mut group = writer.open_group("g".into());
        let base = 400_000 * HOUR;
        let one_hour = group
            .append(
                schema::REJECTED,
                &rows_at("a", &[base + 9, base + 2, base + 5]),
                0,
            )
            .expect("append a");
        let spread = [
            base + 2 * HOUR + 7,
            base + HOUR + 3,
            base + 2 * HOUR + 1,
            base + HOUR,
        ];
        let two_hours = group
            .append(schema::REJECTED, &rows_at("b", &spread), 0)
            .expect("append b");
        group.finish().expect("finish").publish().expect("publish");
        assert_eq!(read_indexes(dir.path(), &one_hour[0]), [0, 1, 2]);
        assert_eq!(two_hours.len(), 2);
        assert_eq!(
            read_indexes(dir.path(), &two_hours[0]),
            [3, 1],
            "sorted by time"
        );
        assert_eq!(
            read_indexes(dir.path(), &two_hours[1]),
            [2, 0],
            "sorted by time"
        );
    }

    #[test]
    fn a_missing_time_counts_in_the_hour_of_the_fallback() {
        let times = TimestampMicrosecondArray::from(vec![Some(3 * HOUR + 5), Some(3 * HOUR), None]);
        assert!(one_partition(&times, 3 * HOUR + 1));
        assert!(!one_partition(&times, 4 * HOUR));
        assert!(!one_partition(
            &TimestampMicrosecondArray::from(vec![3 * HOUR + 5, 4 * HOUR]),
            3 * HOUR
        ));
    }

    #[test]
    fn a_group_keeps_few_files_open_and_reopens_a_partition_met_again() {
        let (dir, writer) = local_lake();
        let mut group = writer.open_group("g".into());
        let hours: Vec<i64> = (0..=MAX_OPEN_FILES as i64).map(|h| 500_000 + h).collect();
        for hour in &hours {
            group
                .append(schema::REJECTED, &rows("a", &[*hour]), 0)
                .expect("append");
        }
        assert_eq!(group.open.len(), MAX_OPEN_FILES);
        assert_eq!(group.closed.len(), 1, "the first hour's file was completed");
        let again = group
            .append(schema::REJECTED, &rows("b", &[hours[0]]), 0)
            .expect("append again");
        assert_eq!(again.len(), 1);
        assert!(
            again[0]
                .as_str()
                .ends_with(&format!("g-{}.parquet", hours.len())),
            "{again:?}"
        );
        assert_eq!(group.rows(), hours.len() + 1);
        group.finish().expect("finish").publish().expect("publish");
        let files = parquet_files(dir.path());
        assert_eq!(files.len(), hours.len() + 1);
        let total: usize = files.iter().map(|f| read_uris(dir.path(), f).len()).sum();
        assert_eq!(total, hours.len() + 1, "every row once");
    }
}
