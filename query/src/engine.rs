//! The DataFusion session over the lake.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use serde::Serialize;

use auditlake_schema as schema;

/// Query failures, split by whose fault they are.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The statement is not allowed, or not valid SQL, or names what does not exist.
    #[error("{0}")]
    Rejected(String),
    /// The engine failed while running a valid statement.
    #[error("query failed: {0}")]
    Execution(String),
    /// The lake could not be opened.
    #[error("opening lake table {table} at {path}: {message}")]
    Open {
        table: String,
        path: String,
        message: String,
    },
}

impl QueryError {
    /// A short, stable label for API errors.
    pub fn kind(&self) -> &'static str {
        match self {
            QueryError::Rejected(_) => "rejected",
            QueryError::Execution(_) => "execution",
            QueryError::Open { .. } => "open",
        }
    }
}

/// A column of a table, for `GET /v1/tables`.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

/// A table of the lake, for `GET /v1/tables`.
#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    pub name: String,
    pub columns: Vec<ColumnInfo>,
}

/// Rows of one query, all in memory.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryOutput {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

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
}

/// A DataFusion session with every lake table registered; see the module documentation.
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
    root: LakeRoot,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

impl QueryEngine {
    /// Opens the lake at `root` (a local folder), creating its table folders if missing.
    pub async fn open(root: &Path) -> Result<Self, QueryError> {
        Self::open_root(&LakeRoot::Local(root.to_path_buf())).await
    }

    /// Opens the lake at `root`, local or in an object store.
    pub async fn open_root(root: &LakeRoot) -> Result<Self, QueryError> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("auditlake", "lake");
        // The ingest side adds files all the time: list them on every query, never from a cache.
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
            .build_arc()
            .map_err(|e| QueryError::Open {
                table: String::new(),
                path: root.display(),
                message: e.to_string(),
            })?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        if let LakeRoot::Store { url, store } = root {
            ctx.register_object_store(url, store.clone());
        }
        for table in schema::TABLES {
            let open_err = |message: String| QueryError::Open {
                table: table.to_owned(),
                path: root.display(),
                message,
            };
            let url = match root {
                LakeRoot::Local(path) => {
                    let dir = path.join(table);
                    std::fs::create_dir_all(&dir).map_err(|e| open_err(e.to_string()))?;
                    let dir = std::fs::canonicalize(&dir).map_err(|e| open_err(e.to_string()))?;
                    format!("{}/", dir.display())
                }
                LakeRoot::Store { url, .. } => format!("{url}{table}/"),
            };
            let url = ListingTableUrl::parse(url).map_err(|e| open_err(e.to_string()))?;
            let options =
                ListingOptions::new(Arc::new(ParquetFormat::default().with_enable_pruning(true)))
                    .with_file_extension(".parquet")
                    .with_table_partition_cols(
                        schema::PARTITION_COLUMNS
                            .iter()
                            .map(|c| ((*c).to_owned(), DataType::Utf8))
                            .collect(),
                    );
            let file_schema =
                schema::file_schema(table).ok_or_else(|| open_err("no schema".into()))?;
            let config = ListingTableConfig::new(url)
                .with_listing_options(options)
                .with_schema(file_schema);
            let provider = ListingTable::try_new(config).map_err(|e| open_err(e.to_string()))?;
            ctx.register_table(table, Arc::new(provider))
                .map_err(|e| open_err(e.to_string()))?;
        }
        Ok(QueryEngine {
            ctx,
            root: root.clone(),
        })
    }

    /// Registers a table that is not in the lake (see [`crate::live`]).
    pub fn register_live(
        &self,
        name: &str,
        table: crate::live::LiveTable,
    ) -> Result<(), QueryError> {
        self.ctx
            .register_table(name, Arc::new(table))
            .map(|_| ())
            .map_err(|e| QueryError::Open {
                table: name.to_owned(),
                path: String::new(),
                message: e.to_string(),
            })
    }

    /// The lake root this engine reads.
    pub fn root(&self) -> &LakeRoot {
        &self.root
    }

    /// Runs one read-only statement and collects its rows.
    pub async fn query(&self, sql: &str) -> Result<QueryOutput, QueryError> {
        let frame = self
            .ctx
            .sql_with_options(sql, read_only())
            .await
            .map_err(|e| QueryError::Rejected(e.to_string()))?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame
            .collect()
            .await
            .map_err(|e| QueryError::Execution(e.to_string()))?;
        Ok(QueryOutput { schema, batches })
    }

    /// Runs one read-only statement and streams its rows.
    pub async fn stream(
        &self,
        sql: &str,
    ) -> Result<datafusion::physical_plan::SendableRecordBatchStream, QueryError> {
        let frame = self
            .ctx
            .sql_with_options(sql, read_only())
            .await
            .map_err(|e| QueryError::Rejected(e.to_string()))?;
        frame
            .execute_stream()
            .await
            .map_err(|e| QueryError::Execution(e.to_string()))
    }

    /// Every table with its columns (partition columns included): the lake's tables first, then
    /// the live ones.
    pub async fn tables(&self) -> Vec<TableInfo> {
        let mut names: Vec<String> = schema::TABLES.iter().map(|t| (*t).to_owned()).collect();
        let mut others: Vec<String> = self
            .ctx
            .catalog("auditlake")
            .and_then(|c| c.schema("lake"))
            .map(|s| s.table_names())
            .unwrap_or_default()
            .into_iter()
            .filter(|n| !names.contains(n))
            .collect();
        others.sort();
        names.extend(others);
        let mut out = Vec::new();
        for table in &names {
            let table = table.as_str();
            let Ok(provider) = self.ctx.table_provider(table).await else {
                continue;
            };
            let columns = provider
                .schema()
                .fields()
                .iter()
                .map(|f| ColumnInfo {
                    name: f.name().clone(),
                    data_type: f.data_type().to_string(),
                    nullable: f.is_nullable(),
                })
                .collect();
            out.push(TableInfo {
                name: table.to_owned(),
                columns,
            });
        }
        out
    }
}
