//! Runs the rules over batches and turns findings into de-duplicated alerts.
//!
//! De-duplication is by `(rule, dedup_key)`, i.e. by alert id. The first source object whose
//! rows raise an alert owns it; a later finding with the same id from another object is dropped,
//! while the owner raising it again (a redo after a crash) gets it again, so a redo writes the
//! same alert rows and enqueues the same deliveries. Ownership and rule state are saved with each
//! ledger commit ([`Engine::save`]) and restored at start-up.

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::alert::{Alert, alert_id};
use crate::rule::Rule;

/// Alert ownership is forgotten this long (event time) after the alert's event.
const CLAIM_RETENTION_MICROS: i64 = 30 * 86_400_000_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claim {
    owner: String,
    event_time_micros: i64,
}

/// Persisted engine state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct EngineState {
    claims: BTreeMap<String, Claim>,
    rules: BTreeMap<String, serde_json::Value>,
}

/// The rule engine; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    rules: Vec<Box<dyn Rule>>,
    claims: BTreeMap<String, Claim>,
    latest_event_micros: i64,
}

impl Engine {
    pub fn new(rules: Vec<Box<dyn Rule>>) -> Self {
        Engine {
            rules,
            claims: BTreeMap::new(),
            latest_event_micros: 0,
        }
    }

    /// Ids of the enabled rules.
    pub fn rule_ids(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.id()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Alerts raised by `batch` of `table`, at `now_micros`.
    pub fn observe(&mut self, table: &str, batch: &RecordBatch, now_micros: i64) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let mut findings = Vec::new();
        // Within one call the same alert is raised once, whoever owns it.
        let mut raised = std::collections::HashSet::new();
        for rule in self
            .rules
            .iter_mut()
            .filter(|r| r.table() == table || r.also_table() == Some(table))
        {
            findings.clear();
            rule.observe_table(table, batch, &mut findings);
            for finding in findings.drain(..) {
                let Some(last) = finding.evidence.last() else {
                    continue;
                };
                let owner = last.source_uri.clone();
                let event_time = finding
                    .evidence
                    .iter()
                    .map(|e| e.event_time_micros)
                    .max()
                    .unwrap_or_default();
                let id = alert_id(rule.id(), &finding.dedup_key);
                let claim = self.claims.entry(id.clone()).or_insert_with(|| Claim {
                    owner: owner.clone(),
                    event_time_micros: event_time,
                });
                if claim.owner != owner || !raised.insert(id.clone()) {
                    continue;
                }
                self.latest_event_micros = self.latest_event_micros.max(event_time);
                alerts.push(Alert {
                    alert_id: id,
                    rule_id: rule.id().to_owned(),
                    severity: finding.severity,
                    event_time_micros: event_time,
                    alert_time_micros: now_micros,
                    entity: finding.entity,
                    summary: finding.summary,
                    dedup_key: finding.dedup_key,
                    evidence: finding.evidence,
                });
            }
        }
        alerts
    }

    /// The state to persist.
    pub fn save(&mut self) -> EngineState {
        let horizon = self.latest_event_micros - CLAIM_RETENTION_MICROS;
        self.claims.retain(|_, c| c.event_time_micros >= horizon);
        EngineState {
            claims: self.claims.clone(),
            rules: self
                .rules
                .iter()
                .map(|r| (r.id().to_owned(), r.save()))
                .collect(),
        }
    }

    /// Takes back the observations of the objects `owners` (a commit group that failed, to be
    /// redone) made since `before` was saved: rule state returns to `before`, and so does the
    /// ownership of alerts those objects raised since. Alerts other objects raised since stay
    /// theirs: their groups may have committed them meanwhile, and a later object raising one
    /// again must not store it twice.
    pub fn abandon(&mut self, before: EngineState, owners: &std::collections::HashSet<&str>) {
        let mut since = std::mem::take(&mut self.claims);
        since.retain(|id, claim| {
            !owners.contains(claim.owner.as_str()) || before.claims.contains_key(id)
        });
        self.restore(before);
        for (id, claim) in since {
            self.latest_event_micros = self.latest_event_micros.max(claim.event_time_micros);
            self.claims.entry(id).or_insert(claim);
        }
    }

    /// Restores saved state; state of rules no longer configured is dropped.
    pub fn restore(&mut self, mut state: EngineState) {
        self.latest_event_micros = state
            .claims
            .values()
            .map(|c| c.event_time_micros)
            .max()
            .unwrap_or_default();
        self.claims = state.claims;
        for rule in &mut self.rules {
            if let Some(s) = state.rules.remove(rule.id()) {
                rule.restore(s);
            }
        }
    }
}
