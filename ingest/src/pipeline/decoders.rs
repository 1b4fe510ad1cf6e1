//! The threads objects are decoded on: `concurrency` of them, owned by the pipeline.
//!
//! Decoding keeps its working buffers between objects in thread-local storage (simd-json's
//! tape and buffers, the inflater, the bytes per row of the last batch: see
//! [`crate::decode::tape`]), which is what makes parsing a line cost no allocation. On tokio's
//! blocking pool those buffers were kept by every thread that ever decoded, and that pool grows
//! to dozens of threads (file reads and commits run there too): on 1.4 KB CloudTrail records,
//! 400 MB of the 565 MB peak heap were idle tapes. Here they are kept by `concurrency` threads,
//! whatever else runs.
//!
//! They are plain threads, not a rayon pool: a rayon worker that waits on any rayon call (the
//! lake writer's encoding, `install`, a parallel iterator) runs other queued jobs of its pool
//! meanwhile, so a job holding the writer's rewrite lock was handed the next object, which then
//! waited on that lock for ever. A plain thread waiting on rayon just waits.

use std::sync::{Arc, Mutex, mpsc};

use tokio::sync::Semaphore;

type Job = Box<dyn FnOnce() + Send>;

/// See the module documentation.
#[derive(Debug)]
pub struct Decoders {
    /// `None` if the threads could not be started: decoding then runs on tokio's blocking pool.
    /// Dropping the sender ends the threads once they finish what they run.
    jobs: Option<mpsc::Sender<Job>>,
    /// One permit per thread, so that a task waits here (asynchronously, in the order tasks
    /// came) rather than in the queue of the threads holding a thread of the caller.
    permits: Arc<Semaphore>,
}

impl Decoders {
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let started = (0..threads).try_for_each(|i| {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("auditlake-decode-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let next = receiver.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok(job) = next else { break };
                        job();
                    }
                })
                .map(drop)
        });
        let jobs = match started {
            Ok(()) => Some(sender),
            Err(error) => {
                tracing::warn!(%error, "decoder threads not started; decoding on the blocking pool");
                None
            }
        };
        Decoders {
            jobs,
            permits: Arc::new(Semaphore::new(threads)),
        }
    }

    /// Runs `job` on a decoder thread once one is free. `Err` holds the message of its panic
    /// (or says why it did not run).
    pub async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, String> {
        // Closed only if the pipeline is dropped, when nothing waits for the result.
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| "the decoders were shut down".to_owned())?;
        let Some(jobs) = &self.jobs else {
            return tokio::task::spawn_blocking(job)
                .await
                .map_err(|e| e.to_string());
        };
        let (done, result) = tokio::sync::oneshot::channel();
        // A job may wait on the runtime (a shared lake's claims go over the network), as it
        // could on the blocking pool: the thread runs it inside the caller's runtime.
        let runtime = tokio::runtime::Handle::current();
        jobs.send(Box::new(move || {
            let _runtime = runtime.enter();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            // The caller may have stopped waiting (its scan cancelled): nobody to tell then.
            let _ = done.send(outcome.map_err(|panic| panic_message(panic.as_ref())));
        }))
        .map_err(|_| "the decoder threads have ended".to_owned())?;
        result
            .await
            .map_err(|_| "a decoder thread ended without an answer".to_owned())?
    }
}

/// `panicked: ` and the panic's message, if it is text.
pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|m| (*m).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    format!("panicked: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_as_many_threads_as_asked_whatever_their_number() {
        let decoders = Arc::new(Decoders::new(2));
        let names = futures::future::join_all((0..32).map(|_| {
            let decoders = decoders.clone();
            async move {
                decoders
                    .run(|| {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        std::thread::current().name().map(str::to_owned)
                    })
                    .await
                    .expect("the job ran")
            }
        }))
        .await;
        let distinct: std::collections::HashSet<_> = names.into_iter().flatten().collect();
        assert_eq!(distinct.len(), 2, "{distinct:?}");
        assert!(distinct.iter().all(|n| n.starts_with("auditlake-decode-")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_job_can_wait_on_the_runtime_of_its_caller() {
        let decoders = Decoders::new(1);
        let answer = decoders
            .run(|| {
                tokio::runtime::Handle::current().block_on(async {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    42
                })
            })
            .await;
        assert_eq!(answer, Ok(42));
    }

    #[tokio::test]
    async fn jobs_run_outside_any_rayon_pool_so_waiting_on_rayon_never_runs_another_job() {
        let decoders = Decoders::new(2);
        let index = decoders
            .run(rayon::current_thread_index)
            .await
            .expect("ran");
        assert_eq!(
            index, None,
            "a rayon worker would run queued jobs while it waits"
        );
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_thread_goes_on() {
        let decoders = Decoders::new(1);
        let failed = decoders
            .run(|| -> u32 { panic!("bad object") })
            .await
            .expect_err("the panic is reported");
        assert_eq!(failed, "panicked: bad object");
        assert_eq!(decoders.run(|| 7).await, Ok(7));
    }
}
