//! `[http]` and `[sql]`: the listeners, their token and connection limits, and the limits of
//! each query.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use auditlake_query::QueryLimits;
use auditlake_query::listen::{ConnectionLimits, TlsFiles};

use super::{ConfigError, defaults, invalid};

/// The servers, as validated, for [`super::Config`] (which redacts the token).
pub(super) struct Servers {
    pub(super) http_listen: SocketAddr,
    pub(super) pg_listen: Option<SocketAddr>,
    pub(super) http_token: Option<String>,
    pub(super) http_token_env: String,
    pub(super) connections: ConnectionLimits,
    pub(super) tls: Option<TlsFiles>,
}

/// The query limits, as validated, for [`super::Config`].
pub(super) struct Queries {
    pub(super) limits: QueryLimits,
    pub(super) max_heap_bytes: usize,
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

impl HttpConfig {
    /// The listeners, token, connection limits and TLS files, checked; errors name
    /// `http.<key>`. `env` looks up the token's environment variable.
    pub(super) fn validate(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Servers, ConfigError> {
        let listen_text = self.listen.as_deref().unwrap_or(defaults::HTTP_LISTEN);
        let http_listen: SocketAddr = listen_text.parse().map_err(|e| {
            invalid(
                "http.listen",
                format!("{listen_text:?} is not an address like 127.0.0.1:7080: {e}"),
            )
        })?;
        let token_env = self.token_env.as_deref().unwrap_or(defaults::TOKEN_ENV);
        let http_token = env(token_env).filter(|t| !t.is_empty());
        check_token("http.listen", http_listen, http_token.as_deref(), token_env)?;
        let pg_listen = match self.pg_listen.as_deref() {
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
        let (connections, tls) = self.connections()?;
        Ok(Servers {
            http_listen,
            pg_listen,
            http_token,
            http_token_env: token_env.to_owned(),
            connections,
            tls,
        })
    }

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
    /// The limits of each query and of the heap, checked; errors name `sql.<key>`.
    pub(super) fn validate(&self) -> Result<Queries, ConfigError> {
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
        let max_heap_bytes = self.max_heap_bytes.unwrap_or(
            limits
                .memory_bytes
                .saturating_add(defaults::HEAP_ABOVE_QUERY_MEMORY),
        );
        if max_heap_bytes < limits.memory_bytes {
            return Err(invalid(
                "sql.max_heap_bytes",
                "must be at least sql.memory_limit",
            ));
        }
        Ok(Queries {
            limits,
            max_heap_bytes,
        })
    }
}

/// Refuses an address beyond loopback without a token; the error names `field`.
pub(super) fn check_token(
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
