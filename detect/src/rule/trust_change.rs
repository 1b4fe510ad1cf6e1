//! `watched_role_trust_changed`: a watched role's trust policy was set or changed
//! (`CreateRole`, `UpdateAssumeRolePolicy`), with the principals it added and removed — the
//! step before an unexpected assumption.
//!
//! Each role's policies are kept by event time, so a change is compared with the version
//! before it in the trail; the first version the lake holds is reported as set, with every
//! principal added. A change that leaves the principals and their conditions as they were
//! raises nothing.

use std::collections::{BTreeMap, BTreeSet};

use arrow::record_batch::RecordBatch;

use auditlake_schema as schema;
use auditlake_schema::trust::{Grant, TrustChange};

use super::Rule;
use crate::alert::{Finding, Severity};
use crate::pattern::{Patterns, role_key};
use crate::rows::Rows;

/// A grant as compared between versions: effect, principal and conditions.
fn describe(grant: &Grant) -> String {
    let mut text = format!("{} {}", grant.kind, grant.principal);
    if grant.effect != "Allow" {
        text = format!("{} {text}", grant.effect);
    }
    if grant.not_principal {
        text = format!("all but {text}");
    }
    if let Some(conditions) = &grant.conditions {
        text.push_str(&format!(" if {conditions}"));
    }
    text
}

/// The versions as saved: JSON maps take text keys only.
type Saved = BTreeMap<String, Vec<(i64, String, BTreeSet<String>)>>;

/// `watched_role_trust_changed`; see the module documentation.
#[derive(Debug, Clone)]
pub struct WatchedRoleTrustChanged {
    pub id: String,
    roles: Patterns,
    /// Role keys of the watched roles named without wildcards.
    literal: BTreeSet<String>,
    severity: Severity,
    /// Each watched role's versions: (event time, event id) → its grants described.
    versions: BTreeMap<String, BTreeMap<(i64, String), BTreeSet<String>>>,
}

impl WatchedRoleTrustChanged {
    pub fn new(id: String, roles: Patterns, severity: Severity) -> Self {
        let literal = roles.literal_role_keys();
        WatchedRoleTrustChanged {
            id,
            roles,
            literal,
            severity,
            versions: BTreeMap::new(),
        }
    }
}

impl Rule for WatchedRoleTrustChanged {
    fn id(&self) -> &str {
        &self.id
    }

    fn table(&self) -> &'static str {
        schema::CLOUDTRAIL
    }

    fn observe(&mut self, batch: &RecordBatch, findings: &mut Vec<Finding>) {
        let rows = Rows::new(batch);
        for row in 0..rows.len() {
            if rows.str("event_source", row) != Some("iam.amazonaws.com")
                || rows.str("error_code", row).is_some()
            {
                continue;
            }
            let (Some(name), Some(time)) =
                (rows.str("event_name", row), rows.time("event_time", row))
            else {
                continue;
            };
            let Some(change) = TrustChange::from_record(
                name,
                rows.str("request_parameters", row),
                rows.str("response_elements", row),
            ) else {
                continue;
            };
            let account = rows.str("recipient_account_id", row).unwrap_or_default();
            let arn = change
                .role_arn
                .clone()
                .unwrap_or_else(|| format!("arn:aws:iam::{account}:role/{}", change.role_name));
            let Some(key) = role_key(&arn) else {
                continue;
            };
            if !self.roles.matches(&arn) && !self.literal.contains(&key) {
                continue;
            }
            let evidence = rows.evidence(row, "event_time");
            let event_id = evidence.event_id.clone().unwrap_or_default();
            let grants: BTreeSet<String> = change.grants.iter().map(describe).collect();
            let versions = self.versions.entry(key).or_default();
            let previous = versions
                .range(..(time, event_id.clone()))
                .next_back()
                .map(|(_, g)| g.clone());
            versions.insert((time, event_id.clone()), grants.clone());
            let by = rows
                .str("session_issuer_arn", row)
                .or_else(|| rows.str("user_arn", row))
                .unwrap_or("an unknown principal");
            let list = |set: Vec<&String>| {
                if set.is_empty() {
                    "none".to_owned()
                } else {
                    set.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                }
            };
            let summary = match &previous {
                Some(before) => {
                    let added: Vec<&String> = grants.difference(before).collect();
                    let removed: Vec<&String> = before.difference(&grants).collect();
                    if added.is_empty() && removed.is_empty() {
                        continue;
                    }
                    format!(
                        "{by} changed the trust policy of {arn} ({name}): added {}; removed {}",
                        list(added),
                        list(removed)
                    )
                }
                None => format!(
                    "{by} set the trust policy of {arn} ({name}; no earlier version in the lake): {}",
                    list(grants.iter().collect())
                ),
            };
            findings.push(Finding {
                severity: self.severity,
                entity: arn,
                summary,
                dedup_key: event_id,
                evidence: vec![evidence],
            });
        }
        // A role's last versions are enough to compare the changes still to come with (late
        // records come within hours, and policies change rarely).
        for versions in self.versions.values_mut() {
            while versions.len() > 16 {
                versions.pop_first();
            }
        }
    }

    fn save(&self) -> serde_json::Value {
        let saved: Saved = self
            .versions
            .iter()
            .map(|(role, v)| {
                let versions = v.iter().map(|((t, id), g)| (*t, id.clone(), g.clone()));
                (role.clone(), versions.collect())
            })
            .collect();
        serde_json::to_value(saved).unwrap_or_default()
    }

    fn restore(&mut self, state: serde_json::Value) {
        if let Ok(saved) = serde_json::from_value::<Saved>(state) {
            self.versions = saved
                .into_iter()
                .map(|(role, v)| (role, v.into_iter().map(|(t, id, g)| ((t, id), g)).collect()))
                .collect();
        }
    }
}
