//! SQL over the auditlake lake.
//!
//! [`engine::QueryEngine`] registers every lake table in a DataFusion session from the schemas
//! of the schema crate (no inference) with the Hive partition columns `date` and `hour`, and runs
//! read-only statements (local files read by [`local_reads`]; [`functions`] replaces `date_trunc` with one that truncates the lake's
//! UTC times without time-zone conversion). [`http::router`] exposes it over HTTP: `POST /v1/sql`,
//! `GET /v1/tables`, `GET /v1/status`, `GET /metrics`, `GET /healthz`, and a built-in page at
//! `/` ([`web`]). This crate knows nothing
//! of sources or AWS: the service hands it a status callback and a lake root (a folder, or an
//! object store it has built with its own credentials).

pub mod engine;
pub mod format;
pub mod functions;
pub mod http;
pub mod live;
mod local_reads;
pub mod pg;
pub mod views;
pub mod web;

pub use engine::{LakeRoot, QueryEngine, QueryError, QueryLimits};
