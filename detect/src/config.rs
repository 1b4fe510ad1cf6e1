//! The `[detect]` and `[alerts]` sections of the configuration, and the rules they build.
//!
//! `mongodb_drop`, `mongodb_user_change` and `assume_role_denied` are on unless switched off;
//! `unattributed_db_session` and `watched_role_trust_changed` are on whenever a role is watched; the other rules are on when
//! configured. Every error names its field.

use std::time::Duration;

use serde::Deserialize;

use crate::alert::Severity;
use crate::engine::Engine;
use crate::pattern::{Networks, Patterns};
use crate::rule::Rule;
use crate::rule::assume_role::{AssumeRoleDenied, Expected, UnexpectedRoleAssumer};
use crate::rule::auth_failures::MongodbAuthFailures;
use crate::rule::mongodb_change::{DropException, MongodbDrop, MongodbUserChange};
use crate::rule::trust_change::WatchedRoleTrustChanged;
use crate::rule::unattributed::UnattributedDbSession;
use crate::rule::unexpected_network::MongodbUnexpectedNetwork;

/// A configuration error, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct DetectConfigError {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> DetectConfigError {
    DetectConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// `[detect]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// `[[detect.unexpected_role_assumer]]`: one table per watched set of roles.
    #[serde(default)]
    pub unexpected_role_assumer: Vec<UnexpectedRoleAssumerConfig>,
    #[serde(default)]
    pub assume_role_denied: AssumeRoleDeniedConfig,
    #[serde(default)]
    pub mongodb_drop: MongodbDropConfig,
    #[serde(default)]
    pub mongodb_user_change: MongodbUserChangeConfig,
    pub mongodb_auth_failures: Option<MongodbAuthFailuresConfig>,
    pub mongodb_unexpected_network: Option<MongodbUnexpectedNetworkConfig>,
    #[serde(default)]
    pub unattributed_db_session: UnattributedDbSessionConfig,
    #[serde(default)]
    pub watched_role_trust_changed: WatchedRoleTrustChangedConfig,
}

/// `[detect.watched_role_trust_changed]`: on whenever a role is watched.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchedRoleTrustChangedConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub severity: Option<Severity>,
}

impl Default for WatchedRoleTrustChangedConfig {
    fn default() -> Self {
        WatchedRoleTrustChangedConfig {
            enabled: true,
            severity: None,
        }
    }
}

/// `[detect.unattributed_db_session]`: on whenever a role is watched (by
/// `[[detect.unexpected_role_assumer]]` or `[access] roles`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnattributedDbSessionConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How long past a login, in CloudTrail's event time, the trail may still bring what
    /// explains it. Default `15m`.
    #[serde(default, with = "humantime_serde")]
    pub grace: Option<Duration>,
    pub severity: Option<Severity>,
}

impl Default for UnattributedDbSessionConfig {
    fn default() -> Self {
        UnattributedDbSessionConfig {
            enabled: true,
            grace: None,
            severity: None,
        }
    }
}

/// What the rules that follow the access chain take from outside `[detect]`.
#[derive(Debug, Clone)]
pub struct AccessWatch {
    /// Watched roles besides those of `[[detect.unexpected_role_assumer]]`.
    pub roles: Vec<String>,
    /// How far from a login its `GetCallerIdentity` may be.
    pub link_window: Duration,
}

impl Default for AccessWatch {
    fn default() -> Self {
        AccessWatch {
            roles: Vec::new(),
            link_window: auditlake_schema::credentials::DEFAULT_LINK_WINDOW,
        }
    }
}

/// `[[detect.unexpected_role_assumer]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnexpectedRoleAssumerConfig {
    /// Rule id; required when there is more than one table. Default `unexpected_role_assumer`.
    pub id: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Watched role ARNs (`*` and `?` wildcards).
    pub roles: Vec<String>,
    /// Expected assumers: principal ARNs, role ARNs (matching that role's sessions), service
    /// principals such as `ec2.amazonaws.com`, or 12-digit account ids.
    #[serde(default)]
    pub expected: Vec<String>,
    /// If set, expected assumers must also come from these networks.
    #[serde(default)]
    pub expected_cidrs: Vec<String>,
    /// Also alert on any principal not seen during the learning period.
    #[serde(default)]
    pub first_seen: bool,
    /// Learning period for `first_seen`, in event time. Default `7d`.
    #[serde(default, with = "humantime_serde")]
    pub learning_period: Option<Duration>,
    pub severity: Option<Severity>,
}

fn yes() -> bool {
    true
}

/// `[detect.assume_role_denied]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssumeRoleDeniedConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Watched roles; default: the roles of every `unexpected_role_assumer`, or every role.
    pub roles: Option<Vec<String>>,
    pub severity: Option<Severity>,
}

