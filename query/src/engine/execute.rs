//! Running one caller's statement: the gate, a slot, the query threads, and the batches handed
//! over as they come (see [`crate::run`]). A lake file that vanished before the first rows were
//! handed over (a newer version of its object replaced it) lets the run start again.

use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement;
use futures::StreamExt;

use super::{QueryEngine, QueryError, QueryOutput, parse_read_only, rejected};
use crate::gate;
use crate::run::{self, HOLD_BYTES, Message, QueryStream, Sender};

/// Runs of one query when lake files it listed went away before it read them.
const QUERY_ATTEMPTS: u32 = 3;

/// How one run of a query failed.
enum Failure {
    /// A file listed for the query was gone when read: a new version of an object replaced its
    /// rows, and the file with them. A new run lists the files again.
    FileVanished(String),
    Query(QueryError),
}

/// Whether `error` is a listed lake file that could not be found any more.
pub(super) fn vanished_file(error: &DataFusionError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(object_store::Error::NotFound { .. }) = e.downcast_ref::<object_store::Error>()
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// What a run starts from: a statement planned anew at each run, or a plan made before.
enum Source {
    Statement(Statement),
    Plan(LogicalPlan),
}

impl QueryEngine {
    /// A slot of `max_concurrent`, or busy.
    fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, QueryError> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| QueryError::Busy(self.limits.max_concurrent))
    }

    pub(super) fn executor(&self) -> Result<&tokio::runtime::Handle, QueryError> {
        self.executor
            .handle()
            .ok_or_else(|| QueryError::Execution("the query threads are stopped".into()))
    }

    /// Starts one statement from outside (HTTP, the command line): read-only statements only
    /// (see [`crate::gate`]), on the query threads, within the time limit, the memory pool and
    /// the row cap, and only while fewer than `max_concurrent` others run. The caller counts
    /// the bytes it encodes against `max_result_bytes`.
    pub async fn execute(&self, sql: &str) -> Result<QueryStream, QueryError> {
        self.start(Source::Statement(parse_read_only(sql)?)).await
    }

    /// Plans a parsed statement from outside after the read-only gate: the statement, then its
    /// plan (for the Postgres protocol, which parses with its own dialect).
    pub async fn plan(
        &self,
        statement: datafusion::sql::sqlparser::ast::Statement,
    ) -> Result<LogicalPlan, QueryError> {
        gate::check_statement(&statement).map_err(rejected)?;
        self.plan_checked(Statement::Statement(Box::new(statement)))
            .await
    }

    async fn plan_checked(&self, statement: Statement) -> Result<LogicalPlan, QueryError> {
        let plan = self
            .ctx
            .state()
            .statement_to_plan(statement)
            .await
            .map_err(|e| self.classify(e, QueryError::Rejected))?;
        self.check_plan(&plan)?;
        Ok(plan)
    }

    /// The read-only gate and the bounds a plan must pass.
    fn check_plan(&self, plan: &LogicalPlan) -> Result<(), QueryError> {
        gate::check_plan(plan).map_err(rejected)?;
        crate::bounded::check_plan(plan).map_err(|e| self.classify(e, QueryError::Rejected))
    }

    /// Starts a plan made by [`QueryEngine::plan`] (parameters bound) as [`QueryEngine::execute`]
    /// starts a statement: the gate again, the query threads, the limits.
    pub async fn execute_plan(&self, plan: LogicalPlan) -> Result<QueryStream, QueryError> {
        self.check_plan(&plan)?;
        self.start(Source::Plan(plan)).await
    }

    /// Takes a slot and starts `source` on the query threads.
    async fn start(&self, source: Source) -> Result<QueryStream, QueryError> {
        let slot = self.slot()?;
        let engine = self.clone();
        run::start(
            self.executor()?,
            &self.runs,
            slot,
            self.limits.timeout,
            move |mut sender| async move { engine.produce(&mut sender, &source).await },
        )
        .await
    }

    /// The plan of one run of `source`.
    async fn planned(&self, source: &Source) -> Result<LogicalPlan, QueryError> {
        match source {
            Source::Statement(statement) => self.plan_checked(statement.clone()).await,
            Source::Plan(plan) => Ok(plan.clone()),
        }
    }

    /// Runs `source` on this thread, handing its schema and batches to `sender`:
    /// the first [`HOLD_BYTES`] are held, so that a lake file that vanished before then lets the
    /// run start again unseen; the row cap is counted here.
    async fn produce(&self, sender: &mut Sender, source: &Source) {
        let limits = self.limits;
        let mut attempt = 1;
        let (mut stream, held) = loop {
            let outcome = async {
                let plan = self.planned(source).await.map_err(Failure::Query)?;
                let mut stream = self
                    .ctx
                    .execute_logical_plan(plan)
                    .await
                    .map_err(|e| self.failure(e))?
                    .execute_stream()
                    .await
                    .map_err(|e| self.failure(e))?;
                let (mut held, mut bytes, mut rows) = (Vec::new(), 0usize, 0usize);
                while bytes < HOLD_BYTES {
                    match stream.next().await {
                        None => break,
                        Some(batch) => {
                            let batch = batch.map_err(|e| self.failure(e))?;
                            bytes += batch.get_array_memory_size();
                            rows += batch.num_rows();
                            if rows > limits.max_result_rows {
                                return Err(Failure::Query(self.too_large()));
                            }
                            held.push(batch);
                        }
                    }
                }
                Ok((stream, held))
            }
            .await;
            match outcome {
                Ok(started) => break started,
                Err(Failure::FileVanished(message)) if attempt < QUERY_ATTEMPTS => {
                    tracing::debug!(attempt, %message, "a lake file went away; query run again");
                    attempt += 1;
                }
                Err(Failure::FileVanished(message)) => {
                    sender
                        .finish(Message::Failed(QueryError::Execution(message)))
                        .await;
                    return;
                }
                Err(Failure::Query(e)) => {
                    sender.finish(Message::Failed(e)).await;
                    return;
                }
            }
        };
        if !sender.send(Message::Schema(stream.schema())).await {
            return;
        }
        let mut rows = 0usize;
        for batch in held {
            rows += batch.num_rows();
            if !sender.send(Message::Batch(batch)).await {
                return;
            }
        }
        let last = loop {
            match stream.next().await {
                None => break Message::Done,
                Some(Err(e)) => break Message::Failed(self.classify(e, QueryError::Execution)),
                Some(Ok(batch)) => {
                    rows += batch.num_rows();
                    if rows > limits.max_result_rows {
                        break Message::Failed(self.too_large());
                    }
                    if !sender.send(Message::Batch(batch)).await {
                        return;
                    }
                }
            }
        };
        drop(stream);
        sender.finish(last).await;
    }

    fn too_large(&self) -> QueryError {
        QueryError::ResultTooLarge {
            max_rows: self.limits.max_result_rows,
            max_bytes: self.limits.max_result_bytes,
        }
    }

    fn failure(&self, e: DataFusionError) -> Failure {
        if vanished_file(&e) {
            Failure::FileVanished(e.to_string())
        } else {
            Failure::Query(self.classify(e, QueryError::Execution))
        }
    }

    /// Runs one statement from outside as [`QueryEngine::execute`] does and collects its rows,
    /// with `max_result_bytes` counted as the rows' memory (for the command line and tests).
    pub async fn query(&self, sql: &str) -> Result<QueryOutput, QueryError> {
        let mut stream = self.execute(sql).await?;
        let schema = stream.schema();
        let (mut batches, mut bytes) = (Vec::new(), 0usize);
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            bytes += batch.get_array_memory_size();
            if bytes > self.limits.max_result_bytes {
                return Err(self.too_large());
            }
            batches.push(batch);
        }
        Ok(QueryOutput { schema, batches })
    }

    /// Memory exhaustion, wherever it sits in the error chain, is its own kind of failure.
    /// Memory exhaustion, and a spill past its limit (DataFusion reports it as an I/O error),
    /// wherever they sit in the error chain, are the memory limit.
    fn classify(&self, e: DataFusionError, otherwise: fn(String) -> QueryError) -> QueryError {
        if let DataFusionError::ResourcesExhausted(message) = e.find_root() {
            return QueryError::Memory {
                limit_bytes: self.limits.memory_bytes,
                message: message.clone(),
            };
        }
        let text = e.to_string();
        if text.contains("spilling process has exceeded the allowable limit") {
            return QueryError::Memory {
                limit_bytes: self.limits.memory_bytes,
                message: format!(
                    "the query spilled more than the {} bytes allowed to disk",
                    self.limits.max_spill_bytes
                ),
            };
        }
        otherwise(text)
    }

    /// Streams the rows of one read-only statement, without the time limit and result cap of
    /// [`QueryEngine::execute`]: for the service's own scans of whole tables (detection replay).
    pub async fn stream(
        &self,
        sql: &str,
    ) -> Result<datafusion::physical_plan::SendableRecordBatchStream, QueryError> {
        let plan = self.plan_checked(parse_read_only(sql)?).await?;
        self.ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| QueryError::Rejected(e.to_string()))?
            .execute_stream()
            .await
            .map_err(|e| QueryError::Execution(e.to_string()))
    }
}
