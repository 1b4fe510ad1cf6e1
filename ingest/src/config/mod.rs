//! The service configuration: a TOML file read once, validated once.
//!
//! [`ConfigFile`] mirrors the file (unknown keys are errors that name the key);
//! [`Config::from_file`] checks it and resolves defaults and secrets into a [`Config`] that the
//! rest of the program trusts. Each table validates itself: `[ingest]` here, `[http]` and `[sql]`
//! in [`server`], each `[[source]]` kind in [`sources`], the lake in [`lake`]; every default is a
//! constant of [`defaults`]. Secrets come only from the environment, through the `env` function
//! given to it, never from the file.

mod access;
pub mod defaults;
mod lake;
mod server;
mod sources;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use auditlake_detect::Engine;
use auditlake_detect::config::DetectConfig;
use auditlake_detect::deliver::{AlertsConfig, Webhook};
use auditlake_query::QueryLimits;
use auditlake_query::access::AccessSettings;
use auditlake_query::listen::{ConnectionLimits, TlsFiles};

use crate::aws::AwsSettings;
use crate::decode::DecodeLimits;

pub use access::AccessConfig;
pub use lake::{LakeSpec, S3Location};
pub use server::{HttpConfig, SqlConfig};
pub use sources::{
    AwsConfig, CloudwatchSourceConfig, FieldName, FolderSourceConfig, S3SourceConfig, SourceConfig,
    SourceSpec,
};

/// The configuration used when none is given: the bundled sample day and its rules.
pub const DEFAULT_CONFIG: &str = include_str!("../default.toml");

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
    /// The access chain (`[access]`).
    #[serde(default)]
    pub access: AccessConfig,
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

/// `[ingest]`, as validated.
struct Ingest {
    concurrency: usize,
    commit_rows: usize,
    event_id_retention: Duration,
    shared_lake: bool,
    poll_interval: Duration,
    settle: Duration,
    limits: DecodeLimitsConfig,
}

impl IngestConfig {
    /// Checks `[ingest]`; errors name `ingest.<key>`.
    fn validate(&self) -> Result<Ingest, ConfigError> {
        let concurrency = match self.concurrency {
            Some(0) => return Err(invalid("ingest.concurrency", "must be at least 1")),
            Some(n) => n,
            None => defaults::concurrency(),
        };
        let commit_rows = match self.commit_rows {
            Some(0) => return Err(invalid("ingest.commit_rows", "must be at least 1")),
            Some(n) => n,
            None => defaults::COMMIT_ROWS,
        };
        let event_id_retention = self
            .event_id_retention
            .unwrap_or(defaults::EVENT_ID_RETENTION);
        if event_id_retention < defaults::MIN_EVENT_ID_RETENTION {
            return Err(invalid("ingest.event_id_retention", "must be at least 1h"));
        }
        let poll_interval = self.poll_interval.unwrap_or(defaults::POLL_INTERVAL);
        if poll_interval.is_zero() {
            return Err(invalid("ingest.poll_interval", "must be more than zero"));
        }
        let decode = DecodeLimits::default();
        let limits = DecodeLimitsConfig {
            max_record_bytes: self.max_record_bytes.unwrap_or(decode.max_line_bytes),
            max_object_bytes: self.max_object_bytes.unwrap_or(decode.max_object_bytes),
        };
        if limits.max_record_bytes < defaults::MIN_RECORD_BYTES {
            return Err(invalid("ingest.max_record_bytes", "must be at least 1024"));
        }
        if limits.max_object_bytes < limits.max_record_bytes {
            return Err(invalid(
                "ingest.max_object_bytes",
                "must be at least ingest.max_record_bytes",
            ));
        }
        Ok(Ingest {
            concurrency,
            commit_rows,
            event_id_retention,
            shared_lake: self.shared_lake.unwrap_or(false),
            poll_interval,
            settle: self.settle.unwrap_or(defaults::SETTLE),
            limits,
        })
    }
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
    /// How the access chain links logins to assumptions, and the roles it watches.
    pub access: AccessSettings,
    /// Heap of the process above which running queries are stopped.
    pub max_heap_bytes: usize,
    /// Limits on the connections of the HTTP and Postgres servers.
    pub connections: ConnectionLimits,
    /// Certificate and key when the servers speak TLS.
    pub tls: Option<TlsFiles>,
    /// The detection rules, built once from `[detect]`; each run starts from a clone.
    pub rules: Engine,
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
        file: ConfigFile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let lake_aws = match file.lake_aws {
            Some(aws) => aws.validate(&|name| format!("lake_aws.{name}"))?,
            None => AwsSettings::new(),
        };
        let lake = LakeSpec::parse(file.lake.as_deref().unwrap_or(defaults::LAKE), lake_aws)
            .map_err(|m| invalid("lake", m))?;
        let state_dir = file.state_dir.unwrap_or_else(|| lake.default_state_dir());
        let servers = file.http.validate(env)?;
        let ingest = file.ingest.validate()?;
        let sources = file
            .sources
            .into_iter()
            .enumerate()
            .map(|(n, source)| source.validate(n))
            .collect::<Result<Vec<_>, _>>()?;
        let queries = file.sql.validate()?;
        let access = file.access.validate(&file.detect)?;
        let watch = auditlake_detect::config::AccessWatch {
            roles: file.access.roles.clone(),
            link_window: access.link_window,
        };
        let rules = file
            .detect
            .build_watching(&watch)
            .map_err(|e| invalid(e.field, e.message))?;
        let webhooks = file
            .alerts
            .webhooks(env)
            .map_err(|e| invalid(e.field, e.message))?;
        Ok(Config {
            lake,
            state_dir,
            http_listen: servers.http_listen,
            pg_listen: servers.pg_listen,
            http_token: servers.http_token,
            http_token_env: servers.http_token_env,
            concurrency: ingest.concurrency,
            event_id_retention: ingest.event_id_retention,
            commit_rows: ingest.commit_rows,
            shared_lake: ingest.shared_lake,
            poll_interval: ingest.poll_interval,
            settle: ingest.settle,
            limits: ingest.limits,
            sources,
            query_limits: queries.limits,
            access,
            max_heap_bytes: queries.max_heap_bytes,
            connections: servers.connections,
            tls: servers.tls,
            rules,
            webhooks,
            give_up_after: file.alerts.give_up_after.unwrap_or(defaults::GIVE_UP_AFTER),
        })
    }

    /// Enables the Postgres protocol on `listen` (from `--pg`), checking the token rule.
    pub fn with_pg_listen(mut self, listen: SocketAddr) -> Result<Self, ConfigError> {
        server::check_token(
            "http.pg_listen",
            listen,
            self.http_token.as_deref(),
            &self.http_token_env,
        )?;
        self.pg_listen = Some(listen);
        Ok(self)
    }

    /// Replaces the HTTP address (from `--http`), checking the token rule again.
    pub fn with_http_listen(mut self, listen: SocketAddr) -> Result<Self, ConfigError> {
        server::check_token(
            "http.listen",
            listen,
            self.http_token.as_deref(),
            &self.http_token_env,
        )?;
        self.http_listen = listen;
        Ok(self)
    }
}

#[cfg(test)]
mod tests;
