//! The HTTP API: `POST /v1/sql`, `GET /v1/tables`, `GET /v1/status`, `GET /metrics`,
//! `GET /healthz`, and the built-in page at `/` ([`crate::web`]).
//!
//! Every route but `/healthz` wants `Authorization: Bearer <token>` when the service has a
//! token; the service refuses to bind beyond loopback without one. Errors are JSON
//! `{"error": "...", "kind": "..."}` with a 4xx status for the caller's mistakes and 5xx for ours.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use futures::StreamExt;

use crate::engine::{QueryEngine, QueryError, QueryLimits};
use crate::format::{self, Encoder, Format};
use crate::run::QueryStream;

/// Supplies the service's ingest status as JSON, without this crate knowing its shape.
pub trait StatusSource: Send + Sync {
    fn status(&self) -> serde_json::Value;
    /// Metrics in the Prometheus text format, for `GET /metrics`.
    fn metrics(&self) -> String {
        String::new()
    }
}

/// What the routes share.
#[derive(Clone)]
pub struct ApiState {
    pub engine: QueryEngine,
    pub status: Arc<dyn StatusSource>,
    /// Bearer token every request but `/healthz` must carry; `None` on loopback-only setups.
    pub token: Option<Arc<str>>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("engine", &self.engine)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// The API routes.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/v1/sql", post(sql))
        .route("/v1/tables", get(tables))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.engine.limits().max_statement_bytes,
        ))
        .layer(middleware::map_response(close_after_refused_body));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(crate::web::routes())
        .merge(api)
        .with_state(state)
}

/// A body refused as too large is left unread on the connection, which the server then drops:
/// the answer says `Connection: close`, so that a client does not send its next request down a
/// connection that is about to close (it would see the connection end with no answer).
async fn close_after_refused_body(mut response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

fn error(status: StatusCode, kind: &str, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(serde_json::json!({"error": message.to_string(), "kind": kind})),
    )
        .into_response()
}

async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    match &state.token {
        Some(expected) => {
            let presented = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            let ok = presented.is_some_and(|p| constant_time_eq(p.as_bytes(), expected.as_bytes()));
            if !ok {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "missing or wrong bearer token",
                );
            }
        }
        None => {
            if let Err(message) = loopback_request(request.headers()) {
                return error(StatusCode::FORBIDDEN, "forbidden_host", message);
            }
        }
    }
    next.run(request).await
}

/// Without a token the API answers only requests addressed to a loopback name (`Host`) and, when
/// a browser says where it comes from, sent by a loopback page (`Origin`): a page of another
/// site whose name was made to resolve to 127.0.0.1 (DNS rebinding) then reads nothing.
pub fn loopback_request(headers: &HeaderMap) -> Result<(), String> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or("a request without a token must name a loopback Host")?;
    if !loopback_authority(host) {
        return Err(format!(
            "Host {host:?} is not a loopback name: without a token only localhost, 127.0.0.1 and [::1] are served"
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if !authority.is_some_and(loopback_authority) {
            return Err(format!(
                "Origin {origin:?} is not a loopback page: without a token only pages on localhost, 127.0.0.1 and [::1] are served"
            ));
        }
    }
    Ok(())
}

/// Whether `host[:port]` names this machine's loopback interface.
fn loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((host, port)) if port.is_empty() || port.starts_with(':') => host,
            _ => return false,
        },
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    let host = host.to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Compares without an early exit, so response time does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Deserialize)]
struct SqlParams {
    format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlBody {
    sql: String,
}

/// The SQL text of a request: a JSON `{"sql": "..."}` body, or the body itself as plain text.
fn sql_text(headers: &HeaderMap, body: &Bytes) -> Result<String, String> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        serde_json::from_slice::<SqlBody>(body)
            .map(|b| b.sql)
            .map_err(|e| format!("body must be {{\"sql\": \"...\"}}: {e}"))
    } else {
        String::from_utf8(body.to_vec()).map_err(|_| "body is not UTF-8 text".to_owned())
    }
}

/// Encoded bytes held before the status line is sent: a result that ends (or fails, or passes
/// the cap) within them gets its exact status; a larger one streams, and one that fails after
/// that ends the connection without the body's end, so no client takes it for whole.
const HOLD_BYTES: usize = 1 << 20;

