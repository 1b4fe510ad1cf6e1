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

use crate::decode::DecodeLimits;

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
    /// Lake root folder. Default `./lake`.
    pub lake: Option<PathBuf>,
    /// Folder for the ledger and other state. Default `<lake>/_state`.
    pub state_dir: Option<PathBuf>,
    /// The HTTP API.
    #[serde(default)]
    pub http: HttpConfig,
    /// How ingestion runs.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Where logs come from (`[[source]]` tables). Default: the folder `./sample-data`.
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
}

/// `[ingest]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Objects processed at once. Default: the number of cores.
    pub concurrency: Option<usize>,
    /// Time between scans of each source. Default `5s`.
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
    /// How long a file must be unmodified before it is read. Default `1s`.
    #[serde(default, with = "humantime_serde")]
    pub settle: Option<Duration>,
    /// Largest record (one line) in bytes; longer ones are rejected. Default 4 MiB.
    pub max_record_bytes: Option<usize>,
    /// Largest object after decompression, in bytes. Default 1 GiB.
    pub max_object_bytes: Option<usize>,
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
}

/// The validated configuration.
#[derive(Clone)]
pub struct Config {
    pub lake: PathBuf,
    pub state_dir: PathBuf,
    pub http_listen: SocketAddr,
    /// Bearer token for the API, from the environment; required beyond loopback.
    pub http_token: Option<String>,
    /// The environment variable the token is read from, for messages.
    pub http_token_env: String,
    pub concurrency: usize,
    pub poll_interval: Duration,
    pub settle: Duration,
    pub limits: DecodeLimitsConfig,
    pub sources: Vec<SourceSpec>,
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
        let lake = file.lake.unwrap_or_else(|| PathBuf::from("lake"));
        if lake.as_os_str().is_empty() {
            return Err(invalid("lake", "must not be empty"));
        }
        let state_dir = file.state_dir.unwrap_or_else(|| lake.join("_state"));

        let listen_text = file.http.listen.as_deref().unwrap_or(DEFAULT_HTTP);
        let http_listen: SocketAddr = listen_text.parse().map_err(|e| {
            invalid(
                "http.listen",
                format!("{listen_text:?} is not an address like 127.0.0.1:7080: {e}"),
            )
        })?;
        let token_env = file.http.token_env.as_deref().unwrap_or(DEFAULT_TOKEN_ENV);
        let http_token = env(token_env).filter(|t| !t.is_empty());
        check_token(http_listen, http_token.as_deref(), token_env)?;

        let i = std::mem::take(&mut file.ingest);
        let concurrency = match i.concurrency {
            Some(0) => return Err(invalid("ingest.concurrency", "must be at least 1")),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(2, usize::from),
        };
        let poll_interval = i.poll_interval.unwrap_or(Duration::from_secs(5));
        if poll_interval.is_zero() {
            return Err(invalid("ingest.poll_interval", "must be more than zero"));
        }
        let limits = DecodeLimitsConfig {
            max_record_bytes: i.max_record_bytes.unwrap_or(4 << 20),
            max_object_bytes: i.max_object_bytes.unwrap_or(1 << 30),
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
            }
        }
        if sources.is_empty() {
            sources.push(SourceSpec::Folder {
                path: PathBuf::from("sample-data"),
                atlas_project: None,
            });
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
            http_token,
            http_token_env: token_env.to_owned(),
            concurrency,
            poll_interval,
            settle: i.settle.unwrap_or(Duration::from_secs(1)),
            limits,
            sources,
            detect: Arc::new(file.detect),
            webhooks,
            give_up_after,
        })
    }

    /// Replaces the HTTP address (from `--http`), checking the token rule again.
    pub fn with_http_listen(mut self, listen: SocketAddr) -> Result<Self, ConfigError> {
        check_token(listen, self.http_token.as_deref(), &self.http_token_env)?;
        self.http_listen = listen;
        Ok(self)
    }
}

fn check_token(
    listen: SocketAddr,
    token: Option<&str>,
    token_env: &str,
) -> Result<(), ConfigError> {
    if !listen.ip().is_loopback() && token.is_none() {
        return Err(invalid(
            "http.listen",
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
        assert_eq!(config.lake, PathBuf::from("lake"));
        assert_eq!(config.state_dir, PathBuf::from("lake/_state"));
        assert_eq!(config.http_listen.to_string(), DEFAULT_HTTP);
        assert_eq!(config.poll_interval, Duration::from_secs(5));
        assert_eq!(config.sources.len(), 1);
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
}
