//! The long-running service: ingest loop and HTTP API in one process.
//!
//! [`Service::bind`] opens the lake, the ledger and the sources and binds the HTTP listener (so a
//! test can bind port 0 and read the address); [`Service::run`] then scans every source each
//! `poll_interval` and serves the API until `shutdown` completes. Shutdown is ordered: the ingest
//! loop stops taking new objects, objects in flight finish and commit, then HTTP stops.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use std::sync::Mutex;

use auditlake_detect::deliver::Deliverer;
use auditlake_detect::outbox;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use auditlake_query::http::{ApiState, StatusSource, router};
use auditlake_query::{LakeRoot, QueryEngine};

use crate::aws::AwsSettings;
use crate::config::{Config, SourceSpec};
use crate::lake::LakeWriter;
use crate::ledger::{Ledger, LedgerError, ObjectStatus};
use crate::pipeline::{Detection, Pipeline};
use crate::shared::SharedLake;
use crate::source::LogSource;
use crate::source::cloudwatch::CloudWatchSource;
use crate::source::folder::FolderSource;
use crate::source::notify::QueueSource;
use crate::source::s3::S3Source;

/// Start-up failures, each naming what was being opened.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("creating state folder {path}: {source}")]
    StateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("deleting files of an uncommitted group: {0}")]
    Recover(#[from] crate::pipeline::ObjectError),
    #[error(transparent)]
    Lake(#[from] crate::lake::WriteError),
    #[error("source {0}")]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Query(#[from] auditlake_query::QueryError),
    #[error("binding the {server} listener on {addr}: {source}")]
    Bind {
        server: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Http(#[source] std::io::Error),
    #[error(transparent)]
    Tls(#[from] auditlake_query::listen::TlsError),
    #[error("reading detector state: {0}")]
    DetectState(#[source] redb::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Shared(#[from] crate::shared::SharedError),
}

/// A source and how the service runs it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub source: Arc<dyn LogSource>,
    /// Pause between two scans (none after a scan that says more is waiting).
    pub interval: Duration,
}

/// The pipeline, the sources it reads and the alert deliverer: what `serve` and `ingest` need.
#[derive(Debug)]
pub struct Ingestion {
    pub pipeline: Arc<Pipeline>,
    /// Every source, in the configured order (folders, buckets and CloudWatch Logs groups),
    /// then the SQS queues of the buckets' notifications.
    pub sources: Vec<Listed>,
    pub deliverer: Deliverer,
    /// The lake root the pipeline writes (and queries read).
    pub lake: LakeRoot,
}

impl Ingestion {
    /// Names of every source, for status.
    pub fn source_names(&self) -> Vec<String> {
        self.sources
            .iter()
            .filter(|l| !l.source.receives())
            .map(|l| l.source.name().to_owned())
            .collect()
    }
}

/// How long a start waits for the ledger to be released by a run that is still stopping.
const LEDGER_RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Opens the ledger at `path`, waiting (up to [`LEDGER_RELEASE_WAIT`]) while another run still
/// holds it: a restarted service may start before the run it replaces has let go.
async fn open_ledger(path: &std::path::Path) -> Result<Ledger, LedgerError> {
    let deadline = tokio::time::Instant::now() + LEDGER_RELEASE_WAIT;
    let mut waiting = false;
    loop {
        match Ledger::open(path) {
            Err(LedgerError::Open {
                source: redb::Error::DatabaseAlreadyOpen,
                ..
            }) if tokio::time::Instant::now() < deadline => {
                if !waiting {
                    tracing::info!(path = %path.display(), "the ledger is held by another run; waiting for it to be released");
                    waiting = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            opened => return opened,
        }
    }
}

/// Opens the lake writer, ledger and sources of `config`.
pub async fn open_pipeline(config: &Config) -> Result<Ingestion, ServiceError> {
    std::fs::create_dir_all(&config.state_dir).map_err(|source| ServiceError::StateDir {
        path: config.state_dir.display().to_string(),
        source,
    })?;
    let ledger = Arc::new(open_ledger(&config.state_dir.join("ledger.redb")).await?);
    let root = config.lake.open().await?;
    let writer = LakeWriter::create(root.clone())?;
    let mut engine = config.rules.clone();
    let saved = ledger
        .database()
        .get()
        .and_then(|db| outbox::load_state(&db))
        .map_err(ServiceError::DetectState)?;
    if let Some(state) = saved {
        engine.restore(state);
    }
    let deliverer = Deliverer::new(
        ledger.database().clone(),
        config.webhooks.clone(),
        config.give_up_after,
    );
    let detection = Detection {
        engine: Arc::new(Mutex::new(engine)),
        webhooks: Arc::new(config.webhooks.clone()),
        wake: deliverer.waker(),
    };
    let mut pipeline = Pipeline::new(ledger, writer, config.limits.into(), config.concurrency)
        .with_group_rows(config.commit_rows)
        .with_event_id_retention(config.event_id_retention)
        .with_detection(detection);
    if config.shared_lake {
        pipeline = pipeline.with_shared(Arc::new(SharedLake::new(&root)?));
    }
    pipeline.recover().await?;
    let pipeline = Arc::new(pipeline);
    let mut sources = Vec::new();
    // Sources sharing a queue share one consumer.
    let mut by_queue: Vec<(String, AwsSettings, Duration, Vec<Arc<S3Source>>)> = Vec::new();
    for spec in &config.sources {
        match spec {
            SourceSpec::Folder {
                path,
                atlas_project,
            } => {
                sources.push(Listed {
                    source: Arc::new(FolderSource::new(
                        path,
                        config.settle,
                        atlas_project.clone(),
                    )?),
                    interval: config.poll_interval,
                });
            }
            SourceSpec::S3 { spec, queue_wait } => {
                let source =
                    Arc::new(S3Source::connect(spec.clone(), pipeline.ledger().clone()).await);
                let interval = match &spec.queue_url {
                    Some(queue) => {
                        match by_queue.iter_mut().find(|(q, ..)| q == queue) {
                            Some((.., members)) => members.push(source.clone()),
                            None => by_queue.push((
                                queue.clone(),
                                spec.aws.clone(),
                                *queue_wait,
                                vec![source.clone()],
                            )),
                        }
                        spec.reconcile_interval
                    }
                    None => config.poll_interval,
                };
                sources.push(Listed { source, interval });
            }
            SourceSpec::Cloudwatch(spec) => {
                sources.push(Listed {
                    source: Arc::new(
                        CloudWatchSource::connect(spec.clone(), pipeline.ledger().clone()).await,
                    ),
                    interval: config.poll_interval,
                });
            }
        }
    }
    for (queue, aws, wait, members) in by_queue {
        sources.push(Listed {
            source: Arc::new(QueueSource::connect(queue, &aws, members, wait).await),
            interval: Duration::ZERO,
        });
    }
    Ok(Ingestion {
        pipeline,
        sources,
        deliverer,
        lake: root,
    })
}

/// Binds and runs the service of `config` until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    Service::bind(config).await?.run(shutdown).await
}

/// A bound, not yet running service.
#[derive(Debug)]
pub struct Service {
    config: Config,
    listener: TcpListener,
    pg_listener: Option<TcpListener>,
    ingestion: Ingestion,
    engine: QueryEngine,
}

/// Status for `GET /v1/status`: this process's counters and the ledger's totals.
struct ServiceStatus {
    pipeline: Arc<Pipeline>,
    sources: Vec<String>,
}

impl StatusSource for ServiceStatus {
    fn status(&self) -> serde_json::Value {
        let s = self.pipeline.stats();
        let mut totals = serde_json::Map::new();
        let mut objects_by_kind: std::collections::BTreeMap<String, u64> = Default::default();
        let (mut ct, mut mongo, mut rejected, mut dups, mut failed, mut alerts) =
            (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
        match self.pipeline.ledger().entries() {
            Ok(entries) => {
                for (_, e) in &entries {
                    *objects_by_kind.entry(e.kind.clone()).or_default() += 1;
                    ct += e.cloudtrail_rows;
                    mongo += e.mongodb_audit_rows;
                    rejected += e.rejected_rows;
                    dups += e.duplicate_events;
                    alerts += e.alerts;
                    failed += u64::from(e.status == ObjectStatus::Failed);
                }
                totals.insert("objects".into(), entries.len().into());
            }
            Err(e) => {
                totals.insert("error".into(), e.to_string().into());
            }
        }
        totals.insert("objects_by_kind".into(), serde_json::json!(objects_by_kind));
        totals.insert("objects_failed".into(), failed.into());
        totals.insert("cloudtrail_rows".into(), ct.into());
        totals.insert("mongodb_audit_rows".into(), mongo.into());
        totals.insert("rejected_rows".into(), rejected.into());
        totals.insert("duplicate_events".into(), dups.into());
        totals.insert("alerts".into(), alerts.into());
        let mut deliveries: std::collections::BTreeMap<&str, u64> = Default::default();
        if let Ok(rows) = auditlake_detect::deliver::deliveries(self.pipeline.ledger().database()) {
            for row in rows {
                *deliveries.entry(row.state.as_str()).or_default() += 1;
            }
        }
        totals.insert("alert_deliveries".into(), serde_json::json!(deliveries));
        serde_json::json!({
            "idle": s.idle.load(Ordering::Relaxed),
            "sink": {
                "down": self.pipeline.sink_error().is_some(),
                "error": self.pipeline.sink_error(),
            },
            "sources": self.sources,
            "process": s.snapshot(),
            "lake": totals,
        })
    }

    fn metrics(&self) -> String {
        let database = self.pipeline.ledger().database().clone();
        let deliveries = Arc::new(move || {
            let mut by_state: std::collections::BTreeMap<String, u64> = Default::default();
            for row in auditlake_detect::deliver::deliveries(&database).unwrap_or_default() {
                *by_state.entry(row.state.as_str().to_owned()).or_default() += 1;
            }
            by_state.into_iter().collect()
        });
        crate::metrics::render(self.pipeline.stats(), deliveries)
    }
}

impl Service {
    /// Opens everything `config` names and binds the HTTP listener.
    pub async fn bind(config: Config) -> Result<Self, ServiceError> {
        let ingestion = open_pipeline(&config).await?;
        let engine =
            QueryEngine::open_with(&ingestion.lake, config.query_limits, &config.access).await?;
        engine
            .watch_memory(
                Arc::new(crate::allocator::heap_in_use),
                config.max_heap_bytes,
            )
            .map_err(ServiceError::Http)?;
        crate::deliveries::register(&engine, ingestion.pipeline.ledger().database().clone())?;
        let listener = TcpListener::bind(config.http_listen)
            .await
            .map_err(|source| ServiceError::Bind {
                server: "HTTP",
                addr: config.http_listen,
                source,
            })?;
        let pg_listener = match config.pg_listen {
            None => None,
            Some(addr) => {
                Some(
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| ServiceError::Bind {
                            server: "Postgres",
                            addr,
                            source,
                        })?,
                )
            }
        };
        Ok(Service {
            config,
            listener,
            pg_listener,
            ingestion,
            engine,
        })
    }

    /// The address the API listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.config.http_listen)
    }

    /// The address of the Postgres protocol server, if enabled.
    pub fn pg_addr(&self) -> Option<SocketAddr> {
        self.pg_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Runs until `shutdown` completes; see the module documentation.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServiceError> {
        let addr = self.local_addr();
        let stop = CancellationToken::new();
        let source_names = self.ingestion.source_names();
        let Ingestion {
            pipeline,
            sources,
            deliverer,
            ..
        } = self.ingestion;
        let status = Arc::new(ServiceStatus {
            pipeline: pipeline.clone(),
            sources: source_names,
        });
        let state = ApiState {
            engine: self.engine.clone(),
            status,
            token: self.config.http_token.as_deref().map(Arc::from),
        };
        let ingest = spawn_ingest(&pipeline, sources, &stop);
        let deliver_stop = CancellationToken::new();
        let deliver = tokio::spawn(deliverer.run(deliver_stop.clone()));
        let http_stop = CancellationToken::new();
        let (http_tls, pg_tls) = match &self.config.tls {
            Some(files) => (
                Some(files.acceptor(&[b"http/1.1"])?),
                Some(files.acceptor(&[b"postgresql"])?),
            ),
            None => (None, None),
        };
        let connections = self.config.connections;
        let pg = self.pg_listener.map(|listener| {
            let settings = auditlake_query::pg::PgSettings {
                token: self.config.http_token.as_deref().map(Arc::from),
                connections,
                max_statement_bytes: self.config.query_limits.max_statement_bytes,
                tls: pg_tls,
            };
            let (engine, stop) = (self.engine.clone(), http_stop.clone());
            tokio::spawn(async move {
                auditlake_query::pg::serve(listener, &engine, settings, stop).await;
            })
        });
        let http = {
            let stop = http_stop.clone();
            let app = router(state);
            let listener = self.listener;
            tokio::spawn(auditlake_query::listen::serve_http(
                listener,
                app,
                connections,
                http_tls,
                stop,
            ))
        };
        tracing::info!(%addr, lake = %self.config.lake.display(), "auditlake serving");
        shutdown.await;
        tracing::info!("shutting down: finishing objects in flight");
        stop.cancel();
        for task in ingest {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "ingest task ended abnormally");
            }
        }
        deliver_stop.cancel();
        if let Err(e) = deliver.await {
            tracing::error!(error = %e, "alert delivery ended abnormally");
        }
        http_stop.cancel();
        if let Some(pg) = pg
            && let Err(e) = pg.await
        {
            tracing::error!(error = %e, "Postgres server ended abnormally");
        }
        http.await
            .map_err(|e| ServiceError::Http(std::io::Error::other(e)))
    }
}

/// Starts one task per source, each scanning it in turn until `stop`. The pipeline is idle
/// when every source but the queues found nothing to do on its last scan.
fn spawn_ingest(
    pipeline: &Arc<Pipeline>,
    sources: Vec<Listed>,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let quiet: Arc<Vec<AtomicBool>> = Arc::new(
        sources
            .iter()
            .map(|l| AtomicBool::new(l.source.receives()))
            .collect(),
    );
    let mut tasks = Vec::new();
    for (slot, listed) in sources.into_iter().enumerate() {
        let (pipeline, stop, quiet) = (pipeline.clone(), stop.clone(), quiet.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                let scanned = scan_once(&pipeline, listed.source.as_ref(), &stop).await;
                if !listed.source.receives() {
                    mark(&pipeline, &quiet, slot, scanned == Scanned::Quiet);
                }
                let pause = match scanned {
                    Scanned::More => continue,
                    Scanned::Failed => listed.interval.max(FAILED_SCAN_PAUSE),
                    Scanned::Quiet | Scanned::Busy => listed.interval,
                };
                if !sleep_or_stop(pause, &stop).await {
                    break;
                }
            }
        }));
    }
    tasks
}