fn query_error(e: QueryError) -> Response {
    let status = match &e {
        QueryError::Rejected(_) => StatusCode::BAD_REQUEST,
        QueryError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
        QueryError::Memory { .. } | QueryError::ResultTooLarge { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        QueryError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
        QueryError::Execution(_) | QueryError::Open { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::warn!(error = %e, "query failed");
    }
    error(status, e.kind(), e)
}

fn encoding_error(e: arrow::error::ArrowError) -> Response {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "encoding",
        format!("cannot encode the result as requested: {e}"),
    )
}

/// A result being encoded for one response, counted against the cap.
struct Encoding {
    stream: QueryStream,
    encoder: Encoder,
    limits: QueryLimits,
    rows: Option<arrow::record_batch::RecordBatch>,
    offset: usize,
    done: bool,
}

impl Encoding {
    /// The next piece of the body; `Ok(None)` at its end.
    async fn next(&mut self) -> Result<Option<Vec<u8>>, Response> {
        if self.done {
            return Ok(None);
        }
        let out = loop {
            if let Some(batch) = &self.rows {
                if self.offset < batch.num_rows() {
                    let len = format::SLICE_ROWS.min(batch.num_rows() - self.offset);
                    let slice = batch.slice(self.offset, len);
                    self.offset += len;
                    break self.encoder.rows(&slice).map_err(encoding_error)?;
                }
                self.rows = None;
            }
            match self.stream.next().await {
                Some(Ok(batch)) => {
                    self.rows = Some(batch);
                    self.offset = 0;
                }
                Some(Err(e)) => return Err(query_error(e)),
                None => {
                    self.done = true;
                    break self.encoder.finish().map_err(encoding_error)?;
                }
            }
        };
        if self.encoder.bytes() > self.limits.max_result_bytes {
            return Err(query_error(QueryError::ResultTooLarge {
                max_rows: self.limits.max_result_rows,
                max_bytes: self.limits.max_result_bytes,
            }));
        }
        Ok(Some(out))
    }
}

async fn sql(
    State(state): State<ApiState>,
    Query(params): Query<SqlParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let format = match params.format.as_deref() {
        None => Format::Json,
        Some(name) => match Format::parse(name).filter(|f| *f != Format::Table) {
            Some(f) => f,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("unknown format {name:?}: use json, ndjson, csv or arrow"),
                );
            }
        },
    };
    let text = match sql_text(&headers, &body) {
        Ok(t) => t,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_request", message),
    };
    if text.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "bad_request", "empty SQL");
    }
    // Dropping this handler (the client went away) drops the stream, which stops the query.
    let stream = match state.engine.execute(&text).await {
        Ok(stream) => stream,
        Err(e) => return query_error(e),
    };
    let mut encoder = Encoder::new(format, stream.schema());
    let mut held = match encoder.begin() {
        Ok(bytes) => bytes,
        Err(e) => return encoding_error(e),
    };
    let mut encoding = Encoding {
        stream,
        encoder,
        limits: state.engine.limits(),
        rows: None,
        offset: 0,
        done: false,
    };
    while held.len() < HOLD_BYTES {
        match encoding.next().await {
            Ok(Some(bytes)) => held.extend(bytes),
            Ok(None) => {
                return ([(header::CONTENT_TYPE, format.content_type())], held).into_response();
            }
            Err(response) => return response,
        }
    }
    let first = futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(held)) });
    let rest = futures::stream::unfold(encoding, |mut encoding| async move {
        match encoding.next().await {
            Ok(Some(bytes)) => Some((Ok(Bytes::from(bytes)), encoding)),
            Ok(None) => None,
            Err(response) => {
                tracing::debug!(status = %response.status(), "a streamed result ended early");
                encoding.done = true;
                Some((
                    Err(std::io::Error::other(
                        "the result failed or passed the cap after it began",
                    )),
                    encoding,
                ))
            }
        }
    });
    (
        [(header::CONTENT_TYPE, format.content_type())],
        axum::body::Body::from_stream(first.chain(rest)),
    )
        .into_response()
}

async fn tables(State(state): State<ApiState>) -> Response {
    Json(serde_json::json!({"tables": state.engine.tables().await})).into_response()
}

async fn status(State(state): State<ApiState>) -> Response {
    Json(state.status.status()).into_response()
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let status = state.status.clone();
    match tokio::task::spawn_blocking(move || status.metrics()).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("header"));
        }
        map
    }

    #[test]
    fn only_loopback_hosts_and_origins_are_served_without_a_token() {
        for host in [
            "localhost",
            "localhost:7080",
            "127.0.0.1:7080",
            "127.3.2.1",
            "[::1]:7080",
            "LOCALHOST.",
        ] {
            assert_eq!(
                loopback_request(&headers(&[("host", host)])),
                Ok(()),
                "{host}"
            );
        }
        for host in [
            "evil.example:7080",
            "127.0.0.1.evil.example",
            "10.0.0.1",
            "[::2]:80",
            "localhost.evil.example",
            "[::1]x",
        ] {
            assert!(
                loopback_request(&headers(&[("host", host)])).is_err(),
                "{host}"
            );
        }
        assert!(loopback_request(&HeaderMap::new()).is_err(), "no Host");
        assert_eq!(
            loopback_request(&headers(&[
                ("host", "127.0.0.1:7080"),
                ("origin", "http://localhost:7080")
            ])),
            Ok(())
        );
        for origin in [
            "http://evil.example",
            "null",
            "http://127.0.0.1.evil.example:7080",
        ] {
            assert!(
                loopback_request(&headers(&[("host", "127.0.0.1:7080"), ("origin", origin)]))
                    .is_err(),
                "{origin}"
            );
        }
    }
}
