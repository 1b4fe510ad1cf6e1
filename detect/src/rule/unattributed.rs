//! `unattributed_db_session`: a `MONGODB-AWS` database session as a watched role that no
//! assumption in the trail explains — a key from outside the ingested accounts, a leaked
//! session key, credentials made where nothing records them.
//!
//! It follows the access chain's links (see `auditlake_query::access`) on the stream: the rule
//! keeps the keys that assumptions of watched roles issued (with their validity), the
//! `GetCallerIdentity` calls of those roles, and each successful `MONGODB-AWS` login (whether its
//! role is watched is decided with it: a role's path, absent from the database user, comes
//! from the trail). A login
//! at `t` is decided once CloudTrail's event time has reached `t + grace` (late CloudTrail
//! files are normal; event time, never the wall clock, says when to stop waiting): it is
//! explained when a `GetCallerIdentity` of its role within `link_window` of it carries an
//! issued key, or, with no such call at all, when an issued key of its role was valid at `t`.
//! Otherwise it is a finding, whose evidence is the calls in its window and the login (last:
//! the audit object owns the alert). Batches may come in any order (live: as objects commit;
//! replay: CloudTrail first); a login decided after the trail it needs has been seen gets the
//! same answer either way.

use std::collections::{BTreeMap, BTreeSet};

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use auditlake_schema as schema;
use auditlake_schema::credentials::key_expires_at;

use super::{ASSUME_ROLE_EVENTS, Rule};
use crate::alert::{Evidence, Finding, Severity};
use crate::pattern::{Patterns, role_key};
use crate::rows::Rows;