/// Least pause after a scan that failed (a queue's receives otherwise follow each other).
const FAILED_SCAN_PAUSE: Duration = Duration::from_secs(2);

fn mark(pipeline: &Pipeline, quiet: &[AtomicBool], slot: usize, done: bool) {
    quiet[slot].store(done, Ordering::Relaxed);
    let all = quiet.iter().all(|q| q.load(Ordering::Relaxed));
    pipeline.stats().idle.store(all, Ordering::Relaxed);
}

/// Sleeps `interval`; false if `stop` fired first.
async fn sleep_or_stop(interval: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(interval) => true,
    }
}

/// What one scan of a source found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scanned {
    /// Nothing to do.
    Quiet,
    /// Objects ingested (or failed, or left for later).
    Busy,
    /// More is waiting now: scan again at once.
    More,
    /// The listing failed.
    Failed,
}

/// Lists and ingests one source once.
async fn scan_once(
    pipeline: &Pipeline,
    source: &dyn LogSource,
    stop: &CancellationToken,
) -> Scanned {
    match pipeline.scan(source, stop).await {
        Ok(report) => {
            let quiet = report.processed == 0
                && report.unsettled == 0
                && report.failed == 0
                && report.deferred == 0
                && pipeline.sink_error().is_none();
            if !quiet {
                tracing::info!(
                    source = source.name(),
                    listed = report.listed,
                    processed = report.processed,
                    failed = report.failed,
                    unsettled = report.unsettled,
                    log_events = report.log_events,
                    "scan done"
                );
            }
            if report.more && report.failed == 0 && report.deferred == 0 {
                Scanned::More
            } else if quiet {
                Scanned::Quiet
            } else {
                Scanned::Busy
            }
        }
        Err(e) => {
            tracing::warn!(source = source.name(), error = %e, "scan failed");
            Scanned::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_start_waits_for_the_ledger_to_be_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.redb");
        let held = Ledger::open(&path).expect("open");
        assert!(matches!(
            Ledger::open(&path),
            Err(LedgerError::Open {
                source: redb::Error::DatabaseAlreadyOpen,
                ..
            })
        ));
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(held);
        });
        let started = std::time::Instant::now();
        open_ledger(&path).await.expect("opened once released");
        assert!(started.elapsed() >= Duration::from_millis(250));
        release.await.expect("release");
    }
}
