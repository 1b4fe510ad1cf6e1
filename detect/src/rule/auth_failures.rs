//! `mongodb_auth_failures`: at least `threshold` failed authentications per (user, remote IP)
//! within `window` of event time.

use std::collections::{BTreeMap, BTreeSet};

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use auditlake_schema as schema;

use super::Rule;
use crate::alert::{Evidence, Finding, Severity};
use crate::rows::Rows;

/// Most evidence rows kept in one alert.
const EVIDENCE_LIMIT: usize = 20;

/// Failures of one (user, IP), ordered by time; positions make re-observed rows count once.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Failures {
    events: BTreeSet<(i64, String, i64)>,
    /// Time of the latest failure of the burst already alerted on; failures within a window of
    /// it continue that burst instead of starting a new one.
    burst_end: Option<i64>,
}

/// `mongodb_auth_failures`.
#[derive(Debug, Clone)]
pub struct MongodbAuthFailures {
    pub id: String,
    pub threshold: usize,
    pub window_micros: i64,
    by_key: BTreeMap<String, Failures>,
}

impl MongodbAuthFailures {
    pub fn new(id: String, threshold: usize, window_micros: i64) -> Self {
        MongodbAuthFailures {
            id,
            threshold: threshold.max(1),
            window_micros,
            by_key: BTreeMap::new(),
        }
    }
}

impl Rule for MongodbAuthFailures {
    fn id(&self) -> &str {
        &self.id
    }

    fn table(&self) -> &'static str {
        schema::MONGODB_AUDIT
    }

    fn observe(&mut self, batch: &RecordBatch, findings: &mut Vec<Finding>) {
        let rows = Rows::new(batch);
        let mut touched = BTreeSet::new();
        for row in 0..rows.len() {
            if rows.str("atype", row) != Some("authenticate")
                || rows.i32("result", row).is_none_or(|r| r == 0)
            {
                continue;
            }
            let Some(time) = rows.time("ts", row) else {
                continue;
            };
            let user = rows.str("user", row).unwrap_or("?");
            let ip = rows.str("remote_ip_text", row).unwrap_or("?");
            let key = format!("{user}|{ip}");
            let e = rows.evidence(row, "ts");
            self.by_key.entry(key.clone()).or_default().events.insert((
                time,
                e.source_uri,
                e.source_index,
            ));
            touched.insert(key);
        }
        for key in touched {
            let Some(failures) = self.by_key.get_mut(&key) else {
                continue;
            };
            let events: Vec<&(i64, String, i64)> = failures.events.iter().collect();
            // Slide a window over the failures in time order; the first span reaching the
            // threshold starts a burst, which lasts while failures keep coming within a window.
            let mut start = 0;
            for end in 0..events.len() {
                while events[end].0 - events[start].0 > self.window_micros {
                    start += 1;
                }
                if end + 1 - start < self.threshold {
                    continue;
                }
                let burst_start = events[start].0;
                if let Some(previous_end) = failures.burst_end
                    && burst_start <= previous_end + self.window_micros
                {
                    failures.burst_end = Some(previous_end.max(events[end].0));
                    continue;
                }
                failures.burst_end = Some(events[end].0);
                let (user, ip) = key.split_once('|').unwrap_or((&key, "?"));
                let count = end + 1 - start;
                let evidence: Vec<Evidence> = events[start..=end]
                    .iter()
                    .take(EVIDENCE_LIMIT)
                    .map(|(t, uri, index)| Evidence {
                        event_id: None,
                        source_uri: uri.clone(),
                        source_index: *index,
                        event_time_micros: *t,
                    })
                    .collect();
                findings.push(Finding {
                    severity: Severity::High,
                    entity: user.to_owned(),
                    summary: format!(
                        "{count} failed authentications for {user} from {ip} within {} s",
                        (events[end].0 - burst_start) / 1_000_000
                    ),
                    dedup_key: format!("{key}|{burst_start}"),
                    evidence,
                });
            }
            // Forget failures too old to join any future window.
            if let Some(&(latest, _, _)) = failures.events.iter().next_back() {
                let horizon = latest - self.window_micros;
                failures.events.retain(|(t, _, _)| *t >= horizon);
            }
        }
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(&self.by_key).unwrap_or_default()
    }

    fn restore(&mut self, state: serde_json::Value) {
        if let Ok(s) = serde_json::from_value(state) {
            self.by_key = s;
        }
    }
}
