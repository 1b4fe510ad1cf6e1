//! The service configuration: a TOML file read once, validated once.
//!
//! [`ConfigFile`] mirrors the file (unknown keys are errors that name the key);
//! [`Config::from_file`] checks it and resolves defaults and secrets into a [`Config`] that the
//! rest of the program trusts. Secrets come only from the environment, through the `env`
//! function given to it, never from the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use serde::Deserialize;

use auditlake_detect::config::DetectConfig;
use auditlake_detect::deliver::{AlertsConfig, Webhook};

use auditlake_query::QueryLimits;
use auditlake_query::listen::{ConnectionLimits, TlsFiles};

use crate::aws::AwsSettings;
use crate::decode::DecodeLimits;
use crate::source::cloudwatch::CloudWatchSpec;
use crate::source::layout::ExpectedKind;
use crate::source::s3::S3Spec;

/// The configuration used when none is given: the bundled sample day and its rules.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// Default HTTP address: loopback only.
pub const DEFAULT_HTTP: &str = "127.0.0.1:7080";
/// Environment variable holding the HTTP bearer token, unless the config names another.
pub const DEFAULT_TOKEN_ENV: &str = "AUDITLAKE_HTTP_TOKEN";

/// The configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Lake root: a folder, or `s3://bucket/prefix`. Default `./lake`.
    pub lake: Option<String>,
    /// AWS settings for a lake on S3 (`[lake_aws]`: region, endpoint_url, role_arn, ...).
    pub lake_aws: Option<AwsConfig>,
    /// Folder for the ledger and other state. Default `<lake>/_state` for a local lake,
    /// `./auditlake-state` for a lake on S3.
    pub state_dir: Option<PathBuf>,
    /// The HTTP API.
    #[serde(default)]
    pub http: HttpConfig,
    /// How ingestion runs.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Limits on SQL queries (HTTP and Postgres clients).
    #[serde(default)]
    pub sql: SqlConfig,
    /// Where logs come from (`[[source]]` tables). None: the service only answers queries (a
    /// node for auditors reading a lake that workers write); the built-in configuration, used
    /// without `--config`, names the sample day.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// Detection rules.
    #[serde(default)]
    pub detect: DetectConfig,
    /// Alert delivery.
    #[serde(default)]
    pub alerts: AlertsConfig,
}

/// `[http]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on. Default `127.0.0.1:7080`.
    pub listen: Option<String>,
    /// Environment variable that holds the bearer token. Default `AUDITLAKE_HTTP_TOKEN`.
    pub token_env: Option<String>,
    /// Address of the Postgres wire protocol server (off unless set). The bearer token is its
    /// password.
    pub pg_listen: Option<String>,
    /// PEM certificate chain: with `tls_key`, both servers speak TLS (use it beyond loopback).
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key of `tls_certificate`.
    pub tls_key: Option<PathBuf>,
    /// Connections open at once, per server. Default 256.
    pub max_connections: Option<usize>,
    /// Time for a TLS handshake and for each request's headers (HTTP), or for the login
    /// (Postgres). Default `10s`.
    #[serde(default, with = "humantime_serde")]
    pub header_timeout: Option<Duration>,
    /// Time a connection may stay open with nothing asked. Default `5m`.
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
}

/// `[sql]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// Wall time of one query. Default `60s`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Memory pool for sorts, joins and aggregations, in bytes. Default 1 GiB.
    pub memory_limit: Option<usize>,
    /// Rows of one result. Default 1,000,000.
    pub max_result_rows: Option<usize>,
    /// In-memory bytes of one result. Default 256 MiB.
    pub max_result_bytes: Option<usize>,
    /// Queries running at once. Default 8.
    pub max_concurrent: Option<usize>,
    /// Bytes all queries together may spill to the temporary folder. Default 4 GiB.
    pub max_spill_bytes: Option<u64>,
    /// Bytes one call of `repeat`, `range`, `lpad`, `array_repeat`, `concat`, … may produce.
    /// Default 64 MiB.
    pub max_function_bytes: Option<usize>,
    /// Bytes of one statement (HTTP body, Postgres message). Default 1 MiB.
    pub max_statement_bytes: Option<usize>,
    /// Heap of the whole process above which every running query is stopped: what the pool
    /// does not account. Default `memory_limit` + 1 GiB.
    pub max_heap_bytes: Option<usize>,
}

/// `[ingest]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Objects decoded at once (twice as many are fetched ahead). Default: the number of cores.
    pub concurrency: Option<usize>,
    /// Rows after which a commit group's files are completed and committed. Default 131072:
    /// fewer make smaller files that become queryable sooner.
    pub commit_rows: Option<usize>,
    /// Time between scans of each source. Default `5s`.
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
    /// How long a file must be unmodified before it is read. Default `1s`.
    #[serde(default, with = "humantime_serde")]
    pub settle: Option<Duration>,
    /// Largest record (one line) in bytes; longer ones are rejected. Default 4 MiB.
    pub max_record_bytes: Option<usize>,
    /// Largest object after decompression, in bytes. Default 256 MiB: each object decoding may hold this much.
    pub max_object_bytes: Option<usize>,
    /// Several workers write this lake (e.g. on one SQS queue): decide event-id ownership and
    /// skip objects through the lake itself (see `shared.rs`). Default false.
    pub shared_lake: Option<bool>,
    /// How long before the newest CloudTrail event the ledger remembers which object holds each
    /// event id, to drop the events CloudTrail delivers twice. Default `30d`; at least `1h`.
    #[serde(default, with = "humantime_serde")]
    pub event_id_retention: Option<Duration>,
}

