//! The DataFusion session over the lake.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use datafusion::error::DataFusionError;
use tokio::sync::Semaphore;

use arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use serde::Serialize;

use auditlake_schema::{self as schema, LakeRoot};

mod execute;
use datafusion::execution::disk_manager::DiskManagerBuilder;
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;

use crate::access::AccessSettings;
use crate::gate;

/// Query failures, split by whose fault they are.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The statement is not allowed, or not valid SQL, or names what does not exist.
    #[error("{0}")]
    Rejected(String),
    /// The engine failed while running a valid statement.
    #[error("query failed: {0}")]
    Execution(String),
    /// The query ran longer than the per-query time limit.
    #[error("the query ran longer than the limit of {0:?} and was cancelled")]
    Timeout(Duration),
    /// The query needed more memory than the query memory pool holds.
    #[error("the query needs more memory than the limit of {limit_bytes} bytes allows: {message}")]
    Memory { limit_bytes: usize, message: String },
    /// The result is larger than the cap.
    #[error(
        "the result exceeds the cap of {max_rows} rows or {max_bytes} bytes: add a LIMIT, filter or aggregate"
    )]
    ResultTooLarge { max_rows: usize, max_bytes: usize },
    /// Too many queries are running.
    #[error("{0} queries are already running: try again shortly")]
    Busy(usize),
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
            QueryError::Timeout(_) => "timeout",
            QueryError::Memory { .. } => "memory_limit",
            QueryError::ResultTooLarge { .. } => "result_too_large",
            QueryError::Busy(_) => "busy",
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

/// Bounds on what one query may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Wall time of one query, planning included.
    pub timeout: Duration,
    /// Memory of the pool that sorts, joins and aggregations draw from (all queries together).
    pub memory_bytes: usize,
    /// Rows of one result.
    pub max_result_rows: usize,
    /// Bytes of one result as encoded for its caller (JSON, CSV, Arrow, Postgres rows).
    pub max_result_bytes: usize,
    /// Queries running at once; more are refused as busy.
    pub max_concurrent: usize,
    /// Bytes that sorts and joins may spill to the temporary folder, all queries together.
    pub max_spill_bytes: u64,
    /// Bytes one call of a function that can outgrow its input (`repeat`, `range`, …) may produce.
    pub max_function_bytes: usize,
    /// Bytes of one statement as sent (an HTTP body, a Postgres message).
    pub max_statement_bytes: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            timeout: Duration::from_secs(60),
            memory_bytes: 1 << 30,
            max_result_rows: 1_000_000,
            max_result_bytes: 256 << 20,
            max_concurrent: 8,
            max_spill_bytes: 4 << 30,
            max_function_bytes: 64 << 20,
            max_statement_bytes: 1 << 20,
        }
    }
}

/// Parses `sql` as one statement that only reads (see [`crate::gate`]).
pub fn parse_read_only(sql: &str) -> Result<Statement, QueryError> {
    let statements = DFParser::parse_sql_with_dialect(sql, &GenericDialect {})
        .map_err(|e| QueryError::Rejected(e.to_string()))?;
    let statement = gate::single(statements.into_iter().collect()).map_err(rejected)?;
    match &statement {
        Statement::Statement(s) => gate::check_statement(s).map_err(rejected)?,
        Statement::Explain(e) => match e.statement.as_ref() {
            Statement::Statement(s) => gate::check_statement(s).map_err(rejected)?,
            _ => return Err(rejected(gate::Refused(gate::READ_ONLY.into()))),
        },
        _ => return Err(rejected(gate::Refused(gate::READ_ONLY.into()))),
    }
    Ok(statement)
}

fn rejected(refused: gate::Refused) -> QueryError {
    QueryError::Rejected(refused.0)
}

/// A DataFusion session with every lake table registered; see the module documentation.
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
    root: LakeRoot,
    limits: QueryLimits,
    slots: Arc<Semaphore>,
    executor: Arc<Executor>,
    runs: Arc<crate::run::Runs>,
}

/// The threads queries run on, apart from the service's: a CPU-bound query cannot then delay
/// the HTTP server, ingestion or its own time limit.
#[derive(Debug)]
struct Executor(Option<tokio::runtime::Runtime>);

impl Executor {
    fn start() -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("auditlake-query")
            .enable_all()
            .build()
            .map(|r| Executor(Some(r)))
    }

    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(tokio::runtime::Runtime::handle)
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // Dropping a runtime may happen inside another runtime: never block there.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// The error of opening `table` of the lake at `root`.
fn open_error(table: &str, root: &LakeRoot) -> impl Fn(DataFusionError) -> QueryError + use<> {
    let (table, path) = (table.to_owned(), root.display());
    move |e| QueryError::Open {
        table: table.clone(),
        path: path.clone(),
        message: e.to_string(),
    }
}

