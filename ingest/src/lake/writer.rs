//! Writes one object's batch of a table into partitioned, sorted Parquet files.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use arrow::array::{Array, TimestampMicrosecondArray};
use arrow::compute::{SortOptions, sort_to_indices, take_record_batch};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use auditlake_query::LakeRoot;
use auditlake_schema::{self as schema, Partition};
use object_store::ObjectStoreExt;

/// Columns whose values are (nearly) unique per row: no dictionary encoding.
const NEARLY_UNIQUE_COLUMNS: [&str; 14] = [
    "event_time",
    "event_id",
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

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 128 * 1024;

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

    /// Writes `batch` of `table` as one file per partition, named `<stem>.parquet`, rows sorted by
    /// time; rows without a time go to the partition of `fallback_micros`.
    pub fn write(
        &self,
        table: &str,
        batch: &RecordBatch,
        stem: &str,
        fallback_micros: i64,
    ) -> Result<Vec<WrittenFile>, WriteError> {
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
        // each partition is then a contiguous slice of the sorted rows.
        let order = sort_to_indices(
            times,
            Some(SortOptions {
                descending: false,
                nulls_first: true,
            }),
            None,
        )
        .map_err(arrow_err)?;
        let sorted = take_record_batch(batch, &order).map_err(arrow_err)?;
        let sorted_times = time_array(&sorted, table, column)?;
        let time_index = sorted.schema().index_of(column).map_err(arrow_err)?;
        let micros_of = |row: usize| {
            if sorted_times.is_null(row) {
                fallback_micros
            } else {
                sorted_times.value(row)
            }
        };
        // Rows without a time land in the fallback partition, which may also hold timed rows.
        let mut partitions: BTreeMap<Partition, Vec<(usize, usize)>> = BTreeMap::new();
        let mut start = 0;
        while start < sorted.num_rows() {
            let partition = Partition::of_micros(micros_of(start));
            let mut end = start + 1;
            while end < sorted.num_rows() && Partition::of_micros(micros_of(end)) == partition {
                end += 1;
            }
            partitions
                .entry(partition)
                .or_default()
                .push((start, end - start));
            start = end;
        }

        let mut written = Vec::with_capacity(partitions.len());
        for (partition, ranges) in partitions {
            let part = if let [(offset, length)] = ranges[..] {
                sorted.slice(offset, length)
            } else {
                let slices: Vec<RecordBatch> = ranges
                    .iter()
                    .map(|&(offset, length)| sorted.slice(offset, length))
                    .collect();
                arrow::compute::concat_batches(&sorted.schema(), &slices).map_err(arrow_err)?
            };
            let relative = format!("{table}/{}/{stem}.parquet", partition.path());
            self.write_file(&relative, &part, time_index)?;
            written.push(WrittenFile {
                relative_path: relative,
                rows: part.num_rows(),
            });
        }
        Ok(written)
    }

    fn write_file(
        &self,
        relative: &str,
        batch: &RecordBatch,
        time_index: usize,
    ) -> Result<(), WriteError> {
        match &self.root {
            LakeRoot::Local(root) => write_local(root, relative, batch, time_index),
            LakeRoot::Store { url, store } => {
                let location = format!("{}{relative}", url.path().trim_start_matches('/'));
                let parquet_err = |source| WriteError::Parquet {
                    path: location.clone(),
                    source,
                };
                let mut writer = ArrowWriter::try_new(
                    Vec::new(),
                    batch.schema(),
                    Some(properties(batch, time_index)),
                )
                .map_err(parquet_err)?;
                writer.write(batch).map_err(parquet_err)?;
                let bytes = writer.into_inner().map_err(parquet_err)?;
                // One PUT: the object appears whole or not at all, and is durable once answered.
                // Called on a blocking thread of the runtime (the pipeline's decode task).
                let path = object_store::path::Path::from(location.as_str());
                tokio::runtime::Handle::current()
                    .block_on(store.put(&path, bytes.into()))
                    .map_err(|source| WriteError::Store {
                        path: format!("{url}{relative}"),
                        source,
                    })?;
                Ok(())
            }
        }
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

/// Writes one file of a local lake: temporary name, sync, rename, sync the folder.
fn write_local(
    root: &Path,
    relative: &str,
    batch: &RecordBatch,
    time_index: usize,
) -> Result<(), WriteError> {
    let path = root.join(relative);
    let dir = path.parent().unwrap_or(root).to_path_buf();
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.tmp"));

    let file = File::create(&temp).map_err(io("creating", &temp))?;
    let parquet_err = |source| WriteError::Parquet {
        path: temp.display().to_string(),
        source,
    };
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), Some(properties(batch, time_index)))
            .map_err(parquet_err)?;
    writer.write(batch).map_err(parquet_err)?;
    let file = writer.into_inner().map_err(parquet_err)?;
    file.sync_all().map_err(io("syncing", &temp))?;
    drop(file);
    std::fs::rename(&temp, &path).map_err(io("renaming into place", &path))?;
    // The rename is durable only once the directory entry is.
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing folder", &dir))?;
    Ok(())
}

fn properties(batch: &RecordBatch, time_index: usize) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: time_index as i32,
            descending: false,
            nulls_first: true,
        }]));
    // A dictionary pays off for repeated values (sources, names, principals, addresses); for
    // columns nearly unique per row it is built, overflows and is thrown away for every page.
    for column in NEARLY_UNIQUE_COLUMNS {
        if batch.schema().column_with_name(column).is_some() {
            builder = builder.set_column_dictionary_enabled(column.into(), false);
        }
    }
    // Point look-ups by id otherwise scan every row group.
    for id_column in ["event_id", "conn_uuid"] {
        if batch.schema().column_with_name(id_column).is_some() {
            builder = builder.set_column_bloom_filter_enabled(id_column.into(), true);
        }
    }
    builder.build()
}