/// `[[source]]`
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// A local folder tree holding CloudTrail and/or Atlas push-export objects.
    Folder {
        /// The folder.
        path: PathBuf,
        /// Atlas project name stamped on audit rows from this source.
        atlas_project: Option<String>,
    },
    /// An S3 bucket, listed and optionally notified through SQS.
    S3 {
        bucket: String,
        /// Key prefix (a folder). Default: the whole bucket.
        prefix: Option<String>,
        /// `auto` (default: by key layout), `cloudtrail` or `atlas_audit`.
        kind: Option<String>,
        #[serde(flatten)]
        aws: AwsConfig,
        /// SQS queue receiving the bucket's `ObjectCreated` notifications.
        queue_url: Option<String>,
        /// Long-poll wait of one receive. Default `20s`.
        #[serde(default, with = "humantime_serde")]
        queue_wait: Option<Duration>,
        /// Time between listings when a queue is set. Default `15m`.
        #[serde(default, with = "humantime_serde")]
        reconcile_interval: Option<Duration>,
        /// How far before the newest listed key each listing starts again. Default `1h`.
        #[serde(default, with = "humantime_serde")]
        look_back: Option<Duration>,
        /// Atlas project name stamped on audit rows from this source.
        atlas_project: Option<String>,
    },
    /// CloudWatch Logs groups receiving CloudTrail events.
    Cloudwatch {
        log_groups: Vec<String>,
        #[serde(flatten)]
        aws: AwsConfig,
        /// How far before the cursor each read starts again. Default `5m`.
        #[serde(default, with = "humantime_serde")]
        overlap: Option<Duration>,
        /// Where a group read for the first time starts, before now. Default `1d`.
        #[serde(default, with = "humantime_serde")]
        start: Option<Duration>,
        /// Most events per read. Default 10000.
        max_events: Option<usize>,
        /// Events per `FilterLogEvents` page (1 to 10000). Default: the service's.
        page_size: Option<i32>,
    },
}

/// AWS settings of an S3 or CloudWatch source (flattened into its table).
#[derive(Debug, Default, Deserialize)]
pub struct AwsConfig {
    /// Region. Default: from the environment or profile.
    pub region: Option<String>,
    /// Endpoint of an S3-compatible or local service.
    pub endpoint_url: Option<String>,
    /// Role to assume for reading (cross-account).
    pub role_arn: Option<String>,
    /// External id required by the role's trust policy.
    pub external_id: Option<String>,
    /// Time limit of one request attempt. Default `30s`.
    #[serde(default, with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
    /// Attempts per request, with backoff and jitter. Default 8.
    pub max_attempts: Option<u32>,
}

/// A configuration error, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// A validated source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Folder {
        path: PathBuf,
        atlas_project: Option<String>,
    },
    S3 {
        spec: S3Spec,
        /// Long-poll wait of one SQS receive.
        queue_wait: Duration,
    },
    Cloudwatch(CloudWatchSpec),
}

/// Where the lake is, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeSpec {
    Local(PathBuf),
    S3 {
        location: S3Location,
        aws: AwsSettings,
    },
}

impl LakeSpec {
    /// A folder, or `s3://bucket/prefix` reached with `aws`.
    pub fn parse(text: &str, aws: AwsSettings) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("must not be empty".into());
        }
        if text.starts_with("s3://") {
            return Ok(LakeSpec::S3 {
                location: S3Location::parse(text)?,
                aws,
            });
        }
        if text.contains("://") {
            return Err(format!("{text:?}: use a folder or s3://bucket/prefix"));
        }
        Ok(LakeSpec::Local(PathBuf::from(text)))
    }

    /// Where state lives when the configuration does not say.
    pub fn default_state_dir(&self) -> PathBuf {
        match self {
            LakeSpec::Local(path) => path.join("_state"),
            LakeSpec::S3 { .. } => PathBuf::from("auditlake-state"),
        }
    }

    /// A folder path or `s3://` URL, for messages.
    pub fn display(&self) -> String {
        match self {
            LakeSpec::Local(path) => path.display().to_string(),
            LakeSpec::S3 { location, .. } => {
                format!("s3://{}/{}", location.bucket, location.prefix)
            }
        }
    }

    /// Opens the root: a folder as is, or an S3 client for the bucket.
    pub async fn open(&self) -> Result<auditlake_schema::LakeRoot, ConfigError> {
        match self {
            LakeSpec::Local(path) => Ok(auditlake_schema::LakeRoot::Local(path.clone())),
            LakeSpec::S3 { location, aws } => {
                let store = crate::aws::object_store(&location.bucket, aws)
                    .await
                    .map_err(|m| invalid("lake", m))?;
                let url = url::Url::parse(&format!("s3://{}/{}", location.bucket, location.prefix))
                    .map_err(|e| invalid("lake", e.to_string()))?;
                Ok(auditlake_schema::LakeRoot::Store { url, store })
            }
        }
    }
}

