//! The hand-off to detection: the rule engine sees each object's rows as it joins a commit
//! group ([`super::group`]), and its state and alerts are committed with the group.

use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;
use auditlake_detect::deliver::Webhook;
use auditlake_detect::engine::EngineState;
use auditlake_detect::{Alert, Engine, outbox};
use tokio::sync::Notify;

/// The rule engine and where its alerts go; shared by the objects in flight.
#[derive(Debug, Clone)]
pub struct Detection {
    pub engine: Arc<Mutex<Engine>>,
    pub webhooks: Arc<Vec<Webhook>>,
    /// Woken when alerts are queued.
    pub wake: Arc<Notify>,
}

impl Detection {
    pub(super) fn observe(&self, table: &str, batch: &RecordBatch, now_micros: i64) -> Vec<Alert> {
        let mut engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        engine.observe(table, batch, now_micros)
    }

    /// The engine state now.
    pub(super) fn save(&self) -> EngineState {
        self.engine.lock().unwrap_or_else(|p| p.into_inner()).save()
    }

    /// Saves `state` (the engine's after a group's last object) and queues `alerts`, inside
    /// the ledger transaction `tx`.
    pub(super) fn persist(
        &self,
        tx: &redb::WriteTransaction,
        state: &EngineState,
        alerts: &[Alert],
        now_micros: i64,
    ) -> Result<(), redb::Error> {
        outbox::save_state(tx, state)?;
        let sinks_for = |a: &Alert| {
            self.webhooks
                .iter()
                .filter(|w| w.takes(a))
                .map(|w| w.name.clone())
                .collect()
        };
        outbox::enqueue(tx, alerts, &sinks_for, now_micros)?;
        Ok(())
    }
}