impl Default for AssumeRoleDeniedConfig {
    fn default() -> Self {
        AssumeRoleDeniedConfig {
            enabled: true,
            roles: None,
            severity: None,
        }
    }
}

/// `[detect.mongodb_drop]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongodbDropConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Audit types that count as drops. Default `dropDatabase`, `dropCollection`.
    pub atypes: Option<Vec<String>>,
    /// Drops that are expected.
    #[serde(default)]
    pub exceptions: Vec<DropExceptionConfig>,
    /// The same user's same drop command within this window is one alert. Default: every drop
    /// alerts.
    #[serde(default, with = "humantime_serde")]
    pub dedup_window: Option<Duration>,
}

impl Default for MongodbDropConfig {
    fn default() -> Self {
        MongodbDropConfig {
            enabled: true,
            atypes: None,
            exceptions: Vec::new(),
            dedup_window: None,
        }
    }
}

/// One expected drop: `user` (as `name@db`) and `ns` patterns; a missing one matches all.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropExceptionConfig {
    pub user: Option<String>,
    pub ns: Option<String>,
}

/// `[detect.mongodb_user_change]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongodbUserChangeConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Audit types that count as user or role changes. Default: every user and role command.
    pub atypes: Option<Vec<String>>,
    /// Roles whose grant is critical. Default `root`, `atlasAdmin`, `*AnyDatabase`,
    /// `userAdmin*`, `dbOwner`, `clusterAdmin`, `__system`.
    pub privileged_roles: Option<Vec<String>>,
    /// The same user's same command within this window is one alert. Default: every change
    /// alerts.
    #[serde(default, with = "humantime_serde")]
    pub dedup_window: Option<Duration>,
}

impl Default for MongodbUserChangeConfig {
    fn default() -> Self {
        MongodbUserChangeConfig {
            enabled: true,
            atypes: None,
            privileged_roles: None,
            dedup_window: None,
        }
    }
}

/// `[detect.mongodb_auth_failures]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongodbAuthFailuresConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Failures per (user, remote IP) that raise an alert. Default 10.
    pub threshold: Option<usize>,
    /// Within this much event time. Default `5m`.
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
}

/// `[detect.mongodb_unexpected_network]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongodbUnexpectedNetworkConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Networks authentications may come from.
    pub allowed_cidrs: Vec<String>,
    /// One alert per (user, address) within this window. Default `1d` (UTC days).
    #[serde(default, with = "humantime_serde")]
    pub dedup_window: Option<Duration>,
}