/// The validated configuration.
#[derive(Clone)]
pub struct Config {
    pub lake: LakeSpec,
    pub state_dir: PathBuf,
    pub http_listen: SocketAddr,
    /// Postgres wire protocol address, if enabled.
    pub pg_listen: Option<SocketAddr>,
    /// Bearer token for the API, from the environment; required beyond loopback.
    pub http_token: Option<String>,
    /// The environment variable the token is read from, for messages.
    pub http_token_env: String,
    pub concurrency: usize,
    /// How long event-id claims are kept (see [`crate::ledger::Ledger::forget_old_claims`]).
    pub event_id_retention: Duration,
    /// Rows per commit group (see [`crate::pipeline::Pipeline::with_group_rows`]).
    pub commit_rows: usize,
    /// Several workers share the lake (see [`crate::shared`]).
    pub shared_lake: bool,
    pub poll_interval: Duration,
    pub settle: Duration,
    pub limits: DecodeLimitsConfig,
    pub sources: Vec<SourceSpec>,
    /// Limits on each SQL query.
    pub query_limits: QueryLimits,
    /// Heap of the process above which running queries are stopped.
    pub max_heap_bytes: usize,
    /// Limits on the connections of the HTTP and Postgres servers.
    pub connections: ConnectionLimits,
    /// Certificate and key when the servers speak TLS.
    pub tls: Option<TlsFiles>,
    /// Detection rules (validated: [`DetectConfig::build`] succeeds).
    pub detect: Arc<DetectConfig>,
    /// Webhooks, with URLs and secrets resolved from the environment.
    pub webhooks: Vec<Webhook>,
    /// How long an alert is retried before its delivery is marked failed.
    pub give_up_after: Duration,
}

/// Decode limits, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimitsConfig {
    pub max_record_bytes: usize,
    pub max_object_bytes: usize,
}

impl From<DecodeLimitsConfig> for DecodeLimits {
    fn from(c: DecodeLimitsConfig) -> Self {
        DecodeLimits {
            max_line_bytes: c.max_record_bytes,
            max_object_bytes: c.max_object_bytes,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("lake", &self.lake)
            .field("state_dir", &self.state_dir)
            .field("http_listen", &self.http_listen)
            .field(
                "http_token",
                &self.http_token.as_ref().map(|_| "<redacted>"),
            )
            .field("concurrency", &self.concurrency)
            .field("event_id_retention", &self.event_id_retention)
            .field("commit_rows", &self.commit_rows)
            .field("poll_interval", &self.poll_interval)
            .field("settle", &self.settle)
            .field("limits", &self.limits)
            .field("sources", &self.sources)
            .field("webhooks", &self.webhooks)
            .finish_non_exhaustive()
    }
}

impl ConfigFile {
    /// Parses TOML text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })
    }

    /// The built-in configuration (see [`DEFAULT_CONFIG`]).
    pub fn builtin() -> Self {
        Self::parse(DEFAULT_CONFIG, "built-in configuration").unwrap_or_default()
    }

    /// Reads and parses a TOML file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }
}

