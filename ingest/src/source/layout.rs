//! What an object is, from its key alone.
//!
//! CloudTrail: `[prefix/]AWSLogs/[o-org/]<account>/CloudTrail/<region>/YYYY/MM/DD/<file>.json[.gz]`
//! (digests under `CloudTrail-Digest/`, Insights under `CloudTrail-Insight/`). Atlas push export:
//! `[prefix/]<cluster>/<hostname>/<logType>/[YYYY-MM-DD/]<file>`, where the log type is `mongod`,
//! `mongos` or an audit type (any spelling containing `audit`). Everything else is
//! [`ObjectKind::Unrecognized`] and is counted, not decoded.

use std::sync::LazyLock;

use regex::Regex;

use crate::decode::{AtlasContext, Format};

/// The kind of an object, as its key tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectKind {
    /// A CloudTrail log file.
    CloudTrailLog,
    /// A CloudTrail digest file (hashes of delivered log files); not records.
    CloudTrailDigest,
    /// A CloudTrail Insights file; not management or data events.
    CloudTrailInsight,
    /// An Atlas audit log object.
    AtlasAudit(AtlasContext),
    /// An Atlas server (non-audit) log object.
    AtlasServerLog,
    /// A key that matches no known layout (such as Atlas's setup test object).
    Unrecognized,
}

impl ObjectKind {
    /// The decoder for this kind, if its records go into the lake.
    pub fn format(&self) -> Option<Format> {
        match self {
            ObjectKind::CloudTrailLog => Some(Format::CloudTrail),
            ObjectKind::AtlasAudit(_) => Some(Format::MongoAudit),
            _ => None,
        }
    }

    /// A short label for counters and the ledger.
    pub fn label(&self) -> &'static str {
        match self {
            ObjectKind::CloudTrailLog => "cloudtrail",
            ObjectKind::CloudTrailDigest => "cloudtrail_digest",
            ObjectKind::CloudTrailInsight => "cloudtrail_insight",
            ObjectKind::AtlasAudit(_) => "atlas_audit",
            ObjectKind::AtlasServerLog => "atlas_server_log",
            ObjectKind::Unrecognized => "unrecognized",
        }
    }
}

static CLOUDTRAIL_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:^|/)AWSLogs/(?:o-[a-z0-9]+/)?\d{12}/(CloudTrail|CloudTrail-Digest|CloudTrail-Insight)/[a-z0-9-]+/\d{4}/\d{2}/\d{2}/[^/]+\.json(?:\.gz)?$",
    )
    .expect("valid CloudTrail key pattern")
});

/// Which objects a source expects, as configured (`kind = ...`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedKind {
    /// Whatever the key layout says.
    #[default]
    Auto,
    /// CloudTrail only; `.json`/`.json.gz` keys outside the CloudTrail layout are read as
    /// CloudTrail logs too (copied or re-exported trails).
    Cloudtrail,
    /// Atlas push export only.
    AtlasAudit,
}

/// Classifies `key` as [`classify`] does, then keeps only what `expected` allows: the other
/// family becomes [`ObjectKind::Unrecognized`] (counted and skipped).
pub fn classify_expected(
    key: &str,
    atlas_project: Option<&str>,
    expected: ExpectedKind,
) -> ObjectKind {
    let kind = classify(key, atlas_project);
    let is_cloudtrail = matches!(
        kind,
        ObjectKind::CloudTrailLog | ObjectKind::CloudTrailDigest | ObjectKind::CloudTrailInsight
    );
    match expected {
        ExpectedKind::Auto => kind,
        ExpectedKind::Cloudtrail if is_cloudtrail => kind,
        ExpectedKind::Cloudtrail
            if kind == ObjectKind::Unrecognized
                && (key.ends_with(".json.gz") || key.ends_with(".json")) =>
        {
            ObjectKind::CloudTrailLog
        }
        ExpectedKind::AtlasAudit if !is_cloudtrail => kind,
        _ => ObjectKind::Unrecognized,
    }
}

static ATLAS_DATE_FOLDER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d{4}-\d{2}-\d{2}$").expect("valid date pattern"));

/// Classifies a key (relative to the source root or bucket, `/`-separated).
pub fn classify(key: &str, atlas_project: Option<&str>) -> ObjectKind {
    if let Some(captures) = CLOUDTRAIL_KEY.captures(key) {
        return match &captures[1] {
            "CloudTrail" => ObjectKind::CloudTrailLog,
            "CloudTrail-Digest" => ObjectKind::CloudTrailDigest,
            _ => ObjectKind::CloudTrailInsight,
        };
    }
    classify_atlas(key, atlas_project).unwrap_or(ObjectKind::Unrecognized)
}

