//! auditlake ingest: sources, decoders, the Parquet lake writer, the ledger and the service.
//!
//! Data flow: a [`source::LogSource`] lists objects → [`pipeline::Pipeline`] keeps those the
//! [`ledger::Ledger`] has not recorded → [`decode`] turns bytes into Arrow batches (bad input
//! into `rejected` rows) → [`lake::writer::LakeWriter`] writes partitioned Parquet files,
//! durably → the ledger commits the object. [`service::Service`] runs that loop next to the
//! HTTP API of `auditlake-query`; [`cli`] is the command line.

pub mod aws;
pub mod cli;
pub mod config;
pub mod decode;
pub mod deliveries;
pub mod lake;
pub mod ledger;
pub mod metrics;
pub mod pipeline;
pub mod replay;
pub mod sample;
pub mod service;
pub mod shared;
pub mod source;
