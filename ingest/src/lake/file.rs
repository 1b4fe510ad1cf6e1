//! One Parquet file being written: rows appended are held, encoded in steps on the encoder
//! threads into the row group in progress, and row groups written to the file's [`Sink`]
//! until [`OpenFile::finish`] writes the footer.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;

use auditlake_schema::{LakeFile, LakeRoot};

use super::properties::{ROW_GROUP_ROWS, properties};
use super::store::{Sink, Store};
use super::{WriteError, WrittenFile};

/// The threads column chunks are encoded on, one per core, shared by every file.
///
/// Not rayon's global pool: `rayon::spawn` from a worker of another rayon pool queues the step
/// on *that* pool, and the caller then blocks waiting for it: with every worker of that pool
/// doing so, or waiting on the rewrite lock, nothing ran the step (the decoder threads were
/// such a pool). Steps here never wait on anything.
pub(super) fn encoders() -> &'static rayon::ThreadPool {
    start_encoders(0)
}

static ENCODERS: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();

/// Starts the encoder threads with `threads` of them (0: one per core) unless they run
/// already: a benchmark measuring one core calls it before writing anything.
pub fn start_encoders(threads: usize) -> &'static rayon::ThreadPool {
    ENCODERS.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("auditlake-encode-{i}"))
            .build()
            .expect("starting the Parquet encoder threads")
    })
}

/// One Parquet file being written. Appended rows are held until [`ENCODE_ROWS`] of them are,
/// then their columns are encoded in parallel on the encoder threads into the row group in progress
/// while the caller goes on: writing is the serial stage of a commit group, and encoding is
/// most of it, so this keeps it from holding back the decoders. One step encodes at a time per
/// file; the next waits for it. Large steps keep the cost of the hand-off small.
pub(super) struct OpenFile {
    pub(super) relative: LakeFile,
    schema: SchemaRef,
    file: SerializedFileWriter<Sink>,
    row_groups: ArrowRowGroupWriterFactory,
    /// The column writers of the row group in progress.
    columns: RowGroupColumns,
    /// Rows appended and not yet encoded, all bound for the row group in progress.
    held: Vec<RecordBatch>,
    held_rows: usize,
    /// Rows of the row group in progress, encoded or held.
    row_group_rows: usize,
    pub(super) rows: usize,
    /// The group's append count at this file's last append.
    pub(super) last_append: u64,
}

/// The column writers of an open file's row group in progress: for each field of its schema,
/// the writers of the field's Parquet leaf columns.
enum RowGroupColumns {
    /// No row of the row group is encoded yet.
    NotStarted,
    /// A step is encoding rows with them on the encoder threads; they come back through `encoded`.
    /// `bytes`: the rows handed over and the pages encoded before, as an estimate of the
    /// memory held meanwhile.
    Encoding {
        encoded: std::sync::mpsc::Receiver<EncodeOutcome>,
        bytes: usize,
    },
}

/// What an encoding step hands back: its column writers, the first error, or its panic.
type EncodeOutcome =
    std::thread::Result<Result<Vec<Vec<ArrowColumnWriter>>, parquet::errors::ParquetError>>;

/// Rows an open file holds before encoding them.
pub(super) const ENCODE_ROWS: usize = 16 * 1024;

impl OpenFile {
    /// Creates the file `relative` (locally under its temporary name).
    pub(super) fn create(
        root: &LakeRoot,
        relative: LakeFile,
        schema: SchemaRef,
    ) -> Result<Self, WriteError> {
        let sink = Store(root).create(&relative)?;
        let properties = properties(&schema);
        // Through ArrowWriter so that the file carries the Arrow schema like any other.
        let (file, row_groups) = ArrowWriter::try_new(sink, schema.clone(), Some(properties))
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(|source| WriteError::Parquet {
                path: relative.to_string(),
                source,
            })?;
        Ok(OpenFile {
            relative,
            schema,
            file,
            row_groups,
            columns: RowGroupColumns::NotStarted,
            held: Vec::new(),
            held_rows: 0,
            row_group_rows: 0,
            rows: 0,
            last_append: 0,
        })
    }

