//! Detection over the stream of decoded batches, and alert delivery.
//!
//! Flow: the pipeline hands every batch it persists to the [`engine::Engine`], which runs the
//! configured [`rule::Rule`]s and turns their findings into de-duplicated [`alert::Alert`]s.
//! Alerts go to the `alerts` lake table and, in the same ledger transaction that commits their
//! source object, to the durable [`outbox`]; the [`deliver`] task posts them to webhooks with
//! retries until each sink has taken each alert. `auditlake detect replay` runs the same engine
//! over rows read back from the lake.

pub mod alert;
pub mod config;
pub mod deliver;
pub mod engine;
pub mod outbox;
pub mod pattern;
pub mod rows;
pub mod rule;
pub mod store;

pub use alert::{Alert, Severity};
pub use engine::Engine;
