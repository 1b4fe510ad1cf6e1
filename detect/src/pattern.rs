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
