//! The rules. Each watches one table and turns rows into [`Finding`]s; the engine turns findings
//! into de-duplicated alerts.

pub mod assume_role;
pub mod auth_failures;
pub mod mongodb_change;
pub mod trust_change;
pub mod unattributed;
pub mod unexpected_network;

use arrow::record_batch::RecordBatch;

use crate::alert::Finding;

/// The STS calls that start a role session.
pub const ASSUME_ROLE_EVENTS: [&str; 3] = [
    "AssumeRole",
    "AssumeRoleWithWebIdentity",
    "AssumeRoleWithSAML",
];

/// A detection rule.
///
/// Contract: `observe` is called with every batch of `table()` that the pipeline persists (live)
/// or reads back from the lake (replay), in any order; it appends what it finds. Findings with
/// the same `dedup_key` are one alert, so observing the same rows twice is harmless. State
/// that must survive a restart is returned by `save` and given back to `restore`. A clone of a
/// rule that has observed nothing is a fresh rule: configuration is built once and each run
/// (`serve`, `detect replay`) starts from its own clone.
pub trait Rule: dyn_clone::DynClone + Send + std::fmt::Debug {
    /// Stable id, used in the config, alerts and tests.
    fn id(&self) -> &str;
    /// The lake table this rule watches.
    fn table(&self) -> &'static str;
    /// A second table a rule that joins two sources watches; its batches come through
    /// [`Rule::observe_table`].
    fn also_table(&self) -> Option<&'static str> {
        None
    }
    /// Looks at a batch and appends findings.
    fn observe(&mut self, batch: &RecordBatch, findings: &mut Vec<Finding>);
    /// Looks at a batch of `table` (one of [`Rule::table`] and [`Rule::also_table`]); rules of
    /// one table need not implement it.
    fn observe_table(&mut self, table: &str, batch: &RecordBatch, findings: &mut Vec<Finding>) {
        let _ = table;
        self.observe(batch, findings);
    }
    /// State to persist; `Null` for stateless rules.
    fn save(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Restores what `save` returned.
    fn restore(&mut self, _state: serde_json::Value) {}
}

dyn_clone::clone_trait_object!(Rule);

/// The last path segment of an ARN (`arn:aws:iam::1:user/alice` → `alice`), for summaries.
pub fn short_name(arn: &str) -> &str {
    arn.rsplit(['/', ':']).next().unwrap_or(arn)
}

#[cfg(test)]
mod tests;
