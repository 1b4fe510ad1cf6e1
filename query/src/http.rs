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

use crate::engine::{QueryEngine, QueryError};
use crate::format::{self, Format};

/// Supplies the service's ingest status as JSON, without this crate knowing its shape.
pub trait StatusSource: Send + Sync {
    fn status(&self) -> serde_json::Value;
    /// Metrics in the Prometheus text format, for `GET /metrics`.
    fn metrics(&self) -> String {
        String::new()
    }
}

/// Largest SQL request body.
const MAX_BODY_BYTES: usize = 1 << 20;

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
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(crate::web::routes())
        .merge(api)
        .with_state(state)
}

fn error(status: StatusCode, kind: &str, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(serde_json::json!({"error": message.to_string(), "kind": kind})),
    )
        .into_response()
}

async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.token {
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
    next.run(request).await
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
    let output = match state.engine.query(&text).await {
        Ok(o) => o,
        Err(e) => {
            let status = match &e {
                QueryError::Rejected(_) => StatusCode::BAD_REQUEST,
                QueryError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
                QueryError::Memory { .. } | QueryError::ResultTooLarge { .. } => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                QueryError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
                QueryError::Execution(_) | QueryError::Open { .. } => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            if status.is_server_error() {
                tracing::warn!(error = %e, "query failed");
            }
            return error(status, e.kind(), e);
        }
    };
    match format::encode(&output, format) {
        Ok(bytes) => ([(header::CONTENT_TYPE, format.content_type())], bytes).into_response(),
        Err(e) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "encoding",
            format!("cannot encode the result as requested: {e}"),
        ),
    }
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