fn classify_atlas(key: &str, atlas_project: Option<&str>) -> Option<ObjectKind> {
    let segments: Vec<&str> = key.split('/').collect();
    let file = *segments.last()?;
    if file.is_empty() || segments.len() < 4 {
        return None;
    }
    // The log type folder is the file's parent, or its grandparent under a date folder.
    let parent = segments.len() - 2;
    let log_type_at = if ATLAS_DATE_FOLDER.is_match(segments[parent]) {
        parent.checked_sub(1)?
    } else {
        parent
    };
    if log_type_at < 2 {
        return None;
    }
    let log_type = segments[log_type_at];
    let lower = log_type.to_ascii_lowercase();
    let audit = lower.contains("audit");
    if !audit && lower != "mongod" && lower != "mongos" {
        return None;
    }
    let hostname = segments[log_type_at - 1];
    let cluster = segments[log_type_at - 2];
    if hostname.is_empty() || cluster.is_empty() {
        return None;
    }
    if !audit {
        return Some(ObjectKind::AtlasServerLog);
    }
    Some(ObjectKind::AtlasAudit(AtlasContext {
        project: atlas_project.map(str::to_owned),
        cluster: cluster.to_owned(),
        hostname: hostname.to_owned(),
        log_type: log_type.to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudtrail_keys() {
        let log = "logs/AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/01/111122223333_CloudTrail_us-east-1_20261101T0005Z_AbCdEfGhIjKlMnOp.json.gz";
        assert_eq!(classify(log, None), ObjectKind::CloudTrailLog);
        let org = "AWSLogs/o-abc123def4/111122223333/CloudTrail/eu-west-1/2026/11/01/x.json.gz";
        assert_eq!(classify(org, None), ObjectKind::CloudTrailLog);
        let digest = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/01/111122223333_CloudTrail-Digest_us-east-1_trail_us-east-1_20261101T010000Z.json.gz";
        assert_eq!(classify(digest, None), ObjectKind::CloudTrailDigest);
        let insight = "AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2026/11/01/a.json.gz";
        assert_eq!(classify(insight, None), ObjectKind::CloudTrailInsight);
        assert_eq!(
            classify(
                "AWSLogs/1111/CloudTrail/us-east-1/2026/11/01/a.json.gz",
                None
            ),
            ObjectKind::Unrecognized
        );
    }

    #[test]
    fn atlas_keys_in_both_layouts() {
        let ctx = |log_type: &str| {
            ObjectKind::AtlasAudit(AtlasContext {
                project: Some("p".into()),
                cluster: "orders-prod".into(),
                hostname: "orders-prod-shard-00-00.ab1cd.mongodb.net".into(),
                log_type: log_type.into(),
            })
        };
        let legacy = "atlas/orders-prod/orders-prod-shard-00-00.ab1cd.mongodb.net/mongod-audit/2026-11-01/1761955200-mongod-audit.log";
        assert_eq!(classify(legacy, Some("p")), ctx("mongod-audit"));
        let current = "orders-prod/orders-prod-shard-00-00.ab1cd.mongodb.net/MONGOD-AUDIT-LOG/1761955200-mongod-audit.log.gz";
        assert_eq!(classify(current, Some("p")), ctx("MONGOD-AUDIT-LOG"));
        let server = "orders-prod/host/mongod/2026-11-01/1-mongod.log";
        assert_eq!(classify(server, None), ObjectKind::AtlasServerLog);
    }

    #[test]
    fn expected_kind_keeps_one_family() {
        let trail = "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/01/a.json.gz";
        let atlas = "c/h/mongod-audit/1761955200-mongod-audit.log";
        let copied = "exports/trail-2026-11-01.json.gz";
        assert_eq!(
            classify_expected(trail, None, ExpectedKind::AtlasAudit),
            ObjectKind::Unrecognized
        );
        assert_eq!(
            classify_expected(atlas, None, ExpectedKind::Cloudtrail),
            ObjectKind::Unrecognized
        );
        assert_eq!(
            classify_expected(copied, None, ExpectedKind::Cloudtrail),
            ObjectKind::CloudTrailLog
        );
        assert_eq!(
            classify_expected(copied, None, ExpectedKind::Auto),
            ObjectKind::Unrecognized
        );
        assert!(matches!(
            classify_expected(atlas, None, ExpectedKind::AtlasAudit),
            ObjectKind::AtlasAudit(_)
        ));
    }

    #[test]
    fn unrecognized_keys() {
        for key in [
            "",
            "README.md",
            "atlas-test-object",
            "test/mongod-audit/x.log",
            "a/b/c/d.log",
        ] {
            assert_eq!(classify(key, None), ObjectKind::Unrecognized, "{key}");
        }
    }
}
