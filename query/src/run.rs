//! One caller's query, from its slot to its last batch.
//!
//! A query runs as one task on the query threads (never the service's own), which holds its
//! slot of `max_concurrent` for as long as it runs and hands its batches to the caller through a
//! small channel: the caller encodes them as they come (HTTP body, Postgres rows) and never holds
//! the whole result. The caller's [`QueryStream`] aborts the task when it is dropped — an HTTP
//! client that went away, a Postgres `CancelRequest`, a closed connection — and the slot is free
//! only once the task has stopped. Both ends know the deadline: the task stops at it, and the
//! caller reports a timeout at it even when the task is stuck in a long computation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::engine::QueryError;

/// Rows held before the first is handed over: while a run holds only these, a lake file that
/// vanished under it (replaced by a newer version of its object) lets it start again unseen.
pub(crate) const HOLD_BYTES: usize = 1 << 20;

/// What the task tells its caller.
#[derive(Debug)]
pub(crate) enum Message {
    Schema(SchemaRef),
    Batch(RecordBatch),
    Done,
    Failed(QueryError),
}

/// Aborts a task when dropped.
#[derive(Debug)]
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The sending end, held by the task with its slot.
#[derive(Debug)]
pub(crate) struct Sender {
    tx: mpsc::Sender<Message>,
    slot: Option<OwnedSemaphorePermit>,
}

impl Sender {
    /// Hands a message over; `false` when the caller is gone (the task should stop).
    pub(crate) async fn send(&self, message: Message) -> bool {
        self.tx.send(message).await.is_ok()
    }

    /// Hands over the last message ([`Message::Done`] or [`Message::Failed`]) once the query's
    /// work has stopped: its slot is free before the caller hears of the end, so a caller's next
    /// query never finds it taken.
    pub(crate) async fn finish(&mut self, message: Message) {
        self.slot.take();
        let _ = self.tx.send(message).await;
    }
}

/// Why a query was stopped from outside: the heap bound it was stopped for, and what was seen.
type StopReason = Arc<OnceLock<(usize, String)>>;

/// The queries running now, so that the memory watch can stop them all at once.
#[derive(Debug, Default)]
pub(crate) struct Runs {
    next: AtomicU64,
    tasks: Mutex<HashMap<u64, (AbortHandle, StopReason)>>,
}

impl Runs {
    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (AbortHandle, StopReason)>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many queries run now.
    pub(crate) fn count(&self) -> usize {
        self.tasks().len()
    }

    /// Stops every running query, telling each caller why; returns how many.
    pub(crate) fn stop_all(&self, limit_bytes: usize, message: &str) -> usize {
        let tasks = std::mem::take(&mut *self.tasks());
        for (abort, reason) in tasks.values() {
            let _ = reason.set((limit_bytes, message.to_owned()));
            abort.abort();
        }
        tasks.len()
    }
}

/// Takes a finished query out of [`Runs`].
struct Deregister(Arc<Runs>, u64);

impl Drop for Deregister {
    fn drop(&mut self) {
        self.0.tasks().remove(&self.1);
    }
}

/// The rows of one running query, batch by batch; dropping it stops the query.
#[derive(Debug)]
pub struct QueryStream {
    schema: SchemaRef,
    rx: mpsc::Receiver<Message>,
    deadline: Instant,
    timeout: Duration,
    finished: bool,
    reason: StopReason,
    _task: AbortOnDrop,
}

/// Starts `work` on `executor` with the slot `slot`, registered in `runs`; waits for its schema
/// (or its failure) until `timeout` has passed since the call.
pub(crate) async fn start<F, Fut>(
    executor: &tokio::runtime::Handle,
    runs: &Arc<Runs>,
    slot: OwnedSemaphorePermit,
    timeout: Duration,
    work: F,
) -> Result<QueryStream, QueryError>
where
    F: FnOnce(Sender) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let deadline = Instant::now() + timeout;
    let (tx, mut rx) = mpsc::channel(2);
    let sender = Sender {
        tx,
        slot: Some(slot),
    };
    let id = runs.next.fetch_add(1, Ordering::Relaxed);
    let reason = StopReason::default();
    let deregister = Deregister(runs.clone(), id);
    let work = work(sender);
    let task = {
        // Registered before it starts, so a quick query cannot end before it is listed.
        let mut tasks = runs.tasks();
        let task = executor.spawn(async move {
            let _deregister = deregister;
            let _ = tokio::time::timeout_at(deadline, work).await;
        });
        tasks.insert(id, (task.abort_handle(), reason.clone()));
        AbortOnDrop(task.abort_handle())
    };
    match tokio::time::timeout_at(deadline, rx.recv()).await {
        Ok(Some(Message::Schema(schema))) => Ok(QueryStream {
            schema,
            rx,
            deadline,
            timeout,
            finished: false,
            reason,
            _task: task,
        }),
        Ok(Some(Message::Failed(e))) => Err(e),
        Ok(Some(Message::Batch(_) | Message::Done)) => Err(QueryError::Execution(
            "the query sent rows before its schema".into(),
        )),
        Ok(None) => Err(stopped(&reason, deadline, timeout)),
        Err(_) => Err(QueryError::Timeout(timeout)),
    }
}

/// Why a task ended without saying so: the memory watch, its deadline, or it was stopped.
fn stopped(reason: &StopReason, deadline: Instant, timeout: Duration) -> QueryError {
    if let Some((limit_bytes, message)) = reason.get() {
        QueryError::Memory {
            limit_bytes: *limit_bytes,
            message: message.clone(),
        }
    } else if Instant::now() >= deadline {
        QueryError::Timeout(timeout)
    } else {
        QueryError::Execution("the query stopped".into())
    }
}

impl QueryStream {
    /// The schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The next batch; `None` once the query has finished. After an error, nothing more.
    pub async fn next(&mut self) -> Option<Result<RecordBatch, QueryError>> {
        if self.finished {
            return None;
        }
        let failed = |this: &mut Self, e: QueryError| {
            this.finished = true;
            Some(Err(e))
        };
        match tokio::time::timeout_at(self.deadline, self.rx.recv()).await {
            Ok(Some(Message::Batch(batch))) => Some(Ok(batch)),
            Ok(Some(Message::Done)) => {
                self.finished = true;
                None
            }
            Ok(Some(Message::Failed(e))) => failed(self, e),
            Ok(Some(Message::Schema(_))) => failed(
                self,
                QueryError::Execution("the query sent its schema twice".into()),
            ),
            Ok(None) => {
                let e = stopped(&self.reason, self.deadline, self.timeout);
                failed(self, e)
            }
            Err(_) => failed(self, QueryError::Timeout(self.timeout)),
        }
    }

    /// The batches as a `Stream`, for encoders that want one.
    pub fn into_stream(
        self,
    ) -> impl futures::Stream<Item = Result<RecordBatch, QueryError>> + Send + 'static {
        futures::stream::unfold(self, |mut stream| async move {
            stream.next().await.map(|item| (item, stream))
        })
    }
}
