//! `unexpected_role_assumer` and `assume_role_denied`: who assumes the watched roles.

use std::collections::BTreeSet;
use std::net::IpAddr;

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use auditlake_schema as schema;

use super::{ASSUME_ROLE_EVENTS, Rule, short_name};
use crate::alert::{Finding, Severity};
use crate::pattern::{Networks, Patterns};
use crate::rows::Rows;

/// Who may assume a watched role.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// Principal ARNs, session issuer (role) ARNs and service principals, with wildcards.
    pub principals: Patterns,
    /// Account ids any of whose principals may assume the role.
    pub accounts: BTreeSet<String>,
    /// Source networks the expected principals must come from; empty means any.
    pub networks: Networks,
}

impl Expected {
    /// Splits the config's `expected` list into patterns and bare account ids.
    pub fn new(entries: &[String], networks: Networks) -> Self {
        let (accounts, principals): (Vec<&String>, Vec<&String>) = entries
            .iter()
            .partition(|e| e.len() == 12 && e.bytes().all(|b| b.is_ascii_digit()));
        let principals: Vec<String> = principals.into_iter().cloned().collect();
        Expected {
            principals: Patterns::new(&principals),
            accounts: accounts.into_iter().cloned().collect(),
            networks,
        }
    }

    /// Whether any expected principal lives in `account`.
    fn names_account(&self, account: &str) -> bool {
        self.accounts.contains(account)
            || self
                .principals
                .sources()
                .iter()
                .any(|p| p.split(':').nth(4).is_some_and(|a| a == account))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct FirstSeenState {
    learning_started_micros: Option<i64>,
    seen: BTreeSet<String>,
}

/// `unexpected_role_assumer`; see the crate documentation.
#[derive(Debug, Clone)]
pub struct UnexpectedRoleAssumer {
    pub id: String,
    pub roles: Patterns,
    pub expected: Expected,
    pub severity: Severity,
    /// With `first_seen`, a principal not seen during the learning period alerts too.
    pub first_seen_learning_micros: Option<i64>,
    first_seen: FirstSeenState,
}

impl UnexpectedRoleAssumer {
    pub fn new(
        id: String,
        roles: Patterns,
        expected: Expected,
        severity: Severity,
        first_seen_learning_micros: Option<i64>,
    ) -> Self {
        UnexpectedRoleAssumer {
            id,
            roles,
            expected,
            severity,
            first_seen_learning_micros,
            first_seen: FirstSeenState::default(),
        }
    }
}

/// The caller of an AssumeRole row, as the rules see it.
struct Caller<'a> {
    user_type: Option<&'a str>,
    arn: Option<&'a str>,
    issuer: Option<&'a str>,
    account: Option<&'a str>,
    invoked_by: Option<&'a str>,
    principal_id: Option<&'a str>,
}

impl Caller<'_> {
    /// A stable name for the caller: the role of a session, else the principal.
    fn identity(&self) -> String {
        if self.user_type == Some("AWSAccount") {
            return format!("account:{}", self.account.unwrap_or("?"));
        }
        self.issuer
            .or(self.arn)
            .or(self.invoked_by)
            .or(self.principal_id)
            .unwrap_or("unknown")
            .to_owned()
    }

    fn display(&self) -> String {
        match (self.user_type, self.arn, self.issuer) {
            (Some("AWSAccount"), _, _) => {
                format!("a principal of account {}", self.account.unwrap_or("?"))
            }
            (_, _, Some(issuer)) => format!("{} (session of {issuer})", short_name(issuer)),
            (_, Some(arn), None) => format!("{} ({arn})", short_name(arn)),
            _ => self.identity(),
        }
    }
}

fn caller<'a>(rows: &Rows<'a>, row: usize) -> Caller<'a> {
    Caller {
        user_type: rows.str("user_type", row),
        arn: rows.str("user_arn", row),
        issuer: rows.str("session_issuer_arn", row),
        account: rows.str("user_account_id", row),
        invoked_by: rows.str("invoked_by", row),
        principal_id: rows.str("user_principal_id", row),
    }
}

fn is_assume_role(rows: &Rows<'_>, row: usize) -> bool {
    rows.str("event_source", row) == Some("sts.amazonaws.com")
        && rows
            .str("event_name", row)
            .is_some_and(|n| ASSUME_ROLE_EVENTS.contains(&n))
}

