//! auditlake ingest: sources, decoders, the Parquet lake writer, the ledger and the service.
//!
//! Data flow: a [`source::LogSource`] yields objects (a folder or an S3 bucket lists them, an
//! SQS [`source::notify::QueueSource`] names new ones, a [`source::cloudwatch`] read brings
//! log events as one) → [`pipeline::Pipeline`] keeps those the
//! [`ledger::Ledger`] has not recorded → [`decode`] turns bytes into Arrow batches (bad input
//! into `rejected` rows) → [`lake::LakeWriter`] writes partitioned Parquet files,
//! durably → the ledger commits the object. [`service::Service`] runs that loop next to the
//! HTTP API of `auditlake-query`; [`cli`] is the command line. How exactly-once holds across
//! crashes, sources and workers: `EXACTLY_ONCE.md` next to this file.

pub mod allocator;
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
