//! `mongodb_unexpected_network`: a successful authentication from outside the allowed networks.

use std::net::IpAddr;

use arrow::record_batch::RecordBatch;

use auditlake_schema as schema;

use super::Rule;
use crate::alert::{Finding, Severity};
use crate::pattern::Networks;
use crate::rows::Rows;

/// `mongodb_unexpected_network`.
#[derive(Debug, Clone)]
pub struct MongodbUnexpectedNetwork {
    pub id: String,
    pub allowed: Networks,
    /// One alert per (user, address) per window of event time.
    pub dedup_window_micros: i64,
}

impl Rule for MongodbUnexpectedNetwork {
    fn id(&self) -> &str {
        &self.id
    }

    fn table(&self) -> &'static str {
        schema::MONGODB_AUDIT
    }

    fn observe(&mut self, batch: &RecordBatch, findings: &mut Vec<Finding>) {
        let rows = Rows::new(batch);
        for row in 0..rows.len() {
            if rows.str("atype", row) != Some("authenticate") || rows.i32("result", row) != Some(0)
            {
                continue;
            }
            if rows.bool("is_system_user", row) == Some(true) {
                continue;
            }
            let Some(ip) = rows
                .str("remote_ip", row)
                .and_then(|t| t.parse::<IpAddr>().ok())
            else {
                continue;
            };
            if ip.is_loopback() || self.allowed.contains(&ip) {
                continue;
            }
            let user = rows.str("user", row).unwrap_or("?");
            let time = rows.time("ts", row).unwrap_or_default();
            let cluster = rows
                .str("cluster", row)
                .map(|c| format!(" to {c}"))
                .unwrap_or_default();
            let app = rows
                .str("app_name", row)
                .map(|a| format!(" ({a})"))
                .unwrap_or_default();
            findings.push(Finding {
                severity: Severity::High,
                entity: user.to_owned(),
                summary: format!(
                    "{user} authenticated{cluster} from {ip}, outside the allowed networks{app}"
                ),
                dedup_key: format!(
                    "{user}|{ip}|{}",
                    time.div_euclid(self.dedup_window_micros.max(1))
                ),
                evidence: vec![rows.evidence(row, "ts")],
            });
        }
    }
}