impl Config {
    /// Validates `file`; `env` looks up environment variables (for secrets).
    pub fn from_file(
        mut file: ConfigFile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let lake_aws = match file.lake_aws.take() {
            Some(aws) => aws.validate(&|name| format!("lake_aws.{name}"))?,
            None => AwsSettings::new(),
        };
        let lake = LakeSpec::parse(file.lake.as_deref().unwrap_or("lake"), lake_aws)
            .map_err(|m| invalid("lake", m))?;
        let state_dir = file
            .state_dir
            .take()
            .unwrap_or_else(|| lake.default_state_dir());

        let listen_text = file.http.listen.as_deref().unwrap_or(DEFAULT_HTTP);
        let http_listen: SocketAddr = listen_text.parse().map_err(|e| {
            invalid(
                "http.listen",
                format!("{listen_text:?} is not an address like 127.0.0.1:7080: {e}"),
            )
        })?;
        let token_env = file.http.token_env.as_deref().unwrap_or(DEFAULT_TOKEN_ENV);
        let http_token = env(token_env).filter(|t| !t.is_empty());
        check_token("http.listen", http_listen, http_token.as_deref(), token_env)?;
        let pg_listen = match file.http.pg_listen.as_deref() {
            None => None,
            Some(text) => {
                let addr: SocketAddr = text.parse().map_err(|e| {
                    invalid(
                        "http.pg_listen",
                        format!("{text:?} is not an address like 127.0.0.1:7432: {e}"),
                    )
                })?;
                check_token("http.pg_listen", addr, http_token.as_deref(), token_env)?;
                Some(addr)
            }
        };

        let (connections, tls) = file.http.connections()?;

        let i = std::mem::take(&mut file.ingest);
        let concurrency = match i.concurrency {
            Some(0) => return Err(invalid("ingest.concurrency", "must be at least 1")),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(2, usize::from),
        };
        let commit_rows = match i.commit_rows {
            Some(0) => return Err(invalid("ingest.commit_rows", "must be at least 1")),
            Some(n) => n,
            None => crate::pipeline::GROUP_MAX_ROWS,
        };
        let event_id_retention = i
            .event_id_retention
            .unwrap_or(crate::pipeline::EVENT_ID_RETENTION);
        if event_id_retention < Duration::from_secs(3600) {
            return Err(invalid("ingest.event_id_retention", "must be at least 1h"));
        }
        let poll_interval = i.poll_interval.unwrap_or(Duration::from_secs(5));
        if poll_interval.is_zero() {
            return Err(invalid("ingest.poll_interval", "must be more than zero"));
        }
        let limits = DecodeLimitsConfig {
            max_record_bytes: i.max_record_bytes.unwrap_or(4 << 20),
            max_object_bytes: i
                .max_object_bytes
                .unwrap_or(crate::decode::DEFAULT_MAX_OBJECT_BYTES),
        };
        if limits.max_record_bytes < 1024 {
            return Err(invalid("ingest.max_record_bytes", "must be at least 1024"));
        }
        if limits.max_object_bytes < limits.max_record_bytes {
            return Err(invalid(
                "ingest.max_object_bytes",
                "must be at least ingest.max_record_bytes",
            ));
        }

        let mut sources = Vec::new();
        for (n, source) in std::mem::take(&mut file.sources).into_iter().enumerate() {
            match source {
                SourceConfig::Folder {
                    path,
                    atlas_project,
                } => {
                    if path.as_os_str().is_empty() {
                        return Err(invalid(format!("source[{n}].path"), "must not be empty"));
                    }
                    sources.push(SourceSpec::Folder {
                        path,
                        atlas_project,
                    });
                }
                SourceConfig::S3 {
                    bucket,
                    prefix,
                    kind,
                    aws,
                    queue_url,
                    queue_wait,
                    reconcile_interval,
                    look_back,
                    atlas_project,
                } => {
                    let field = |name: &str| format!("source[{n}].{name}");
                    let location = S3Location::new(&bucket, prefix.as_deref().unwrap_or(""))
                        .map_err(|(name, message)| invalid(field(name), message))?;
                    let kind = match kind.as_deref().unwrap_or("auto") {
                        "auto" => ExpectedKind::Auto,
                        "cloudtrail" => ExpectedKind::Cloudtrail,
                        "atlas_audit" => ExpectedKind::AtlasAudit,
                        other => {
                            return Err(invalid(
                                field("kind"),
                                format!("{other:?} is not one of auto, cloudtrail, atlas_audit"),
                            ));
                        }
                    };
                    if let Some(url) = &queue_url {
                        check_url(url).map_err(|m| invalid(field("queue_url"), m))?;
                    }
                    let queue_wait = queue_wait.unwrap_or(Duration::from_secs(20));
                    if queue_wait.is_zero() || queue_wait > Duration::from_secs(20) {
                        return Err(invalid(field("queue_wait"), "must be between 1s and 20s"));
                    }
                    let reconcile_interval =
                        reconcile_interval.unwrap_or(Duration::from_secs(15 * 60));
                    if reconcile_interval.is_zero() {
                        return Err(invalid(
                            field("reconcile_interval"),
                            "must be more than zero",
                        ));
                    }
                    sources.push(SourceSpec::S3 {
                        spec: S3Spec {
                            bucket: location.bucket,
                            prefix: location.prefix,
                            expected: kind,
                            aws: aws.validate(&field)?,
                            queue_url,
                            reconcile_interval,
                            look_back: look_back.unwrap_or(Duration::from_secs(3600)),
                            atlas_project,
                            since_micros: None,
                            until_micros: None,
                        },
                        queue_wait,
                    });
                }
                SourceConfig::Cloudwatch {
                    log_groups,
                    aws,
                    overlap,
                    start,
                    max_events,
                    page_size,
                } => {
                    let field = |name: &str| format!("source[{n}].{name}");
                    if log_groups.is_empty() || log_groups.iter().any(|g| g.trim().is_empty()) {
                        return Err(invalid(
                            field("log_groups"),
                            "name at least one log group, none empty",
                        ));
                    }
                    if log_groups.iter().any(|g| g.starts_with("arn:")) {
                        return Err(invalid(
                            field("log_groups"),
                            "give log group names, not ARNs",
                        ));
                    }
                    let max_events = max_events.unwrap_or(10_000);
                    if max_events == 0 {
                        return Err(invalid(field("max_events"), "must be at least 1"));
                    }
                    if page_size.is_some_and(|p| !(1..=10_000).contains(&p)) {
                        return Err(invalid(field("page_size"), "must be between 1 and 10000"));
                    }
                    sources.push(SourceSpec::Cloudwatch(CloudWatchSpec {
                        log_groups,
                        aws: aws.validate(&field)?,
                        overlap: overlap.unwrap_or(Duration::from_secs(300)),
                        initial_look_back: start.unwrap_or(Duration::from_secs(86_400)),
                        max_events,
                        page_size,
                        since_micros: None,
                        until_micros: None,
                    }));
                }
            }
        }
        let query_limits = file.sql.validate()?;
        let max_heap_bytes = file
            .sql
            .max_heap_bytes
            .unwrap_or(query_limits.memory_bytes.saturating_add(1 << 30));
        if max_heap_bytes < query_limits.memory_bytes {
            return Err(invalid(
                "sql.max_heap_bytes",
                "must be at least sql.memory_limit",
            ));
        }
        file.detect
            .build()
            .map_err(|e| invalid(e.field, e.message))?;
        let webhooks = file
            .alerts
            .webhooks(env)
            .map_err(|e| invalid(e.field, e.message))?;
        let give_up_after = file
            .alerts
            .give_up_after
            .unwrap_or(Duration::from_secs(86_400));
        Ok(Config {
            lake,
            state_dir,
            http_listen,
            pg_listen,
            http_token,
            http_token_env: token_env.to_owned(),
            concurrency,
            event_id_retention,
            commit_rows,
            shared_lake: i.shared_lake.unwrap_or(false),
            poll_interval,
            settle: i.settle.unwrap_or(Duration::from_secs(1)),
            limits,
            sources,
            max_heap_bytes,
            query_limits,
            connections,
            tls,
            detect: Arc::new(file.detect),
            webhooks,
            give_up_after,
        })
    }

