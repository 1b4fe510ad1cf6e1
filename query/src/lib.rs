//! SQL over the auditlake lake.
//!
//! [`engine::QueryEngine`] registers every lake table in a DataFusion session from the schemas
//! of the schema crate (no inference) with the Hive partition columns `date` and `hour` (local
//! files read by [`local_reads`]; [`functions`] replaces `date_trunc` with one that truncates the
//! lake's UTC times without time-zone conversion). Every caller's statement flows: the read-only
//! [`gate`] (statement, then plan) → a slot and the query threads ([`run`]), within the time
//! limit, the memory pool and [`bounded`] functions → batches streamed to the surface, which
//! encodes them ([`format`], Postgres rows in [`pg`]) against the result cap.
//! [`http::router`] exposes it over HTTP (`POST /v1/sql`, `GET /v1/tables`, `GET /v1/status`,
//! `GET /metrics`, `GET /healthz`, the page at `/` from [`web`]) and [`pg`] over the Postgres
//! protocol; [`listen`] accepts their connections within a cap and time limits, with TLS when
//! configured. This crate knows nothing of sources or AWS: the service hands it a status callback
//! and a lake root (a folder, or an object store it has built with its own credentials).

pub mod access;
mod bounded;
pub mod engine;
pub mod format;
pub mod functions;
pub mod gate;
pub mod http;
mod key_expiry;
pub mod listen;
pub mod live;
mod local_reads;
pub mod pg;
mod run;
pub mod trust;
pub mod views;
pub mod web;

pub use auditlake_schema::LakeRoot;
pub use engine::{QueryEngine, QueryError, QueryLimits};
pub use run::QueryStream;
