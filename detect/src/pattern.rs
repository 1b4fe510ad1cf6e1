//! ARN and name patterns (`*` and `?` wildcards) and CIDR sets.

use std::net::IpAddr;

use ipnet::IpNet;
use wildmatch::WildMatch;

/// A list of wildcard patterns; matches when any does.
#[derive(Debug, Clone, Default)]
pub struct Patterns {
    patterns: Vec<WildMatch>,
    sources: Vec<String>,
}

impl Patterns {
    pub fn new(sources: &[String]) -> Self {
        Patterns {
            patterns: sources.iter().map(|s| WildMatch::new(s)).collect(),
            sources: sources.to_vec(),
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(text))
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as written.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// The [`role_key`] of each pattern without wildcards (a role named whole, path or not).
    pub fn literal_role_keys(&self) -> std::collections::BTreeSet<String> {
        self.sources
            .iter()
            .filter(|p| !p.contains(['*', '?']))
            .filter_map(|p| role_key(p))
            .collect()
    }
}

/// The role an ARN names, as `account:name` (paths dropped: a `MONGODB-AWS` user and an
/// `UpdateAssumeRolePolicy` record carry none).
pub fn role_key(arn: &str) -> Option<String> {
    let account = arn.split(':').nth(4).filter(|a| !a.is_empty())?;
    let (_, name) = arn.rsplit_once('/')?;
    Some(format!("{account}:{name}"))
}

/// A set of networks.
#[derive(Debug, Clone, Default)]
pub struct Networks(Vec<IpNet>);

impl Networks {
    /// Parses CIDRs (a bare address is a /32 or /128); the error names the bad entry.
    pub fn parse(cidrs: &[String]) -> Result<Self, String> {
        cidrs
            .iter()
            .map(|c| {
                c.parse::<IpNet>()
                    .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{c:?} is not a CIDR like 10.0.0.0/16"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Networks)
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