/// How long (event time) keys and calls are kept after they could last explain a login: a
/// day beyond the grace period, for audit objects that arrive late.
const RETENTION_MICROS: i64 = 86_400_000_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Issued {
    role_key: String,
    assumed_at: i64,
    expires_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Check {
    time: i64,
    key: String,
    evidence: Evidence,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Login {
    time: i64,
    role_key: String,
    user: String,
    host: String,
    session: String,
    remote_ip: Option<String>,
    evidence: Evidence,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct State {
    /// The latest CloudTrail event time seen.
    watermark: i64,
    /// Keys issued by assumptions of watched roles.
    issued: BTreeMap<String, Issued>,
    /// `GetCallerIdentity` calls of watched roles, by role key and time.
    checks: BTreeMap<String, BTreeMap<(i64, String), Check>>,
    /// Logins waiting for the trail to catch up, by time, host and session.
    pending: BTreeMap<(i64, String, String), Login>,
    /// Role keys of the watched roles seen in the trail.
    watched: BTreeSet<String>,
}

/// [`State`] as saved: JSON maps take text keys only.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    watermark: i64,
    issued: BTreeMap<String, Issued>,
    checks: Vec<(String, Vec<Check>)>,
    pending: Vec<Login>,
    watched: BTreeSet<String>,
}

impl From<&State> for Saved {
    fn from(state: &State) -> Self {
        Saved {
            watermark: state.watermark,
            issued: state.issued.clone(),
            checks: state
                .checks
                .iter()
                .map(|(role, calls)| (role.clone(), calls.values().cloned().collect()))
                .collect(),
            pending: state.pending.values().cloned().collect(),
            watched: state.watched.clone(),
        }
    }
}

impl From<Saved> for State {
    fn from(saved: Saved) -> Self {
        State {
            watermark: saved.watermark,
            issued: saved.issued,
            checks: saved
                .checks
                .into_iter()
                .map(|(role, calls)| {
                    let calls = calls
                        .into_iter()
                        .map(|c| ((c.time, c.evidence.event_id.clone().unwrap_or_default()), c))
                        .collect();
                    (role, calls)
                })
                .collect(),
            pending: saved
                .pending
                .into_iter()
                .map(|l| ((l.time, l.host.clone(), l.session.clone()), l))
                .collect(),
            watched: saved.watched,
        }
    }
}

/// `unattributed_db_session`; see the module documentation.
#[derive(Debug, Clone)]
pub struct UnattributedDbSession {
    pub id: String,
    roles: Patterns,
    link_window_micros: i64,
    grace_micros: i64,
    severity: Severity,
    state: State,
}

impl UnattributedDbSession {
    pub fn new(
        id: String,
        roles: Patterns,
        link_window_micros: i64,
        grace_micros: i64,
        severity: Severity,
    ) -> Self {
        let watched = roles.literal_role_keys();
        UnattributedDbSession {
            id,
            roles,
            link_window_micros,
            grace_micros,
            severity,
            state: State {
                watched,
                ..State::default()
            },
        }
    }

    fn observe_trail(&mut self, rows: &Rows<'_>) {
        for row in 0..rows.len() {
            let Some(time) = rows.time("event_time", row) else {
                continue;
            };
            self.state.watermark = self.state.watermark.max(time);
            if rows.str("event_source", row) != Some("sts.amazonaws.com")
                || rows.str("error_code", row).is_some()
            {
                continue;
            }
            let name = rows.str("event_name", row);
            if name.is_some_and(|n| ASSUME_ROLE_EVENTS.contains(&n)) {
                let (Some(role), Some(key)) = (
                    rows.str("role_arn", row),
                    rows.str("assumed_access_key_id", row),
                ) else {
                    continue;
                };
                let Some(role_key) = role_key(role).filter(|_| self.roles.matches(role)) else {
                    continue;
                };
                let expires_at = key_expires_at(
                    time,
                    rows.str("request_parameters", row),
                    rows.str("response_elements", row),
                );
                self.state.watched.insert(role_key.clone());
                self.state.issued.insert(
                    key.to_owned(),
                    Issued {
                        role_key,
                        assumed_at: time,
                        expires_at,
                    },
                );
            } else if name == Some("GetCallerIdentity") {
                let (Some(issuer), Some(key)) = (
                    rows.str("session_issuer_arn", row),
                    rows.str("user_access_key_id", row),
                ) else {
                    continue;
                };
                let Some(role_key) = role_key(issuer) else {
                    continue;
                };
                if !self.roles.matches(issuer) && !self.state.watched.contains(&role_key) {
                    continue;
                }
                self.state.watched.insert(role_key.clone());
                let evidence = rows.evidence(row, "event_time");
                let id = evidence.event_id.clone().unwrap_or_default();
                self.state.checks.entry(role_key).or_default().insert(
                    (time, id),
                    Check {
                        time,
                        key: key.to_owned(),
                        evidence,
                    },
                );
            }
        }
    }

    fn observe_logins(&mut self, rows: &Rows<'_>) {
        for row in 0..rows.len() {
            if rows.str("atype", row) != Some("authenticate")
                || rows.str("mechanism", row) != Some("MONGODB-AWS")
                || rows.i32("result", row) != Some(0)
            {
                continue;
            }
            let (Some(time), Some(user), Some(session)) = (
                rows.time("ts", row),
                rows.str("user", row),
                rows.str("conn_uuid", row),
            ) else {
                continue;
            };
            let Some(role_key) = role_key(user).filter(|_| user.contains(":role/")) else {
                continue;
            };
            let host = rows.str("hostname", row).unwrap_or_default().to_owned();
            let remote_ip = rows
                .str("remote_ip", row)
                .or_else(|| rows.str("remote_ip_text", row))
                .map(str::to_owned);
            self.state
                .pending
                .entry((time, host.clone(), session.to_owned()))
                .or_insert(Login {
                    time,
                    role_key,
                    user: user.to_owned(),
                    host,
                    session: session.to_owned(),
                    remote_ip,
                    evidence: rows.evidence(row, "ts"),
                });
        }
    }

    /// Decides every login the trail has caught up with.
    fn decide(&mut self, findings: &mut Vec<Finding>) {
        let horizon = self.state.watermark - self.grace_micros;
        while let Some(entry) = self.state.pending.first_entry() {
            if entry.key().0 > horizon {
                break;
            }
            let ((time, _, _), login) = entry.remove_entry();
            // Whether a login's role is watched is known once the trail has named it.
            let watched =
                self.roles.matches(&login.user) || self.state.watched.contains(&login.role_key);
            if !watched {
                continue;
            }
            if let Some(finding) = self.finding(time, &login) {
                findings.push(finding);
            }
        }
        let forget = horizon - self.link_window_micros - RETENTION_MICROS;
        self.state.issued.retain(|_, i| i.expires_at >= forget);
        for calls in self.state.checks.values_mut() {
            calls.retain(|(t, _), _| *t >= forget);
        }
        self.state.checks.retain(|_, calls| !calls.is_empty());
    }

    /// The finding for a login no assumption explains; `None` when one does.
    fn finding(&self, time: i64, login: &Login) -> Option<Finding> {
        let window = self.link_window_micros;
        let calls: Vec<&Check> = self
            .state
            .checks
            .get(&login.role_key)
            .map(|calls| {
                calls
                    .range((time - window, String::new())..)
                    .take_while(|((t, _), _)| *t <= time + window)
                    .map(|(_, c)| c)
                    .collect()
            })
            .unwrap_or_default();
        let explained = if calls.is_empty() {
            self.state.issued.values().any(|i| {
                i.role_key == login.role_key && i.assumed_at <= time && time <= i.expires_at
            })
        } else {
            calls.iter().any(|c| self.state.issued.contains_key(&c.key))
        };
        if explained {
            return None;
        }
        let keys: BTreeSet<&str> = calls.iter().map(|c| c.key.as_str()).collect();
        let how = if keys.is_empty() {
            "with no GetCallerIdentity in the trail and no key of the role valid then".to_owned()
        } else {
            format!(
                "with key {} that no assumption in the trail issued",
                keys.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        let mut evidence: Vec<Evidence> = calls.iter().map(|c| c.evidence.clone()).collect();
        evidence.push(login.evidence.clone());
        Some(Finding {
            severity: self.severity,
            entity: login.user.clone(),
            summary: format!(
                "MONGODB-AWS session {} on {} as {} from {} {how}",
                login.session,
                login.host,
                login.user,
                login.remote_ip.as_deref().unwrap_or("an unknown address"),
            ),
            dedup_key: format!("{}|{}", login.host, login.session),
            evidence,
        })
    }
}

impl Rule for UnattributedDbSession {
    fn id(&self) -> &str {
        &self.id
    }

    fn table(&self) -> &'static str {
        schema::MONGODB_AUDIT
    }

    fn also_table(&self) -> Option<&'static str> {
        Some(schema::CLOUDTRAIL)
    }

    fn observe(&mut self, batch: &RecordBatch, findings: &mut Vec<Finding>) {
        self.observe_table(schema::MONGODB_AUDIT, batch, findings);
    }

    fn observe_table(&mut self, table: &str, batch: &RecordBatch, findings: &mut Vec<Finding>) {
        let rows = Rows::new(batch);
        if table == schema::CLOUDTRAIL {
            self.observe_trail(&rows);
        } else {
            self.observe_logins(&rows);
        }
        self.decide(findings);
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(Saved::from(&self.state)).unwrap_or_default()
    }

    fn restore(&mut self, state: serde_json::Value) {
        if let Ok(saved) = serde_json::from_value::<Saved>(state) {
            self.state = saved.into();
        }
    }
}
