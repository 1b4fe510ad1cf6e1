//! Detection over the stream of decoded batches.
//!
//! The pipeline hands every batch it persists to a [`Detector`]; detectors return the alerts the
//! batch raises. Rules, alert delivery and replay build on this contract.

use arrow::record_batch::RecordBatch;

/// How urgent an alert is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// One alert raised by a rule.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alert {
    /// Stable rule id, as used in the config.
    pub rule_id: String,
    pub severity: Severity,
    /// Event time of the evidence, microseconds since the epoch.
    pub event_time_micros: i64,
    /// One line a human can act on.
    pub summary: String,
    /// Event ids of the evidence.
    pub evidence_event_ids: Vec<String>,
}

/// A detection rule over batches of one lake table.
///
/// Contract: `observe` sees each persisted batch exactly once, in the order the pipeline commits
/// them, with the table name of the schema crate; it must not block on I/O.
pub trait Detector: Send {
    /// The rule id.
    fn id(&self) -> &str;
    /// Alerts raised by `batch` of `table`.
    fn observe(&mut self, table: &str, batch: &RecordBatch) -> Vec<Alert>;
}