/// `schema` with its text columns read as string views: the Parquet reader then points into
/// the decoded pages instead of copying every value, and comparisons start from the inlined
/// prefix (DataFusion's own choice for tables whose schema it infers).
fn with_string_views(schema: &Schema) -> SchemaRef {
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            DataType::Utf8 => Arc::new(field.as_ref().clone().with_data_type(DataType::Utf8View)),
            _ => field.clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

impl QueryEngine {
    /// Opens the lake at `root` (a local folder), creating its table folders if missing.
    pub async fn open(root: &Path) -> Result<Self, QueryError> {
        Self::open_root(&LakeRoot::Local(root.to_path_buf()), QueryLimits::default()).await
    }

    /// Opens the lake at `root`, local or in an object store, with `limits` on each query and
    /// the default access-chain settings.
    pub async fn open_root(root: &LakeRoot, limits: QueryLimits) -> Result<Self, QueryError> {
        Self::open_with(root, limits, &AccessSettings::default()).await
    }

    /// Opens the lake at `root` with `limits` on each query, the access chain linking as
    /// `access` says.
    pub async fn open_with(
        root: &LakeRoot,
        limits: QueryLimits,
        access: &AccessSettings,
    ) -> Result<Self, QueryError> {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("auditlake", "lake");
        // Audit questions filter on a few columns (event name, role, user): evaluate those
        // first and decode the other columns only for the rows that pass.
        let parquet = &mut config.options_mut().execution.parquet;
        parquet.pushdown_filters = true;
        parquet.reorder_filters = true;
        // The ingest side adds files all the time: list them on every query, never from a cache.
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
            .with_memory_limit(limits.memory_bytes, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_max_temp_directory_size(limits.max_spill_bytes),
            )
            .build_arc()
            .map_err(|e| QueryError::Open {
                table: String::new(),
                path: root.display(),
                message: e.to_string(),
            })?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.register_udf(crate::functions::UtcDateTrunc::udf());
        ctx.register_udf(crate::key_expiry::KeyExpiry::udf());
        ctx.register_udf(crate::trust::TrustPolicy::udf());
        crate::bounded::install(&ctx, limits.max_function_bytes);
        match root {
            LakeRoot::Store { url, store } => {
                ctx.register_object_store(url, store.clone());
            }
            LakeRoot::Local(_) => {
                let local = ObjectStoreUrl::local_filesystem();
                ctx.register_object_store(
                    local.as_ref(),
                    Arc::new(crate::local_reads::LocalReads::default()),
                );
            }
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
            let file_schema = with_string_views(&file_schema);
            let config = ListingTableConfig::new(url)
                .with_listing_options(options)
                .with_schema(file_schema);
            // Files never change once published: their statistics, read from the footers on a
            // table's first query, are kept (keyed by path, checked against size and time).
            let provider = ListingTable::try_new(config)
                .map_err(|e| open_err(e.to_string()))?
                .with_cache(ctx.runtime_env().cache_manager.get_file_statistic_cache());
            ctx.register_table(table, Arc::new(provider))
                .map_err(|e| open_err(e.to_string()))?;
        }
        let watched = crate::access::watched_roles_table(access)
            .map_err(open_error("watched_roles", root))?;
        ctx.register_table("watched_roles", Arc::new(watched))
            .map_err(open_error("watched_roles", root))?;
        let views = crate::views::VIEWS
            .iter()
            .map(|(name, sql)| (*name, *sql))
            .chain([("role_trust", crate::trust::ROLE_TRUST)]);
        for (name, sql) in views {
            let view_err = |e: DataFusionError| QueryError::Open {
                table: name.to_owned(),
                path: root.display(),
                message: format!("defining the view: {e}"),
            };
            // Internal DDL: the read-only options apply to callers' statements only.
            ctx.sql(&format!("CREATE VIEW {name} AS {sql}"))
                .await
                .map_err(view_err)?
                .collect()
                .await
                .map_err(view_err)?;
        }
        let chain = crate::access::AccessChainTable::new(&ctx, access)
            .await
            .map_err(open_error("access_chain", root))?;
        ctx.register_table("access_chain", Arc::new(chain))
            .map_err(open_error("access_chain", root))?;
        let executor = Executor::start().map_err(|e| QueryError::Open {
            table: String::new(),
            path: root.display(),
            message: format!("starting the query threads: {e}"),
        })?;
        Ok(QueryEngine {
            ctx,
            root: root.clone(),
            limits,
            slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            executor: Arc::new(executor),
            runs: Arc::default(),
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

    /// The DataFusion session, for the Postgres protocol's session chatter (`SET` of client
    /// settings, transactions); every query goes through [`QueryEngine::execute_plan`].
    pub(crate) fn session(&self) -> SessionContext {
        self.ctx.clone()
    }

    /// Stops every running query (422 `memory_limit`) whenever `heap_bytes` (the process's
    /// allocated heap, as the allocator counts it) is above `max_heap_bytes`: the memory pool
    /// bounds what operators reserve, not every array a plan computes (a distinct count of
    /// hundreds of millions of values holds several times the pool), and this bounds the rest.
    /// Checked every 20 ms while queries run, on a thread of its own (the query threads may all
    /// be busy with the very query to stop); the thread ends with the engine.
    pub fn watch_memory(
        &self,
        heap_bytes: Arc<dyn Fn() -> Option<usize> + Send + Sync>,
        max_heap_bytes: usize,
    ) -> std::io::Result<()> {
        let runs = Arc::downgrade(&self.runs);
        std::thread::Builder::new()
            .name("auditlake-query-memory".into())
            .spawn(move || {
                while let Some(runs) = runs.upgrade() {
                    if runs.count() > 0
                        && let Some(used) = heap_bytes()
                        && used > max_heap_bytes
                    {
                        let message = format!(
                            "the service's heap reached {used} bytes, above its bound of {max_heap_bytes}, while this query ran: it was stopped"
                        );
                        let stopped = runs.stop_all(max_heap_bytes, &message);
                        tracing::warn!(used, max_heap_bytes, stopped, "queries stopped: the heap passed its bound");
                    }
                    drop(runs);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
            .map(|_| ())
    }

    /// The limits every query from outside runs under.
    pub fn limits(&self) -> QueryLimits {
        self.limits
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

#[cfg(test)]
mod tests;