impl UnexpectedRoleAssumer {
    fn is_expected(&self, c: &Caller<'_>, source_ip: Option<&str>) -> bool {
        let p = &self.expected.principals;
        let principal_ok = match c.user_type {
            // The role owner's copy of a cross-account call names only the calling account.
            Some("AWSAccount") => c.account.is_some_and(|a| self.expected.names_account(a)),
            _ => {
                c.arn.is_some_and(|a| p.matches(a))
                    || c.issuer.is_some_and(|i| p.matches(i))
                    || c.invoked_by.is_some_and(|s| p.matches(s))
                    || c.principal_id.is_some_and(|s| p.matches(s))
                    || c.account
                        .is_some_and(|a| self.expected.accounts.contains(a))
            }
        };
        let network_ok = self.expected.networks.is_empty()
            || source_ip
                .and_then(|ip| ip.parse::<IpAddr>().ok())
                .is_some_and(|ip| self.expected.networks.contains(&ip));
        principal_ok && network_ok
    }
}

impl Rule for UnexpectedRoleAssumer {
    fn id(&self) -> &str {
        &self.id
    }

    fn table(&self) -> &'static str {
        schema::CLOUDTRAIL
    }

    fn observe(&mut self, batch: &RecordBatch, findings: &mut Vec<Finding>) {
        let rows = Rows::new(batch);
        for row in 0..rows.len() {
            if !is_assume_role(&rows, row) || rows.str("error_code", row).is_some() {
                continue;
            }
            let Some(role) = rows.str("role_arn", row).filter(|r| self.roles.matches(r)) else {
                continue;
            };
            let c = caller(&rows, row);
            let source_ip = rows.str("source_ip", row);
            let time = rows.time("event_time", row).unwrap_or_default();
            let mut reason = None;
            if !self.is_expected(&c, source_ip) {
                reason = Some("not an expected assumer");
            } else if let Some(learning) = self.first_seen_learning_micros {
                let started = *self.first_seen.learning_started_micros.get_or_insert(time);
                let identity = c.identity();
                if time < started + learning {
                    self.first_seen.seen.insert(identity);
                } else if self.first_seen.seen.insert(identity) {
                    reason = Some("first time this principal assumes it");
                }
            }
            let Some(reason) = reason else { continue };
            // Both copies of a cross-account call share `sharedEventID`: one alert.
            let key = rows
                .str("shared_event_id", row)
                .or(rows.str("event_id", row))
                .unwrap_or("?");
            findings.push(Finding {
                severity: self.severity,
                entity: c.arn.map(str::to_owned).unwrap_or_else(|| c.identity()),
                summary: format!(
                    "{} assumed {role} from {}: {reason}",
                    c.display(),
                    source_ip.unwrap_or("an unknown address")
                ),
                dedup_key: key.to_owned(),
                evidence: vec![rows.evidence(row, "event_time")],
            });
        }
    }

    fn save(&self) -> serde_json::Value {
        if self.first_seen_learning_micros.is_some() {
            serde_json::to_value(&self.first_seen).unwrap_or_default()
        } else {
            serde_json::Value::Null
        }
    }

    fn restore(&mut self, state: serde_json::Value) {
        if let Ok(s) = serde_json::from_value(state) {
            self.first_seen = s;
        }
    }
}

/// `assume_role_denied`: refused attempts to assume a watched role.
#[derive(Debug, Clone)]
pub struct AssumeRoleDenied {
    pub id: String,
    /// Watched roles; empty means every role.
    pub roles: Patterns,
    pub severity: Severity,
}

impl Rule for AssumeRoleDenied {
    fn id(&self) -> &str {
        &self.id
    }

    fn table(&self) -> &'static str {
        schema::CLOUDTRAIL
    }

    fn observe(&mut self, batch: &RecordBatch, findings: &mut Vec<Finding>) {
        let rows = Rows::new(batch);
        for row in 0..rows.len() {
            if !is_assume_role(&rows, row) {
                continue;
            }
            let Some(error) = rows
                .str("error_code", row)
                .filter(|e| e.contains("AccessDenied"))
            else {
                continue;
            };
            let role = rows.str("role_arn", row);
            if !self.roles.is_empty() && !role.is_some_and(|r| self.roles.matches(r)) {
                continue;
            }
            let c = caller(&rows, row);
            findings.push(Finding {
                severity: self.severity,
                entity: c.arn.map(str::to_owned).unwrap_or_else(|| c.identity()),
                summary: format!(
                    "{} was refused ({error}) assuming {} from {}",
                    c.display(),
                    role.unwrap_or("a role"),
                    rows.str("source_ip", row).unwrap_or("an unknown address")
                ),
                dedup_key: rows.str("event_id", row).unwrap_or("?").to_owned(),
                evidence: vec![rows.evidence(row, "event_time")],
            });
        }
    }
}
