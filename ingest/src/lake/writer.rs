//! Writes batches of a table into partitioned Parquet files: one file per table and partition
//! for a commit group of objects, published only when complete. Each file holds appended rows
//! until 16 Ki of them are, then encodes their columns in parallel on the encoder threads
//! ([`encoders`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow::array::{Array, BooleanArray, StringArray, TimestampMicrosecondArray};
use arrow::compute::{SortOptions, filter_record_batch, sort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;

use auditlake_query::LakeRoot;
use auditlake_schema::{self as schema, Partition};
use object_store::ObjectStoreExt;

/// The threads column chunks are encoded on, one per core, shared by every file.
///
/// Not rayon's global pool: `rayon::spawn` from a worker of another rayon pool queues the step
/// on *that* pool, and the caller then blocks waiting for it: with every worker of that pool
/// doing so, or waiting on the rewrite lock, nothing ran the step (the decoder threads were
/// such a pool). Steps here never wait on anything.
fn encoders() -> &'static rayon::ThreadPool {
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

/// Columns whose values are (nearly) unique per row: no dictionary encoding.
const NEARLY_UNIQUE_COLUMNS: [&str; 16] = [
    "event_time",
    "event_id",
    "user_principal_id",
    "user_access_key_id",
    "request_id",
    "shared_event_id",
    "assumed_access_key_id",
    "user_identity",
    "request_parameters",
    "response_elements",
    "additional_event_data",
    "resources",
    "tls_details",
    "source_index",
    "ts",
    "param",
];

/// Free-form JSON text columns: searched with LIKE or JSON functions, never by range, so their
/// min/max statistics would cost a comparison of every value and prune nothing.
const JSON_TEXT_COLUMNS: [&str; 10] = [
    "user_identity",
    "request_parameters",
    "response_elements",
    "additional_event_data",
    "resources",
    "tls_details",
    "unmapped",
    "param",
    "raw",
    "decode_note",
];

/// Columns of random identifiers, free text, and text as written beside a typed column: a
/// page's min and max span nearly every value, so their statistics would cost a comparison of
/// every value and prune nothing (event and connection ids are found through bloom filters,
/// addresses through the typed `*_ip` columns).
const UNORDERED_COLUMNS: [&str; 12] = [
    "event_id",
    "request_id",
    "shared_event_id",
    "user_principal_id",
    "user_access_key_id",
    "assumed_access_key_id",
    "user_agent",
    "conn_uuid",
    "users",
    "roles",
    "remote_ip_text",
    "local_ip_text",
];

/// Event time columns: rows come in (nearly) time order, so the differences between neighbours
/// are small and bit-pack into about as few bytes as zstd makes of them, and a reader unpacks
/// them much faster than it inflates zstd.
const EVENT_TIME_COLUMNS: [&str; 2] = ["event_time", "ts"];

/// Text columns with many values per file (a dictionary that may not fit), kept compressed.
const MANY_VALUED_COLUMNS: [&str; 3] = ["conn_uuid", "user_agent", "source_uri"];

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Bytes a probe of a local lake writes (see [`LakeWriter::probe`]).
const PROBE_BYTES: usize = 1 << 20;

/// Files a group keeps open at once (each holds its row group's encoded pages in memory).
pub const MAX_OPEN_FILES: usize = 3;

/// Lake write failures, each naming the file or table concerned.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("table {table} has no time column {column} of timestamp type")]
    NoTimeColumn { table: String, column: String },
    #[error("partitioning rows of {table}: {source}")]
    Arrow {
        table: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("writing Parquet file {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("storing {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> WriteError + 'a {
    move |source| WriteError::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

/// A file written to the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Path relative to the lake root.
    pub relative_path: String,
    pub rows: usize,
}

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
                std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
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
                    Err(e) => return Err(io("deleting", path)(e)),
                }
            }
        }
        Ok(removed)
    }

    /// Whether the lake takes a write now. A local lake writes, syncs and deletes a file of
    /// [`PROBE_BYTES`] at its root (a group needs at least that much room); a lake on an object
    /// store puts and deletes a small object there.
    pub fn probe(&self) -> Result<(), WriteError> {
        let name = format!(".auditlake-probe-{:016x}.tmp", rand::random::<u64>());
        match &self.root {
            LakeRoot::Local(root) => {
                let path = root.join(&name);
                let written = (|| {
                    let mut file = File::create(&path)?;
                    file.write_all(&vec![0u8; PROBE_BYTES])?;
                    file.sync_all()
                })();
                let removed = std::fs::remove_file(&path);
                written.map_err(io("writing", &path))?;
                removed.map_err(io("deleting", &path))
            }
            LakeRoot::Store { url, store } => {
                let location = store_path(url, &name);
                let store_err = |source| WriteError::Store {
                    path: format!("{url}{name}"),
                    source,
                };
                let handle = tokio::runtime::Handle::current();
                handle
                    .block_on(store.put(&location, bytes::Bytes::from_static(b"probe").into()))
                    .map_err(store_err)?;
                handle.block_on(store.delete(&location)).map_err(store_err)
            }
        }
    }

    /// Deletes lake files (relative paths) and, in a local lake, their temporary names; files
    /// already gone are fine. Used to undo files of a group that was never committed.
    pub fn discard(&self, relative_paths: &[String]) -> Result<(), WriteError> {
        self.delete(relative_paths, true)
    }

    /// Deletes what a group wrote before publishing: the temporary names of local files
    /// (object store files are only put on publish).
    pub fn discard_unpublished(&self, relative_paths: &[String]) -> Result<(), WriteError> {
        self.delete(relative_paths, false)
    }

    fn delete(&self, relative_paths: &[String], published: bool) -> Result<(), WriteError> {
        match &self.root {
            LakeRoot::Local(root) => {
                for relative in relative_paths {
                    let path = root.join(relative);
                    let candidates = if published {
                        vec![temp_path(&path), path]
                    } else {
                        vec![temp_path(&path)]
                    };
                    for candidate in candidates {
                        match std::fs::remove_file(&candidate) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(io("deleting", &candidate)(e)),
                        }
                    }
                }
                Ok(())
            }
            LakeRoot::Store { .. } if !published => Ok(()),
            LakeRoot::Store { url, store } => {
                for relative in relative_paths {
                    let location = store_path(url, relative);
                    match tokio::runtime::Handle::current().block_on(store.delete(&location)) {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(source) => {
                            return Err(WriteError::Store {
                                path: format!("{url}{relative}"),
                                source,
                            });
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Removes the rows that came from `source_uri` from the lake files `relative_paths`
    /// (rewriting each file without them, or deleting it when none remain), so that a new
    /// version of an object replaces the rows of the version ingested before. Files of tables
    /// without a `source_uri` column (alerts) are left alone. Repeating it changes nothing.
    ///
    /// Rewrites are serialized in the process: the objects of one commit group share its files,
    /// and two of them replaced at once would each read the file, drop their own rows and write
    /// it back under the same temporary name.
    pub fn remove_rows_of(
        &self,
        source_uri: &str,
        relative_paths: &[String],
    ) -> Result<(), WriteError> {
        static REWRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _rewriting = REWRITING.lock().unwrap_or_else(|p| p.into_inner());
        for relative in relative_paths {
            let table = relative.split('/').next().unwrap_or_default();
            if schema::file_schema(table).is_none_or(|s| s.column_with_name("source_uri").is_none())
            {
                continue;
            }
            let Some(bytes) = self.read(relative)? else {
                continue;
            };
            let parquet_err = |source| WriteError::Parquet {
                path: relative.clone(),
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
            let mut file = OpenFile::create(&self.root, relative.clone(), kept[0].schema())?;
            for batch in kept.iter().filter(|b| b.num_rows() > 0) {
                file.write(batch)?;
            }
            let finished = FinishedGroup {
                root: self.root.clone(),
                files: vec![file.finish()?],
            };
            finished.publish()?;
        }
        Ok(())
    }

    /// The bytes of a lake file, `None` if it does not exist.
    fn read(&self, relative: &str) -> Result<Option<bytes::Bytes>, WriteError> {
        match &self.root {
            LakeRoot::Local(root) => {
                let path = root.join(relative);
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes.into())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io("reading", &path)(e)),
                }
            }
            LakeRoot::Store { url, store } => {
                let location = store_path(url, relative);
                let store_err = |source| WriteError::Store {
                    path: format!("{url}{relative}"),
                    source,
                };
                let handle = tokio::runtime::Handle::current();
                match handle.block_on(store.get(&location)) {
                    Ok(result) => Ok(Some(handle.block_on(result.bytes()).map_err(store_err)?)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(source) => Err(store_err(source)),
                }
            }
        }
    }
}

/// The location of a lake file in an object store lake rooted at `url`.
fn store_path(url: &url::Url, relative: &str) -> object_store::path::Path {
    object_store::path::Path::from(format!("{}{relative}", url.path().trim_start_matches('/')))
}

/// The name a local lake file is written under before it is renamed into place.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Where an open file's bytes go until it is published.
enum Sink {
    /// A local temporary file, renamed into place on publish.
    Local { file: File, temp: PathBuf },
    /// Memory, put to the object store on publish (one PUT: whole or nothing).
    Memory(Vec<u8>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Local { file, .. } => file.write(buf),
            Sink::Memory(bytes) => bytes.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Local { file, .. } => file.write_all(buf),
            Sink::Memory(bytes) => bytes.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Local { file, .. } => file.flush(),
            Sink::Memory(_) => Ok(()),
        }
    }
}

/// One Parquet file being written. Appended rows are held until [`ENCODE_ROWS`] of them are,
/// then their columns are encoded in parallel on the encoder threads into the row group in progress
/// while the caller goes on: writing is the serial stage of a commit group, and encoding is
/// most of it, so this keeps it from holding back the decoders. One step encodes at a time per
/// file; the next waits for it. Large steps keep the cost of the hand-off small.
struct OpenFile {
    relative: String,
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
    rows: usize,
    /// The group's append count at this file's last append.
    last_append: u64,
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
const ENCODE_ROWS: usize = 16 * 1024;

impl OpenFile {
    /// Creates the file `relative` (locally under its temporary name).
    fn create(root: &LakeRoot, relative: String, schema: SchemaRef) -> Result<Self, WriteError> {
        let sink = match root {
            LakeRoot::Local(root) => {
                let path = root.join(&relative);
                let dir = path.parent().unwrap_or(root).to_path_buf();
                std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
                let temp = temp_path(&path);
                let file = File::create(&temp).map_err(io("creating", &temp))?;
                Sink::Local { file, temp }
            }
            LakeRoot::Store { .. } => Sink::Memory(Vec::new()),
        };
        let properties = properties(&schema);
        // Through ArrowWriter so that the file carries the Arrow schema like any other.
        let (file, row_groups) = ArrowWriter::try_new(sink, schema.clone(), Some(properties))
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(|source| WriteError::Parquet {
                path: relative.clone(),
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
            path: self.relative.clone(),
            source,
        }
    }

    /// Writes the footer (and syncs a local file); the file is then ready to publish.
    fn finish(mut self) -> Result<(WrittenFile, Sink), WriteError> {
        self.flush_row_group()?;
        let sink = self
            .file
            .into_inner()
            .map_err(|source| WriteError::Parquet {
                path: self.relative.clone(),
                source,
            })?;
        if let Sink::Local { file, temp } = &sink {
            file.sync_all().map_err(io("syncing", temp))?;
        }
        let written = WrittenFile {
            relative_path: self.relative,
            rows: self.rows,
        };
        Ok((written, sink))
    }

    /// Appends `batch`, completing a row group each [`ROW_GROUP_ROWS`] rows.
    fn write(&mut self, batch: &RecordBatch) -> Result<(), WriteError> {
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
            path: relative.clone(),
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

    /// Bytes held in memory for the row group in progress: rows not yet encoded, and pages.
    fn memory_size(&self) -> usize {
        let held: usize = self
            .held
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum();
        let encoded = match &self.columns {
            RowGroupColumns::NotStarted => 0,
            RowGroupColumns::Encoding { bytes, .. } => *bytes,
        };
        held + encoded
    }
}

/// The files of one commit group: rows of several objects stream into one Parquet file per
/// table and partition. An open file holds its row group's encoded pages in memory, so at most
/// [`MAX_OPEN_FILES`] stay open: appending to another partition completes the one used least
/// recently (objects arrive in time order, so an hour left behind is seldom met again; if it
/// is, a second file is opened for it). Nothing is visible in the lake until
/// [`GroupFiles::finish`] then [`FinishedGroup::publish`]; dropping the group instead leaves at
/// most temporary files, which [`LakeWriter::discard`] of their paths removes.
pub struct GroupFiles {
    root: LakeRoot,
    stem: String,
    open: BTreeMap<(String, Partition), OpenFile>,
    /// Files completed before the group was.
    closed: Vec<(WrittenFile, Sink)>,
    /// Every file opened so far, relative to the lake root, whether it was completed or not
    /// (its position names the next one).
    opened: Vec<String>,
    /// Appends so far (orders open files by last use).
    appends: u64,
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
    ) -> Result<Vec<String>, WriteError> {
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
                let relative = format!("{table}/{}/{name}", key.1.path());
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
        let held = |sink: &Sink| match sink {
            Sink::Memory(bytes) => bytes.len(),
            Sink::Local { .. } => 0,
        };
        self.open
            .values()
            .map(|f| f.memory_size() + held(f.file.inner()))
            .chain(self.closed.iter().map(|(_, sink)| held(sink)))
            .sum()
    }

    /// The files opened so far, relative to the lake root (also those whose writing failed).
    pub fn paths(&self) -> Vec<String> {
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
    root: LakeRoot,
    files: Vec<(WrittenFile, Sink)>,
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
        let mut folders = Vec::new();
        for (file, sink) in self.files {
            match (sink, &self.root) {
                (Sink::Local { file: f, temp }, LakeRoot::Local(root)) => {
                    drop(f);
                    let path = root.join(&file.relative_path);
                    std::fs::rename(&temp, &path).map_err(io("renaming into place", &path))?;
                    let dir = path.parent().unwrap_or(root).to_path_buf();
                    if !folders.contains(&dir) {
                        folders.push(dir);
                    }
                }
                (Sink::Memory(bytes), LakeRoot::Store { url, store }) => {
                    // Called on a blocking thread of the runtime (the pipeline's commit task).
                    let location = store_path(url, &file.relative_path);
                    tokio::runtime::Handle::current()
                        .block_on(store.put(&location, bytes.into()))
                        .map_err(|source| WriteError::Store {
                            path: format!("{url}{}", file.relative_path),
                            source,
                        })?;
                }
                (_, _) => unreachable!("a group's sinks match its root"),
            }
        }
        // The renames are durable only once the directory entries are.
        for dir in folders {
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(io("syncing folder", &dir))?;
        }
        Ok(())
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

/// The Parquet path of the values of column `name`: the column itself, or a list's items.
fn leaf_path(schema: &Schema, name: &str) -> Option<ColumnPath> {
    let (_, field) = schema.column_with_name(name)?;
    Some(match field.data_type() {
        DataType::List(item) => ColumnPath::new(vec![
            name.to_owned(),
            "list".to_owned(),
            item.name().clone(),
        ]),
        _ => ColumnPath::from(name),
    })
}

fn properties(schema: &Schema) -> WriterProperties {
    // A file holds several objects' rows, each in its own order: no sorting columns are
    // declared; page statistics still bound each page's times.
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    // A dictionary pays off for repeated values (sources, names, principals, addresses); for
    // columns nearly unique per row it is built, overflows and is thrown away for every page.
    for column in NEARLY_UNIQUE_COLUMNS {
        if schema.column_with_name(column).is_some() {
            builder = builder.set_column_dictionary_enabled(column.into(), false);
        }
    }
    // A dictionary-encoded text column is small integers already: compressing it again saves
    // little, and every reader of every column chunk would pay for a zstd context.
    for field in schema.fields() {
        let name = field.name().as_str();
        if field.data_type() == &DataType::Utf8
            && !NEARLY_UNIQUE_COLUMNS.contains(&name)
            && !JSON_TEXT_COLUMNS.contains(&name)
            && !MANY_VALUED_COLUMNS.contains(&name)
        {
            builder = builder.set_column_compression(name.into(), Compression::UNCOMPRESSED);
        }
    }
    for column in EVENT_TIME_COLUMNS {
        if schema.column_with_name(column).is_some() {
            builder = builder
                .set_column_encoding(column.into(), Encoding::DELTA_BINARY_PACKED)
                .set_column_compression(column.into(), Compression::UNCOMPRESSED);
        }
    }
    for column in JSON_TEXT_COLUMNS.iter().chain(&UNORDERED_COLUMNS) {
        if let Some(path) = leaf_path(schema, column) {
            builder = builder.set_column_statistics_enabled(path, EnabledStatistics::None);
        }
    }
    // Point look-ups by id otherwise scan every row group.
    for id_column in ["event_id", "conn_uuid"] {
        if schema.column_with_name(id_column).is_some() {
            builder = builder.set_column_bloom_filter_enabled(id_column.into(), true);
        }
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    const HOUR: i64 = 3_600_000_000;

    /// Rejected rows of `uri` at the given hours (the rejected table's time is `ingested_at`).
    fn rows(uri: &str, hours: &[i64]) -> RecordBatch {
        let micros: Vec<i64> = hours.iter().map(|h| h * HOUR).collect();
        rows_at(uri, &micros)
    }

    /// Rejected rows of `uri` at the given times, numbered 0, 1, ... in `source_index`.
    fn rows_at(uri: &str, micros: &[i64]) -> RecordBatch {
        let schema = schema::file_schema(schema::REJECTED).expect("schema");
        let n = micros.len();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|field| -> ArrayRef {
                match field.name().as_str() {
                    "source_uri" => Arc::new(StringArray::from(vec![uri; n])),
                    "source_index" => Arc::new(Int64Array::from_iter_values(0..n as i64)),
                    "raw_size" => Arc::new(Int64Array::from(vec![1; n])),
                    "ingested_at" => Arc::new(
                        TimestampMicrosecondArray::from(micros.to_vec()).with_timezone("UTC"),
                    ),
                    _ => arrow::array::new_null_array(field.data_type(), n),
                }
            })
            .map(|c| {
                if c.null_count() == n && !c.is_empty() {
                    // Non-null columns get a value.
                    match c.data_type() {
                        arrow::datatypes::DataType::Utf8 => {
                            Arc::new(StringArray::from(vec!["r"; n])) as ArrayRef
                        }
                        arrow::datatypes::DataType::Boolean => {
                            Arc::new(BooleanArray::from(vec![false; n])) as ArrayRef
                        }
                        _ => c,
                    }
                } else {
                    c
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns).expect("batch")
    }

    /// Column `name` of every row of a lake file, in file order.
    fn read_column(root: &Path, relative: &str, name: &str) -> ArrayRef {
        let file = File::open(root.join(relative)).expect("open");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .expect("reader");
        let parts: Vec<ArrayRef> = reader
            .map(|batch| {
                batch
                    .expect("batch")
                    .column_by_name(name)
                    .expect(name)
                    .clone()
            })
            .collect();
        let parts: Vec<&dyn arrow::array::Array> = parts.iter().map(|a| a.as_ref()).collect();
        arrow::compute::concat(&parts).expect("concat")
    }

    fn read_uris(root: &Path, relative: &str) -> Vec<String> {
        let column = read_column(root, relative, "source_uri");
        let column = column.as_any().downcast_ref::<StringArray>().expect("utf8");
        column
            .iter()
            .map(|u| u.unwrap_or_default().to_owned())
            .collect()
    }

    fn read_indexes(root: &Path, relative: &str) -> Vec<i64> {
        let column = read_column(root, relative, "source_index");
        let column = column.as_any().downcast_ref::<Int64Array>().expect("int64");
        column.values().to_vec()
    }

    fn parquet_files(root: &Path) -> Vec<String> {
        let mut files: Vec<String> = walk(root)
            .into_iter()
            .filter_map(|p| {
                let name = p.strip_prefix(root).ok()?.to_string_lossy().into_owned();
                name.ends_with(".parquet").then_some(name)
            })
            .collect();
        files.sort();
        files
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    #[test]
    fn a_group_writes_one_file_per_partition_and_nothing_before_publish() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = LakeWriter::create(LakeRoot::Local(dir.path().to_path_buf())).expect("writer");
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
        let both = files.iter().find(|f| second.contains(f)).expect("b's file");
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
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = LakeWriter::create(LakeRoot::Local(dir.path().to_path_buf())).expect("writer");
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
    fn rows_held_and_encoded_in_steps_fill_row_groups_of_the_set_size_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = LakeWriter::create(LakeRoot::Local(dir.path().to_path_buf())).expect("writer");
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
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = LakeWriter::create(LakeRoot::Local(dir.path().to_path_buf())).expect("writer");
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
    fn unordered_and_json_text_columns_have_no_statistics_and_the_others_page_statistics() {
        for table in [schema::CLOUDTRAIL, schema::MONGODB_AUDIT] {
            let arrow_schema = schema::file_schema(table).expect("schema");
            let props = properties(&arrow_schema);
            let parquet_schema = parquet::arrow::ArrowSchemaConverter::new()
                .convert(&arrow_schema)
                .expect("parquet schema");
            let mut without = Vec::new();
            for leaf in parquet_schema.columns() {
                let root = leaf.path().parts()[0].as_str();
                let expected =
                    if UNORDERED_COLUMNS.contains(&root) || JSON_TEXT_COLUMNS.contains(&root) {
                        without.push(root.to_owned());
                        EnabledStatistics::None
                    } else {
                        EnabledStatistics::Page
                    };
                assert_eq!(
                    props.statistics_enabled(leaf.path()),
                    expected,
                    "{}",
                    leaf.path()
                );
            }
            assert!(without.len() >= 5, "{table}: {without:?}");
        }
        let audit = schema::file_schema(schema::MONGODB_AUDIT).expect("schema");
        let users = leaf_path(&audit, "users").expect("users");
        assert_eq!(users.parts().len(), 3, "a list's items: {users}");
    }

    #[test]
    fn event_times_are_delta_encoded_and_not_compressed() {
        use parquet::schema::types::ColumnPath;
        for (table, time) in [
            (schema::CLOUDTRAIL, "event_time"),
            (schema::MONGODB_AUDIT, "ts"),
        ] {
            let props = properties(&schema::file_schema(table).expect("schema"));
            let time = ColumnPath::from(time);
            assert_eq!(props.encoding(&time), Some(Encoding::DELTA_BINARY_PACKED));
            assert_eq!(props.compression(&time), Compression::UNCOMPRESSED);
            assert!(!props.dictionary_enabled(&time));
            let source_uri = ColumnPath::from("source_uri");
            assert_eq!(props.encoding(&source_uri), None, "{table}");
            assert!(matches!(
                props.compression(&source_uri),
                Compression::ZSTD(_)
            ));
        }
    }

    #[test]
    fn dictionary_text_columns_are_stored_uncompressed_and_the_others_compressed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = LakeWriter::create(LakeRoot::Local(dir.path().to_path_buf())).expect("writer");
        let mut group = writer.open_group("g".into());
        group
            .append(schema::REJECTED, &rows("a", &[500_000, 500_000]), 0)
            .expect("append");
        group.finish().expect("finish").publish().expect("publish");
        let files = parquet_files(dir.path());
        let file = File::open(dir.path().join(&files[0])).expect("open");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("reader");
        let metadata = reader.metadata().row_group(0);
        let table = schema::file_schema(schema::REJECTED).expect("schema");
        let mut uncompressed = 0;
        for (field, column) in table.fields().iter().zip(metadata.columns()) {
            let name = field.name().as_str();
            let dictionary_text = field.data_type() == &DataType::Utf8
                && ![
                    &NEARLY_UNIQUE_COLUMNS[..],
                    &JSON_TEXT_COLUMNS[..],
                    &MANY_VALUED_COLUMNS[..],
                ]
                .concat()
                .contains(&name);
            let expected = if dictionary_text {
                uncompressed += 1;
                Compression::UNCOMPRESSED
            } else {
                Compression::ZSTD(ZstdLevel::try_new(1).expect("level"))
            };
            assert_eq!(column.compression(), expected, "{name}");
        }
        assert!(uncompressed > 0, "the table has dictionary text columns");
    }

    #[test]
    fn a_group_keeps_few_files_open_and_reopens_a_partition_met_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = LakeWriter::create(LakeRoot::Local(dir.path().to_path_buf())).expect("writer");
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
            again[0].ends_with(&format!("g-{}.parquet", hours.len())),
            "{again:?}"
        );
        assert_eq!(group.rows(), hours.len() + 1);
        group.finish().expect("finish").publish().expect("publish");
        let files = parquet_files(dir.path());
        assert_eq!(files.len(), hours.len() + 1);
        let total: usize = files.iter().map(|f| read_uris(dir.path(), f).len()).sum();
        assert_eq!(total, hours.len() + 1, "every row once");
    }

    #[test]
    fn stray_temporary_files_are_removed_at_start_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = LakeWriter::create(LakeRoot::Local(dir.path().to_path_buf())).expect("writer");
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
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = LakeWriter::create(LakeRoot::Local(dir.path().to_path_buf())).expect("writer");
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

    #[test]
    fn removing_an_objects_rows_keeps_the_others_and_deletes_emptied_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = LakeWriter::create(LakeRoot::Local(dir.path().to_path_buf())).expect("writer");
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