    /// Replaces the HTTP address (from `--http`), checking the token rule again.
    /// Enables the Postgres protocol on `listen` (from `--pg`), checking the token rule.
    pub fn with_pg_listen(mut self, listen: SocketAddr) -> Result<Self, ConfigError> {
        check_token(
            "http.pg_listen",
            listen,
            self.http_token.as_deref(),
            &self.http_token_env,
        )?;
        self.pg_listen = Some(listen);
        Ok(self)
    }

    pub fn with_http_listen(mut self, listen: SocketAddr) -> Result<Self, ConfigError> {
        check_token(
            "http.listen",
            listen,
            self.http_token.as_deref(),
            &self.http_token_env,
        )?;
        self.http_listen = listen;
        Ok(self)
    }
}

impl HttpConfig {
    /// The connection limits and TLS files, checked (the files are read once here).
    fn connections(&self) -> Result<(ConnectionLimits, Option<TlsFiles>), ConfigError> {
        let d = ConnectionLimits::default();
        let limits = ConnectionLimits {
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            header_timeout: self.header_timeout.unwrap_or(d.header_timeout),
            idle_timeout: self.idle_timeout.unwrap_or(d.idle_timeout),
        };
        if limits.max_connections == 0 {
            return Err(invalid("http.max_connections", "must be at least 1"));
        }
        if limits.header_timeout.is_zero() {
            return Err(invalid("http.header_timeout", "must be more than zero"));
        }
        if limits.idle_timeout.is_zero() {
            return Err(invalid("http.idle_timeout", "must be more than zero"));
        }
        let tls = match (&self.tls_certificate, &self.tls_key) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "http.tls_key",
                    "is needed with http.tls_certificate",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "http.tls_certificate",
                    "is needed with http.tls_key",
                ));
            }
            (Some(certificate), Some(key)) => {
                let files = TlsFiles {
                    certificate: certificate.clone(),
                    key: key.clone(),
                };
                files.acceptor(&[]).map_err(|e| {
                    let field = match e {
                        auditlake_query::listen::TlsError::Key { .. } => "http.tls_key",
                        _ => "http.tls_certificate",
                    };
                    invalid(field, e.to_string())
                })?;
                Some(files)
            }
        };
        Ok((limits, tls))
    }
}

