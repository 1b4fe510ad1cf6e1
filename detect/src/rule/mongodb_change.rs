//! `mongodb_drop` and `mongodb_user_change`: destructive and privilege-changing database commands.

use arrow::record_batch::RecordBatch;
use serde_json::Value;

use auditlake_schema as schema;

use super::Rule;
use crate::alert::{Finding, Severity};
use crate::pattern::Patterns;
use crate::rows::Rows;

/// A drop that is expected: by this user (pattern) on this namespace (pattern).
#[derive(Debug, Clone)]
pub struct DropException {
    pub user: Patterns,
    pub ns: Patterns,
}

/// `mongodb_drop`.
#[derive(Debug, Clone)]
pub struct MongodbDrop {
    pub id: String,
    pub atypes: Vec<String>,
    pub exceptions: Vec<DropException>,
    /// With a window, the same user's same command within one window is one alert.
    pub dedup_window_micros: Option<i64>,
}

/// Who did it, as `user@db`, and the time and key parts every database rule uses.
fn actor(rows: &Rows<'_>, row: usize) -> String {
    match (rows.str("user", row), rows.str("user_db", row)) {
        (Some(u), Some(db)) => format!("{u}@{db}"),
        (Some(u), None) => u.to_owned(),
        _ => "an unauthenticated client".to_owned(),
    }
}

/// One key per event, or per (user, command, window) when a window is set.
fn dedup_key(rows: &Rows<'_>, row: usize, who: &str, window: Option<i64>) -> String {
    match window {
        Some(w) if w > 0 => format!(
            "{who}|{}|{}",
            rows.str("atype", row).unwrap_or("-"),
            rows.time("ts", row).unwrap_or_default().div_euclid(w)
        ),
        _ => position_key(rows, row),
    }
}

fn position_key(rows: &Rows<'_>, row: usize) -> String {
    format!(
        "{}|{}|{}",
        rows.str("conn_uuid", row).unwrap_or("-"),
        rows.time("ts", row).unwrap_or_default(),
        rows.str("atype", row).unwrap_or("-")
    )
}

/// Rows (with their `atype`) of successful commands of the given audit types.
fn succeeded<'r, 'a>(
    rows: &'r Rows<'a>,
    atypes: &'r [String],
) -> impl Iterator<Item = (usize, &'a str)> + 'r {
    (0..rows.len()).filter_map(move |row| {
        let atype = rows
            .str("atype", row)
            .filter(|a| atypes.iter().any(|t| t == a))?;
        // A failed command changed nothing (13 = unauthorized).
        let failed = rows.i32("result", row).is_some_and(|r| r != 0);
        (!failed).then_some((row, atype))
    })
}

fn place(rows: &Rows<'_>, row: usize) -> String {
    match (rows.str("cluster", row), rows.str("hostname", row)) {
        (Some(c), _) => format!(" on {c}"),
        (None, Some(h)) => format!(" on {h}"),
        _ => String::new(),
    }
}

impl Rule for MongodbDrop {
    fn id(&self) -> &str {
        &self.id
    }

    fn table(&self) -> &'static str {
        schema::MONGODB_AUDIT
    }

    fn observe(&mut self, batch: &RecordBatch, findings: &mut Vec<Finding>) {
        let rows = Rows::new(batch);
        for (row, atype) in succeeded(&rows, &self.atypes) {
            let who = actor(&rows, row);
            let ns = rows.str("ns", row).unwrap_or("?");
            if self
                .exceptions
                .iter()
                .any(|e| e.user.matches(&who) && e.ns.matches(ns))
            {
                continue;
            }
            findings.push(Finding {
                severity: if atype == "dropDatabase" {
                    Severity::High
                } else {
                    Severity::Medium
                },
                entity: who.clone(),
                summary: format!(
                    "{who} ran {atype} on {ns}{} from {}",
                    place(&rows, row),
                    rows.str("remote_ip_text", row)
                        .unwrap_or("an unknown address")
                ),
                dedup_key: dedup_key(&rows, row, &who, self.dedup_window_micros),
                evidence: vec![rows.evidence(row, "ts")],
            });
        }
    }
}

/// `mongodb_user_change`.
#[derive(Debug, Clone)]
pub struct MongodbUserChange {
    pub id: String,
    pub atypes: Vec<String>,
    /// Roles whose grant raises the severity to critical.
    pub privileged_roles: Patterns,
    /// With a window, the same user's same command within one window is one alert.
    pub dedup_window_micros: Option<i64>,
}

/// Role names in `param.roles` (`[{role, db}]` or `["name"]`) and `param.privileges`-less forms.
fn granted_roles(param: &Value) -> Vec<String> {
    param
        .get("roles")
        .and_then(Value::as_array)
        .map(|roles| {
            roles
                .iter()
                .filter_map(|r| match r {
                    Value::String(s) => Some(s.clone()),
                    other => other.get("role").and_then(Value::as_str).map(|role| {
                        match other.get("db").and_then(Value::as_str) {
                            Some(db) => format!("{role}@{db}"),
                            None => role.to_owned(),
                        }
                    }),
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Rule for MongodbUserChange {
    fn id(&self) -> &str {
        &self.id
    }

    fn table(&self) -> &'static str {
        schema::MONGODB_AUDIT
    }

    fn observe(&mut self, batch: &RecordBatch, findings: &mut Vec<Finding>) {
        let rows = Rows::new(batch);
        for (row, atype) in succeeded(&rows, &self.atypes) {
            let param: Value = rows
                .str("param", row)
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or(Value::Null);
            let target = match (
                param
                    .get("user")
                    .or(param.get("role"))
                    .and_then(Value::as_str),
                param.get("db").and_then(Value::as_str),
            ) {
                (Some(t), Some(db)) => format!("{t}@{db}"),
                (Some(t), None) => t.to_owned(),
                (None, Some(db)) => format!("database {db}"),
                (None, None) => rows.str("ns", row).unwrap_or("?").to_owned(),
            };
            // Revoking is not granting: only grants raise the severity.
            let granting = !atype.starts_with("revoke") && !atype.starts_with("drop");
            let roles = granted_roles(&param);
            let privileged: Vec<&String> = roles
                .iter()
                .filter(|r| {
                    self.privileged_roles
                        .matches(r.split('@').next().unwrap_or(r))
                })
                .collect();
            let (severity, detail) = if granting && !privileged.is_empty() {
                let names: Vec<&str> = privileged.iter().map(|s| s.as_str()).collect();
                (
                    Severity::Critical,
                    format!(" granting privileged role {}", names.join(", ")),
                )
            } else if roles.is_empty() {
                (Severity::Medium, String::new())
            } else {
                (
                    Severity::Medium,
                    format!(" with roles {}", roles.join(", ")),
                )
            };
            let who = actor(&rows, row);
            findings.push(Finding {
                severity,
                entity: who.clone(),
                summary: format!("{who} ran {atype} on {target}{detail}{}", place(&rows, row)),
                dedup_key: dedup_key(&rows, row, &who, self.dedup_window_micros),
                evidence: vec![rows.evidence(row, "ts")],
            });
        }
    }
}