    fn parquet_err(&self) -> impl Fn(parquet::errors::ParquetError) -> WriteError + '_ {
        move |source| WriteError::Parquet {
            path: self.relative.to_string(),
            source,
        }
    }

    /// Writes the footer (and syncs a local file); the file is then ready to publish.
    pub(super) fn finish(mut self) -> Result<(WrittenFile, Sink), WriteError> {
        self.flush_row_group()?;
        let sink = self
            .file
            .into_inner()
            .map_err(|source| WriteError::Parquet {
                path: self.relative.to_string(),
                source,
            })?;
        sink.sync()?;
        let written = WrittenFile {
            relative_path: self.relative,
            rows: self.rows,
        };
        Ok((written, sink))
    }

    /// Appends `batch`, completing a row group each [`ROW_GROUP_ROWS`] rows.
    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<(), WriteError> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let n = (ROW_GROUP_ROWS - self.row_group_rows).min(batch.num_rows() - offset);
            self.held.push(batch.slice(offset, n));
            self.held_rows += n;
            self.row_group_rows += n;
            offset += n;
            if self.row_group_rows >= ROW_GROUP_ROWS {
                self.flush_row_group()?;
            } else if self.held_rows >= ENCODE_ROWS {
                self.encode_held()?;
            }
        }
        self.rows += batch.num_rows();
        Ok(())
    }

    /// Starts encoding the held rows into the row group in progress, one task per field, on
    /// the encoder threads; waits first for the step before, if it is still encoding.
    fn encode_held(&mut self) -> Result<(), WriteError> {
        if self.held.is_empty() {
            return Ok(());
        }
        let mut columns = self.take_columns()?;
        if columns.is_empty() {
            columns = self.new_column_writers()?;
        }
        let held = std::mem::take(&mut self.held);
        self.held_rows = 0;
        let bytes = held
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .chain(columns.iter().flatten().map(ArrowColumnWriter::memory_size))
            .sum();
        let fields = self.schema.fields().clone();
        let (done, encoded) = std::sync::mpsc::sync_channel(1);
        encoders().spawn(move || {
            // A panic is handed to the waiting caller, as a panic of a parallel loop would be.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                columns
                    .par_iter_mut()
                    .enumerate()
                    .try_for_each(|(index, writers)| {
                        for batch in &held {
                            let leaves = compute_leaves(&fields[index], batch.column(index))?;
                            for (writer, leaf) in writers.iter_mut().zip(&leaves) {
                                writer.write(leaf)?;
                            }
                        }
                        Ok(())
                    })
            }));
            // The file may have been dropped (its group abandoned): nobody waits then.
            let _ = done.send(outcome.map(|result| result.map(|()| columns)));
        });
        self.columns = RowGroupColumns::Encoding { encoded, bytes };
        Ok(())
    }

    /// The column writers of the row group in progress, once no step is encoding with them;
    /// empty when the row group has not started.
    fn take_columns(&mut self) -> Result<Vec<Vec<ArrowColumnWriter>>, WriteError> {
        match std::mem::replace(&mut self.columns, RowGroupColumns::NotStarted) {
            RowGroupColumns::NotStarted => Ok(Vec::new()),
            RowGroupColumns::Encoding { encoded, .. } => match encoded.recv() {
                Ok(Ok(result)) => result.map_err(self.parquet_err()),
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(std::sync::mpsc::RecvError) => {
                    Err(self.parquet_err()(parquet::errors::ParquetError::General(
                        "an encoding step ended without handing back its columns".to_owned(),
                    )))
                }
            },
        }
    }

    /// The writers of a new row group, grouped by the field their leaf column belongs to.
    fn new_column_writers(&self) -> Result<Vec<Vec<ArrowColumnWriter>>, WriteError> {
        let index = self.file.flushed_row_groups().len();
        let writers = self
            .row_groups
            .create_column_writers(index)
            .map_err(self.parquet_err())?;
        let descriptor = self.file.schema_descr();
        let mut by_field: Vec<Vec<ArrowColumnWriter>> = (0..self.schema.fields().len())
            .map(|_| Vec::new())
            .collect();
        for (leaf, writer) in writers.into_iter().enumerate() {
            by_field[descriptor.get_column_root_idx(leaf)].push(writer);
        }
        Ok(by_field)
    }

    /// Completes the row group in progress (its columns' last pages compressed in parallel)
    /// and writes it to the file.
    fn flush_row_group(&mut self) -> Result<(), WriteError> {
        self.encode_held()?;
        let columns = self.take_columns()?;
        if columns.is_empty() {
            return Ok(());
        }
        self.row_group_rows = 0;
        let chunks = encoders().install(|| {
            columns
                .into_par_iter()
                .flatten()
                .map(ArrowColumnWriter::close)
                .collect::<Result<Vec<_>, _>>()
        });
        let relative = &self.relative;
        let parquet_err = |source| WriteError::Parquet {
            path: relative.to_string(),
            source,
        };
        let chunks = chunks.map_err(parquet_err)?;
        let mut row_group = self.file.next_row_group().map_err(parquet_err)?;
        for chunk in chunks {
            chunk
                .append_to_row_group(&mut row_group)
                .map_err(parquet_err)?;
        }
        row_group.close().map_err(parquet_err)?;
        Ok(())
    }

    /// Bytes held in memory: the row group in progress (rows not yet encoded, and pages), and
    /// what the sink holds.
    pub(super) fn memory_size(&self) -> usize {
        let held: usize = self
            .held
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum();
        let encoded = match &self.columns {
            RowGroupColumns::NotStarted => 0,
            RowGroupColumns::Encoding { bytes, .. } => *bytes,
        };
        held + encoded + self.file.inner().memory_size()
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use auditlake_schema as schema;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::lake::fixtures::*;

    #[test]
    fn rows_held_and_encoded_in_steps_fill_row_groups_of_the_set_size_in_order() {
        let (dir, writer) = local_lake();
        let mut group = writer.open_group("g".into());
        // Uneven batches, so that encoding steps and row groups both cut through batches.
        let sizes: Vec<usize> = (0..60).map(|i| 1_000 + (i * 7_919) % 9_000).collect();
        let mut expected = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let uri = format!("o{i}");
            group
                .append(schema::REJECTED, &rows(&uri, &vec![500_000; *size]), 0)
                .expect("append");
            expected.extend(std::iter::repeat_n(uri, *size));
        }
        group.finish().expect("finish").publish().expect("publish");
        let files = parquet_files(dir.path());
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(read_uris(dir.path(), &files[0]), expected);

        let file = File::open(dir.path().join(&files[0])).expect("open");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("reader");
        let groups: Vec<i64> = reader
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        let total = expected.len() as i64;
        let full = ROW_GROUP_ROWS as i64;
        assert!(total > 2 * full, "the test spans three row groups");
        assert_eq!(groups, [full, full, total - 2 * full]);
        assert_eq!(
            reader
                .schema()
                .field_with_name("ingested_at")
                .expect("time")
                .data_type(),
            &schema::timestamp_type(),
            "the file carries the Arrow schema (time zone UTC)"
        );
    }

    #[test]
    fn rows_handed_to_an_encoding_step_count_as_held_and_files_fed_in_turn_keep_their_order() {
        let (dir, writer) = local_lake();
        let mut group = writer.open_group("g".into());
        // Two hours' files fed in turn, each with several encoding steps under way at times.
        let mut expected: [Vec<String>; 2] = Default::default();
        for i in 0..12 {
            let hour = i % 2;
            let uri = format!("o{i}");
            let batch = rows(&uri, &vec![hour as i64; ENCODE_ROWS]);
            group.append(schema::REJECTED, &batch, 0).expect("append");
            // The rows just went to an encoding step, which may still be running.
            assert!(
                group.buffered_bytes() >= batch.get_array_memory_size(),
                "rows being encoded are held in memory"
            );
            expected[hour].extend(std::iter::repeat_n(uri, ENCODE_ROWS));
        }
        group.finish().expect("finish").publish().expect("publish");
        let files = parquet_files(dir.path());
        assert_eq!(files.len(), 2, "{files:?}");
        for (hour, uris) in expected.iter().enumerate() {
            let file = files
                .iter()
                .find(|f| f.contains(&format!("hour={hour:02}/")))
                .expect("the hour's file");
            assert_eq!(&read_uris(dir.path(), file), uris, "{file}");
        }
    }

    #[test]
    fn a_file_written_on_a_thread_of_another_pool_is_encoded_even_with_that_pool_busy() {
        // A caller on a busy rayon pool of its own: one thread, whose job waits for its encoding.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        let dir = tempfile::tempdir().expect("tempdir");
        let root = LakeRoot::Local(dir.path().to_path_buf());
        let (done, finished) = std::sync::mpsc::channel();
        pool.spawn(move || {
            let writer = LakeWriter::create(root).expect("writer");
            let mut group = writer.open_group("g".into());
            let files = group
                .append(
                    schema::REJECTED,
                    &rows("a", &vec![500_000; 2 * ENCODE_ROWS]),
                    0,
                )
                .expect("append");
            group.finish().expect("finish").publish().expect("publish");
            writer.remove_rows_of("a", &files).expect("remove");
            let _ = done.send(());
        });
        finished
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the job's encoding steps never ran");
        assert_eq!(parquet_files(dir.path()), Vec::<String>::new());
    }
}