impl SqlConfig {
    fn validate(&self) -> Result<QueryLimits, ConfigError> {
        let d = QueryLimits::default();
        let limits = QueryLimits {
            timeout: self.timeout.unwrap_or(d.timeout),
            memory_bytes: self.memory_limit.unwrap_or(d.memory_bytes),
            max_result_rows: self.max_result_rows.unwrap_or(d.max_result_rows),
            max_result_bytes: self.max_result_bytes.unwrap_or(d.max_result_bytes),
            max_concurrent: self.max_concurrent.unwrap_or(d.max_concurrent),
            max_spill_bytes: self.max_spill_bytes.unwrap_or(d.max_spill_bytes),
            max_function_bytes: self.max_function_bytes.unwrap_or(d.max_function_bytes),
            max_statement_bytes: self.max_statement_bytes.unwrap_or(d.max_statement_bytes),
        };
        if limits.timeout.is_zero() {
            return Err(invalid("sql.timeout", "must be more than zero"));
        }
        if limits.memory_bytes < 1 << 20 {
            return Err(invalid(
                "sql.memory_limit",
                "must be at least 1048576 (1 MiB)",
            ));
        }
        if limits.max_result_rows == 0 {
            return Err(invalid("sql.max_result_rows", "must be at least 1"));
        }
        if limits.max_result_bytes < 1024 {
            return Err(invalid("sql.max_result_bytes", "must be at least 1024"));
        }
        if limits.max_concurrent == 0 {
            return Err(invalid("sql.max_concurrent", "must be at least 1"));
        }
        if limits.max_function_bytes < 1024 {
            return Err(invalid("sql.max_function_bytes", "must be at least 1024"));
        }
        if limits.max_statement_bytes < 1024 {
            return Err(invalid("sql.max_statement_bytes", "must be at least 1024"));
        }
        Ok(limits)
    }
}

impl AwsConfig {
    /// Checks the settings; `field` names a key of the source table.
    fn validate(self, field: &dyn Fn(&str) -> String) -> Result<AwsSettings, ConfigError> {
        if let Some(url) = &self.endpoint_url {
            check_url(url).map_err(|m| invalid(field("endpoint_url"), m))?;
        }
        if let Some(arn) = &self.role_arn
            && !(arn.starts_with("arn:") && arn.contains(":role/"))
        {
            return Err(invalid(
                field("role_arn"),
                format!("{arn:?} is not a role ARN like arn:aws:iam::123456789012:role/reader"),
            ));
        }
        if self.external_id.is_some() && self.role_arn.is_none() {
            return Err(invalid(field("external_id"), "needs role_arn"));
        }
        if self.region.as_deref().is_some_and(str::is_empty) {
            return Err(invalid(field("region"), "must not be empty"));
        }
        let defaults = AwsSettings::new();
        let attempt_timeout = self.request_timeout.unwrap_or(defaults.attempt_timeout);
        if attempt_timeout.is_zero() {
            return Err(invalid(field("request_timeout"), "must be more than zero"));
        }
        let max_attempts = self.max_attempts.unwrap_or(defaults.max_attempts);
        if max_attempts == 0 {
            return Err(invalid(field("max_attempts"), "must be at least 1"));
        }
        Ok(AwsSettings {
            region: self.region,
            endpoint_url: self.endpoint_url,
            role_arn: self.role_arn,
            external_id: self.external_id,
            attempt_timeout,
            max_attempts,
        })
    }
}

fn check_url(url: &str) -> Result<(), String> {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        Ok(u) => Err(format!(
            "{url:?}: scheme {} is not http or https",
            u.scheme()
        )),
        Err(e) => Err(format!("{url:?} is not a URL: {e}")),
    }
}

/// A bucket and a normalised prefix (no leading `/`, a trailing `/` unless empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

impl S3Location {
    /// Checks a bucket name and prefix; errors name `bucket` or `prefix`.
    pub fn new(bucket: &str, prefix: &str) -> Result<Self, (&'static str, String)> {
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid_bucket {
            return Err((
                "bucket",
                format!(
                    "{bucket:?} is not an S3 bucket name (3-63 lowercase letters, digits, '-' or '.')"
                ),
            ));
        }
        let trimmed = prefix.trim_start_matches('/');
        let prefix = if trimmed.is_empty() || trimmed.ends_with('/') {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/")
        };
        Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix,
        })
    }

    /// Parses `s3://bucket[/prefix]`.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{uri:?} does not start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        Self::new(bucket, prefix).map_err(|(_, m)| m)
    }
}

