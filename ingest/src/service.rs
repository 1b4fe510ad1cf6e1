//! The long-running service: ingest loop and HTTP API in one process.
//!
//! [`Service::bind`] opens the lake, the ledger and the sources and binds the HTTP listener (so a
//! test can bind port 0 and read the address); [`Service::run`] then scans every source each
//! `poll_interval` and serves the API until `shutdown` completes. Shutdown is ordered: the ingest
//! loop stops taking new objects, objects in flight finish and commit, then HTTP stops.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use std::sync::Mutex;

use auditlake_detect::deliver::Deliverer;
use auditlake_detect::outbox;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use auditlake_query::QueryEngine;
use auditlake_query::http::{ApiState, StatusSource, router};

use crate::config::{Config, SourceSpec};
use crate::lake::writer::LakeWriter;
use crate::ledger::{Ledger, ObjectStatus};
use crate::pipeline::{Detection, Pipeline};
use crate::source::LogSource;
use crate::source::folder::FolderSource;

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
    Ledger(#[from] crate::ledger::LedgerError),
    #[error(transparent)]
    Lake(#[from] crate::lake::writer::WriteError),
    #[error("source {0}")]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Query(#[from] auditlake_query::QueryError),
    #[error("binding HTTP listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Http(#[source] std::io::Error),
    #[error(transparent)]
    Detect(auditlake_detect::config::DetectConfigError),
    #[error("reading detector state: {0}")]
    DetectState(#[source] redb::Error),
}

/// The pipeline, the sources it scans and the alert deliverer: what `serve` and `ingest` need.
#[derive(Debug)]
pub struct Ingestion {
    pub pipeline: Arc<Pipeline>,
    pub sources: Vec<Arc<dyn LogSource>>,
    pub deliverer: Deliverer,
}

/// Opens the lake writer, ledger and sources of `config`.
pub fn open_pipeline(config: &Config) -> Result<Ingestion, ServiceError> {
    std::fs::create_dir_all(&config.state_dir).map_err(|source| ServiceError::StateDir {
        path: config.state_dir.display().to_string(),
        source,
    })?;
    let ledger = Arc::new(Ledger::open(&config.state_dir.join("ledger.redb"))?);
    let writer = LakeWriter::create(&config.lake)?;
    let mut engine = config.detect.build().map_err(ServiceError::Detect)?;
    let saved = outbox::load_state(ledger.database()).map_err(ServiceError::DetectState)?;
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
    let pipeline = Arc::new(
        Pipeline::new(ledger, writer, config.limits.into(), config.concurrency)
            .with_detection(detection),
    );
    let mut sources: Vec<Arc<dyn LogSource>> = Vec::new();
    for spec in &config.sources {
        match spec {
            SourceSpec::Folder {
                path,
                atlas_project,
            } => {
                sources.push(Arc::new(FolderSource::new(
                    path,
                    config.settle,
                    atlas_project.clone(),
                )?));
            }
        }
    }
    Ok(Ingestion {
        pipeline,
        sources,
        deliverer,
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
    pipeline: Arc<Pipeline>,
    sources: Vec<Arc<dyn LogSource>>,
    deliverer: Deliverer,
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
        if let Ok(rows) = outbox::all(self.pipeline.ledger().database()) {
            for row in rows {
                *deliveries.entry(row.state.as_str()).or_default() += 1;
            }
        }
        totals.insert("alert_deliveries".into(), serde_json::json!(deliveries));
        serde_json::json!({
            "idle": s.idle.load(Ordering::Relaxed),
            "sources": self.sources,
            "process": s.snapshot(),
            "lake": totals,
        })
    }
}

impl Service {
    /// Opens everything `config` names and binds the HTTP listener.
    pub async fn bind(config: Config) -> Result<Self, ServiceError> {
        let Ingestion {
            pipeline,
            sources,
            deliverer,
        } = open_pipeline(&config)?;
        let engine = QueryEngine::open(&config.lake).await?;
        crate::deliveries::register(&engine, pipeline.ledger().database().clone())?;
        let listener = TcpListener::bind(config.http_listen)
            .await
            .map_err(|source| ServiceError::Bind {
                addr: config.http_listen,
                source,
            })?;
        Ok(Service {
            config,
            listener,
            pipeline,
            sources,
            deliverer,
            engine,
        })
    }

    /// The address the API listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.config.http_listen)
    }

    /// Runs until `shutdown` completes; see the module documentation.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServiceError> {
        let addr = self.local_addr();
        let stop = CancellationToken::new();
        let status = Arc::new(ServiceStatus {
            pipeline: self.pipeline.clone(),
            sources: self.sources.iter().map(|s| s.name().to_owned()).collect(),
        });
        let state = ApiState {
            engine: self.engine.clone(),
            status,
            token: self.config.http_token.as_deref().map(Arc::from),
        };
        let ingest = tokio::spawn(ingest_loop(
            self.pipeline.clone(),
            self.sources.clone(),
            self.config.poll_interval,
            stop.clone(),
        ));
        let deliver_stop = CancellationToken::new();
        let deliver = tokio::spawn(self.deliverer.run(deliver_stop.clone()));
        let http_stop = CancellationToken::new();
        let http = {
            let http_stop = http_stop.clone();
            let app = router(state);
            let listener = self.listener;
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move { http_stop.cancelled().await })
                    .await
            })
        };
        tracing::info!(%addr, lake = %self.config.lake.display(), "auditlake serving");
        shutdown.await;
        tracing::info!("shutting down: finishing objects in flight");
        stop.cancel();
        if let Err(e) = ingest.await {
            tracing::error!(error = %e, "ingest loop ended abnormally");
        }
        deliver_stop.cancel();
        if let Err(e) = deliver.await {
            tracing::error!(error = %e, "alert delivery ended abnormally");
        }
        http_stop.cancel();
        match http.await {
            Ok(result) => result.map_err(ServiceError::Http),
            Err(e) => Err(ServiceError::Http(std::io::Error::other(e))),
        }
    }
}

async fn ingest_loop(
    pipeline: Arc<Pipeline>,
    sources: Vec<Arc<dyn LogSource>>,
    poll_interval: std::time::Duration,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let mut quiet = true;
        for source in &sources {
            match pipeline.scan(source.as_ref(), &stop).await {
                Ok(report) => {
                    if report.processed > 0 || report.unsettled > 0 || report.failed > 0 {
                        quiet = false;
                        tracing::info!(
                            source = source.name(),
                            listed = report.listed,
                            processed = report.processed,
                            failed = report.failed,
                            unsettled = report.unsettled,
                            "scan done"
                        );
                    }
                }
                Err(e) => {
                    quiet = false;
                    tracing::warn!(source = source.name(), error = %e, "scan failed");
                }
            }
        }
        pipeline.stats().idle.store(quiet, Ordering::Relaxed);
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(poll_interval) => {}
        }
    }
}