const USER_CHANGE_ATYPES: &[&str] = &[
    "createUser",
    "dropUser",
    "updateUser",
    "grantRolesToUser",
    "revokeRolesFromUser",
    "dropAllUsersFromDatabase",
    "createRole",
    "dropRole",
    "updateRole",
    "grantRolesToRole",
    "revokeRolesFromRole",
    "grantPrivilegesToRole",
    "revokePrivilegesFromRole",
    "dropAllRolesFromDatabase",
    "directAuthMutation",
];
const PRIVILEGED_ROLES: &[&str] = &[
    "root",
    "atlasAdmin",
    "*AnyDatabase",
    "userAdmin*",
    "dbOwner",
    "clusterAdmin",
    "__system",
];

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl DetectConfig {
    /// Validates the configuration and builds the engine of the enabled rules. Done once, when
    /// the configuration is loaded; each run starts from a clone of the result.
    pub fn build(&self) -> Result<Engine, DetectConfigError> {
        self.build_watching(&AccessWatch::default())
    }

    /// [`DetectConfig::build`], with the access chain's roles and window from `watch`.
    pub fn build_watching(&self, watch: &AccessWatch) -> Result<Engine, DetectConfigError> {
        let mut rules: Vec<Box<dyn Rule>> = Vec::new();
        let mut watched_roles = Vec::new();
        let several = self.unexpected_role_assumer.len() > 1;
        let mut ids = std::collections::BTreeSet::new();
        for (n, c) in self.unexpected_role_assumer.iter().enumerate() {
            let field = |f: &str| format!("detect.unexpected_role_assumer[{n}].{f}");
            let id = match (&c.id, several) {
                (Some(id), _) => id.clone(),
                (None, false) => "unexpected_role_assumer".to_owned(),
                (None, true) => {
                    return Err(invalid(
                        field("id"),
                        "required when several watch lists are configured",
                    ));
                }
            };
            if !ids.insert(id.clone()) {
                return Err(invalid(field("id"), format!("{id:?} is used twice")));
            }
            if c.roles.is_empty() {
                return Err(invalid(field("roles"), "name at least one role ARN"));
            }
            if c.expected.is_empty() && !c.first_seen {
                return Err(invalid(
                    field("expected"),
                    "name the expected assumers (or set first_seen)",
                ));
            }
            let networks = Networks::parse(&c.expected_cidrs)
                .map_err(|m| invalid(field("expected_cidrs"), m))?;
            watched_roles.extend(c.roles.iter().cloned());
            if !c.enabled {
                continue;
            }
            let learning = c
                .first_seen
                .then(|| micros(c.learning_period.unwrap_or(Duration::from_secs(7 * 86_400))));
            rules.push(Box::new(UnexpectedRoleAssumer::new(
                id,
                Patterns::new(&c.roles),
                Expected::new(&c.expected, networks),
                c.severity.unwrap_or(Severity::High),
                learning,
            )));
        }
        let unattributed = &self.unattributed_db_session;
        let mut access_roles = watched_roles.clone();
        access_roles.extend(watch.roles.iter().cloned());
        if unattributed.enabled && !access_roles.is_empty() {
            let grace = unattributed.grace.unwrap_or(Duration::from_secs(900));
            rules.push(Box::new(UnattributedDbSession::new(
                "unattributed_db_session".into(),
                Patterns::new(&access_roles),
                micros(watch.link_window),
                micros(grace),
                unattributed.severity.unwrap_or(Severity::High),
            )));
        }
        let trust = &self.watched_role_trust_changed;
        if trust.enabled && !access_roles.is_empty() {
            rules.push(Box::new(WatchedRoleTrustChanged::new(
                "watched_role_trust_changed".into(),
                Patterns::new(&access_roles),
                trust.severity.unwrap_or(Severity::High),
            )));
        }
        if self.assume_role_denied.enabled {
            let roles = self
                .assume_role_denied
                .roles
                .clone()
                .unwrap_or(watched_roles);
            rules.push(Box::new(AssumeRoleDenied {
                id: "assume_role_denied".into(),
                roles: Patterns::new(&roles),
                severity: self.assume_role_denied.severity.unwrap_or(Severity::Medium),
            }));
        }
        let drop = &self.mongodb_drop;
        if drop.enabled {
            let any = || Patterns::new(&["*".to_owned()]);
            rules.push(Box::new(MongodbDrop {
                id: "mongodb_drop".into(),
                atypes: drop
                    .atypes
                    .clone()
                    .unwrap_or_else(|| strings(&["dropDatabase", "dropCollection"])),
                exceptions: drop
                    .exceptions
                    .iter()
                    .map(|e| DropException {
                        user: e
                            .user
                            .as_ref()
                            .map_or_else(any, |u| Patterns::new(std::slice::from_ref(u))),
                        ns: e
                            .ns
                            .as_ref()
                            .map_or_else(any, |n| Patterns::new(std::slice::from_ref(n))),
                    })
                    .collect(),
                dedup_window_micros: drop.dedup_window.map(micros),
            }));
        }
        let change = &self.mongodb_user_change;
        if change.enabled {
            rules.push(Box::new(MongodbUserChange {
                id: "mongodb_user_change".into(),
                atypes: change
                    .atypes
                    .clone()
                    .unwrap_or_else(|| strings(USER_CHANGE_ATYPES)),
                privileged_roles: Patterns::new(
                    &change
                        .privileged_roles
                        .clone()
                        .unwrap_or_else(|| strings(PRIVILEGED_ROLES)),
                ),
                dedup_window_micros: change.dedup_window.map(micros),
            }));
        }
        if let Some(c) = self.mongodb_auth_failures.as_ref().filter(|c| c.enabled) {
            let threshold = c.threshold.unwrap_or(10);
            if threshold == 0 {
                return Err(invalid(
                    "detect.mongodb_auth_failures.threshold",
                    "must be at least 1",
                ));
            }
            let window = c.window.unwrap_or(Duration::from_secs(300));
            if window.is_zero() {
                return Err(invalid(
                    "detect.mongodb_auth_failures.window",
                    "must be more than zero",
                ));
            }
            rules.push(Box::new(MongodbAuthFailures::new(
                "mongodb_auth_failures".into(),
                threshold,
                micros(window),
            )));
        }
        if let Some(c) = self
            .mongodb_unexpected_network
            .as_ref()
            .filter(|c| c.enabled)
        {
            let allowed = Networks::parse(&c.allowed_cidrs)
                .map_err(|m| invalid("detect.mongodb_unexpected_network.allowed_cidrs", m))?;
            if allowed.is_empty() {
                return Err(invalid(
                    "detect.mongodb_unexpected_network.allowed_cidrs",
                    "name at least one network",
                ));
            }
            let window = c.dedup_window.unwrap_or(Duration::from_secs(86_400));
            if window.is_zero() {
                return Err(invalid(
                    "detect.mongodb_unexpected_network.dedup_window",
                    "must be more than zero",
                ));
            }
            rules.push(Box::new(MongodbUnexpectedNetwork {
                id: "mongodb_unexpected_network".into(),
                allowed,
                dedup_window_micros: micros(window),
            }));
        }
        Ok(Engine::new(rules))
    }
}