fn check_token(
    field: &str,
    listen: SocketAddr,
    token: Option<&str>,
    token_env: &str,
) -> Result<(), ConfigError> {
    if !listen.ip().is_loopback() && token.is_none() {
        return Err(invalid(
            field,
            format!(
                "{listen} is reachable beyond loopback: set a bearer token in the environment variable {token_env}"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let config =
            Config::from_file(ConfigFile::parse("", "t").expect("parse"), &no_env).expect("valid");
        assert_eq!(config.lake, LakeSpec::Local(PathBuf::from("lake")));
        assert_eq!(config.state_dir, PathBuf::from("lake/_state"));
        assert_eq!(config.http_listen.to_string(), DEFAULT_HTTP);
        assert_eq!(config.poll_interval, Duration::from_secs(5));
        assert!(
            config.sources.is_empty(),
            "a file without sources serves queries only; only the built-in one names the sample"
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = ConfigFile::parse("[ingest]\nconcurency = 3\n", "t").expect_err("unknown key");
        assert!(err.to_string().contains("concurency"), "{err}");
        let err = ConfigFile::parse(
            "[[source]]\ntype = \"folder\"\npath = \"x\"\nbucket = \"y\"\n",
            "t",
        )
        .expect_err("unknown key");
        assert!(err.to_string().contains("bucket"), "{err}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let parse =
            |text: &str| Config::from_file(ConfigFile::parse(text, "t").expect("parse"), &no_env);
        let err = parse("[ingest]\nconcurrency = 0\n").expect_err("zero");
        assert!(err.to_string().starts_with("ingest.concurrency"), "{err}");
        let err = parse("[ingest]\ncommit_rows = 0\n").expect_err("zero");
        assert!(err.to_string().starts_with("ingest.commit_rows"), "{err}");
        let err = parse("[ingest]\nevent_id_retention = \"30m\"\n").expect_err("short");
        assert!(
            err.to_string().starts_with("ingest.event_id_retention"),
            "{err}"
        );
        let retention = |text: &str| parse(text).expect("config").event_id_retention;
        assert_eq!(retention(""), Duration::from_secs(30 * 86_400));
        assert_eq!(
            retention("[ingest]\nevent_id_retention = \"7d\"\n"),
            Duration::from_secs(7 * 86_400)
        );
        let err = parse("[http]\nlisten = \"nope\"\n").expect_err("address");
        assert!(err.to_string().starts_with("http.listen"), "{err}");
        let err =
            ConfigFile::parse("[ingest]\npoll_interval = \"soon\"\n", "t").expect_err("duration");
        assert!(err.to_string().contains("poll_interval"), "{err}");
    }

    #[test]
    fn the_builtin_configuration_is_valid_and_watches_the_sample_role() {
        let config = Config::from_file(ConfigFile::builtin(), &no_env).expect("valid");
        let engine = config.detect.build().expect("rules");
        assert_eq!(
            engine.rule_ids(),
            [
                "unexpected_role_assumer",
                "assume_role_denied",
                "mongodb_drop",
                "mongodb_user_change",
                "mongodb_auth_failures",
                "mongodb_unexpected_network"
            ]
        );
    }

    #[test]
    fn detection_and_webhook_errors_name_their_field() {
        let parse =
            |text: &str| Config::from_file(ConfigFile::parse(text, "t").expect("parse"), &no_env);
        let err = parse("[detect.mongodb_unexpected_network]\nallowed_cidrs = [\"10.0.0.0/33\"]\n")
            .expect_err("cidr");
        assert!(
            err.to_string()
                .starts_with("detect.mongodb_unexpected_network.allowed_cidrs"),
            "{err}"
        );
        let err =
            parse("[[detect.unexpected_role_assumer]]\nroles = [\"arn:aws:iam::1:role/x\"]\n")
                .expect_err("expected");
        assert!(
            err.to_string()
                .starts_with("detect.unexpected_role_assumer[0].expected"),
            "{err}"
        );
        let err = parse("[[alerts.webhook]]\nname = \"pager\"\nurl_env = \"PAGER_URL\"\n")
            .expect_err("url");
        assert!(err.to_string().contains("PAGER_URL"), "{err}");
        let err = ConfigFile::parse("[detect.mongodb_drop]\nenable = false\n", "t")
            .expect_err("unknown key");
        assert!(err.to_string().contains("enable"), "{err}");
    }

    #[test]
    fn a_lake_on_s3_keeps_its_state_locally() {
        let parse =
            |text: &str| Config::from_file(ConfigFile::parse(text, "t").expect("parse"), &no_env);
        let config = parse("lake = \"s3://audit-lake/prod\"\n[lake_aws]\nregion = \"eu-west-1\"\n")
            .expect("valid");
        let LakeSpec::S3 { location, aws } = &config.lake else {
            panic!("s3 lake");
        };
        assert_eq!(
            (location.bucket.as_str(), location.prefix.as_str()),
            ("audit-lake", "prod/")
        );
        assert_eq!(aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.state_dir, PathBuf::from("auditlake-state"));
        let err = parse("lake = \"gs://x/y\"\n").expect_err("scheme");
        assert!(err.to_string().starts_with("lake:"), "{err}");
        let err = parse("lake = \"s3://x/y\"\n").expect_err("bucket");
        assert!(err.to_string().starts_with("lake:"), "{err}");
        let err = parse("[lake_aws]\nrole_arn = \"nope\"\n").expect_err("arn");
        assert!(err.to_string().starts_with("lake_aws.role_arn"), "{err}");
    }

    #[test]
    fn aws_sources_are_validated_by_field() {
        let parse =
            |text: &str| Config::from_file(ConfigFile::parse(text, "t").expect("parse"), &no_env);
        let ok = parse(
            "[[source]]\ntype = \"s3\"\nbucket = \"trail-logs\"\nprefix = \"/org\"\nkind = \"cloudtrail\"\nregion = \"eu-west-1\"\nrole_arn = \"arn:aws:iam::123456789012:role/reader\"\nexternal_id = \"x\"\nqueue_url = \"https://sqs.eu-west-1.amazonaws.com/1/q\"\nrequest_timeout = \"5s\"\n\n[[source]]\ntype = \"cloudwatch\"\nlog_groups = [\"trail\"]\noverlap = \"1m\"\n",
        )
        .expect("valid");
        let SourceSpec::S3 { spec, .. } = &ok.sources[0] else {
            panic!("s3 source");
        };
        assert_eq!(spec.prefix, "org/");
        assert_eq!(spec.expected, ExpectedKind::Cloudtrail);
        assert_eq!(spec.aws.attempt_timeout, Duration::from_secs(5));
        assert!(
            matches!(&ok.sources[1], SourceSpec::Cloudwatch(c) if c.overlap == Duration::from_secs(60))
        );

        let err =
            parse("[[source]]\ntype = \"s3\"\nbucket = \"Bad_Bucket\"\n").expect_err("bucket");
        assert!(err.to_string().starts_with("source[0].bucket"), "{err}");
        let err =
            parse("[[source]]\ntype = \"s3\"\nbucket = \"ok-bucket\"\nrole_arn = \"reader\"\n")
                .expect_err("arn");
        assert!(err.to_string().starts_with("source[0].role_arn"), "{err}");
        let err =
            parse("[[source]]\ntype = \"s3\"\nbucket = \"ok-bucket\"\nqueue_url = \"queue\"\n")
                .expect_err("url");
        assert!(err.to_string().starts_with("source[0].queue_url"), "{err}");
        let err =
            parse("[[source]]\ntype = \"cloudwatch\"\nlog_groups = []\n").expect_err("groups");
        assert!(err.to_string().starts_with("source[0].log_groups"), "{err}");
        let err = parse("[[source]]\ntype = \"s3\"\nbucket = \"ok-bucket\"\nkind = \"vpc\"\n")
            .expect_err("kind");
        assert!(err.to_string().starts_with("source[0].kind"), "{err}");
        let err = ConfigFile::parse(
            "[[source]]\ntype = \"s3\"\nbucket = \"ok-bucket\"\nregoin = \"x\"\n",
            "t",
        )
        .expect_err("unknown");
        assert!(err.to_string().contains("regoin"), "{err}");
    }

    #[test]
    fn beyond_loopback_needs_a_token_from_the_environment() {
        let text = "[http]\nlisten = \"0.0.0.0:7080\"\n";
        let err = Config::from_file(ConfigFile::parse(text, "t").expect("parse"), &no_env)
            .expect_err("token");
        assert!(err.to_string().contains(DEFAULT_TOKEN_ENV), "{err}");
        let env = |name: &str| (name == DEFAULT_TOKEN_ENV).then(|| "s3cret".to_owned());
        let config =
            Config::from_file(ConfigFile::parse(text, "t").expect("parse"), &env).expect("valid");
        assert_eq!(config.http_token.as_deref(), Some("s3cret"));
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn a_postgres_address_beyond_loopback_without_a_token_names_its_own_field() {
        let config = Config::from_file(ConfigFile::default(), &no_env).expect("valid");
        let err = config
            .with_pg_listen("0.0.0.0:7432".parse().expect("addr"))
            .expect_err("token");
        assert!(err.to_string().contains("http.pg_listen"), "{err}");
        let text = "[http]\npg_listen = \"0.0.0.0:7432\"\n";
        let err = Config::from_file(ConfigFile::parse(text, "t").expect("parse"), &no_env)
            .expect_err("token");
        assert!(err.to_string().contains("http.pg_listen"), "{err}");
    }

    #[test]
    fn connection_limits_and_tls_files_are_checked_and_name_their_field() {
        let parse =
            |text: &str| Config::from_file(ConfigFile::parse(text, "t").expect("parse"), &no_env);
        let config = parse("").expect("defaults");
        assert_eq!(config.connections, ConnectionLimits::default());
        assert!(config.tls.is_none());
        for (text, field) in [
            ("[http]\nmax_connections = 0\n", "http.max_connections"),
            ("[http]\nheader_timeout = \"0s\"\n", "http.header_timeout"),
            ("[http]\ntls_certificate = \"cert.pem\"\n", "http.tls_key"),
            ("[http]\ntls_key = \"key.pem\"\n", "http.tls_certificate"),
            (
                "[http]\ntls_certificate = \"/no/such/cert.pem\"\ntls_key = \"/no/such/key.pem\"\n",
                "http.tls_certificate",
            ),
            (
                "[sql]\nmax_statement_bytes = 10\n",
                "sql.max_statement_bytes",
            ),
            ("[sql]\nmax_function_bytes = 10\n", "sql.max_function_bytes"),
            ("[sql]\nmax_heap_bytes = 1024\n", "sql.max_heap_bytes"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.to_string().contains(field), "{text}: {err}");
        }
        let config = parse(
            "[http]\nmax_connections = 3\nidle_timeout = \"7s\"\n[sql]\nmax_spill_bytes = 1024\n",
        )
        .expect("valid");
        assert_eq!(config.connections.max_connections, 3);
        assert_eq!(config.connections.idle_timeout, Duration::from_secs(7));
        assert_eq!(config.query_limits.max_spill_bytes, 1024);
    }
}
