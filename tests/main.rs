//! The integration tests: one binary, so DataFusion and the AWS SDKs are linked once rather than
//! once per file (as ripgrep and datafusion-cli do). Each module is one surface; run one with
//! `cargo test --test integration <module>::` (e.g. `aws::`), with the servers of
//! `tests/servers.sh` up where it needs them.

mod common;

mod access;
mod attack;
mod aws;
mod cli;
mod corpora;
mod crash;
mod decode_fuzz;
mod detect;
mod e2e;
mod faults;
mod pg;
mod sql_api;
mod web;
