//! `[access]`: how the access chain links database logins to role assumptions, and which roles
//! it follows besides those the rules watch.

use std::time::Duration;

use serde::Deserialize;

use auditlake_detect::config::DetectConfig;
use auditlake_query::access::AccessSettings;

use super::{ConfigError, invalid};

/// Longest `access.link_window`: a `GetCallerIdentity` further from its login than this is no
/// evidence of it.
const MAX_LINK_WINDOW: Duration = Duration::from_secs(3600);

/// `[access]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// How far from a `MONGODB-AWS` login its `GetCallerIdentity` may be. Default `30s`.
    #[serde(default, with = "humantime_serde")]
    pub link_window: Option<Duration>,
    /// Role ARNs (`*`, `?` wildcards) whose assumptions the access chain lists even when no
    /// session followed, besides the roles of `[[detect.unexpected_role_assumer]]`.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl AccessConfig {
    /// Checks `[access]`; errors name `access.<key>`. The watched roles are these and those of
    /// the enabled `unexpected_role_assumer` rules.
    pub(super) fn validate(&self, detect: &DetectConfig) -> Result<AccessSettings, ConfigError> {
        let link_window = self
            .link_window
            .unwrap_or(auditlake_query::access::DEFAULT_LINK_WINDOW);
        if link_window.is_zero() || link_window > MAX_LINK_WINDOW {
            return Err(invalid(
                "access.link_window",
                "must be more than zero and at most 1h",
            ));
        }
        for (n, role) in self.roles.iter().enumerate() {
            if !role.starts_with("arn:") || !role.contains(":role/") {
                return Err(invalid(
                    format!("access.roles[{n}]"),
                    format!("{role:?} is not a role ARN (arn:aws:iam::<account>:role/<name>)"),
                ));
            }
        }
        let mut watched_roles = self.roles.clone();
        for rule in detect.unexpected_role_assumer.iter().filter(|r| r.enabled) {
            watched_roles.extend(rule.roles.iter().cloned());
        }
        watched_roles.sort();
        watched_roles.dedup();
        Ok(AccessSettings {
            link_window,
            watched_roles,
        })
    }
}
