//! `auditlake sample generate`: a day of realistic CloudTrail and Atlas audit objects with a
//! story in it, in the real key layouts.
//!
//! The story (account 111122223333, day 2026-11-01 UTC):
//! - the `orders-api-lambda` execution role assumes `mongo-atlas-access` every five minutes and
//!   then authenticates to the `orders-prod` cluster with MONGODB-AWS from the app subnet;
//! - the cross-account `ci-deployer` role (444455556666) assumes it five times (two CloudTrail
//!   events sharing a `sharedEventID`, one in each account's log) and connects over the VPN
//!   after four of them;
//! - every MONGODB-AWS login is preceded by the `GetCallerIdentity` that Atlas sends to STS
//!   with the client's signature, recorded under the session's temporary key;
//! - the role's trust policy is set at 08:02 (the Lambda role, and the CI account with an
//!   external id) and widened at 14:05 to the IAM user `alice`, who assumes it at 14:12,
//!   unexpectedly, and connects from outside the networks; `bob` tries and is refused;
//! - a second role, `mongo-atlas-readonly`, is created for the Lambda and never used;
//! - at 21:07 a session of the role logs in with a temporary key that no assumption in the
//!   trail issued;
//! - a `dropDatabase` and a `createUser` granting `root`, by a break-glass user;
//! - a burst of 30 failed logins from one IP;
//! - background API calls and database sessions of a SCRAM user, five events CloudTrail
//!   delivers twice, events delivered late, digest files, Atlas's setup test object, and three
//!   malformed audit lines.
//!
//! Output is deterministic for a seed. `MANIFEST.json` at the root gives the exact counts a
//! correct ingest must produce (it is itself an unrecognised object, and counted as such).
//!
//! `records` builds the CloudTrail records and audit lines, `story` places them in the day.

mod records;
mod story;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use serde_json::{Value, json};

/// Account that owns the database role.
pub const ACCOUNT: &str = "111122223333";
/// Account of the CI pipeline.
pub const CI_ACCOUNT: &str = "444455556666";
/// The watched database access role.
pub const MONGO_ROLE: &str = "arn:aws:iam::111122223333:role/mongo-atlas-access";
/// The Lambda execution role expected to assume it.
pub const LAMBDA_ROLE: &str = "arn:aws:iam::111122223333:role/service-role/orders-api-lambda";
/// The CI role expected to assume it.
pub const CI_ROLE: &str = "arn:aws:iam::444455556666:role/ci-deployer";
/// The role created for the Lambda and never assumed.
pub const READONLY_ROLE: &str = "arn:aws:iam::111122223333:role/mongo-atlas-readonly";
/// The IAM user who should not assume it.
pub const UNEXPECTED_USER: &str = "arn:aws:iam::111122223333:user/alice";
/// The IAM user refused when trying to assume it.
pub const DENIED_USER: &str = "arn:aws:iam::111122223333:user/bob";
/// IP of the failed-login burst.
pub const BURST_IP: &str = "203.0.113.77";
const REGION: &str = "us-east-1";
const CLUSTER: &str = "orders-prod";
const HOSTS: [&str; 2] = [
    "orders-prod-shard-00-00.x7k2p.mongodb.net",
    "orders-prod-shard-00-01.x7k2p.mongodb.net",
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct SampleOptions {
    pub seed: u64,
    /// Total CloudTrail records wanted (unique events); the story's are included.
    pub cloudtrail_records: usize,
    /// Total audit lines wanted (valid ones); the story's are included.
    pub audit_lines: usize,
    /// The day the events happen on (UTC).
    pub day: NaiveDate,
    /// Average bytes of JSON per background CloudTrail record: request parameters and response
    /// elements grow (by a number of items varying from record to record) until the records
    /// average about this size. `None`: their natural size, about 0.9 KB.
    pub cloudtrail_record_bytes: Option<usize>,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            seed: 20261101,
            cloudtrail_records: 2_000,
            audit_lines: 4_000,
            day: SAMPLE_DAY,
            cloudtrail_record_bytes: None,
        }
    }
}

/// Bytes of one item [`Generator::padding`] adds, about (a third filters, the rest instances).
const PADDING_ITEM_BYTES: f64 = 190.0;
/// Bytes of a background record without padding, about.
const BACKGROUND_RECORD_BYTES: f64 = 940.0;

/// Exact counts of what was written, as a correct ingest must find them.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Manifest {
    /// Unique CloudTrail events (rows of `cloudtrail`).
    pub cloudtrail_rows: usize,
    /// Events written a second time in another file (dropped as duplicates).
    pub cloudtrail_duplicates: usize,
    /// Valid audit lines (rows of `mongodb_audit`).
    pub mongodb_audit_rows: usize,
    /// Malformed lines (rows of `rejected`).
    pub rejected_rows: usize,
    pub cloudtrail_objects: usize,
    pub digest_objects: usize,
    pub atlas_audit_objects: usize,
    /// Objects matching no layout (Atlas's test object and this manifest).
    pub unrecognized_objects: usize,
    /// `AssumeRole` events into the database role, per caller.
    pub assume_role_by_lambda: usize,
    pub assume_role_by_ci: usize,
    pub assume_role_by_unexpected: usize,
    /// Refused `AssumeRole` attempts into the database role.
    pub assume_role_denied: usize,
    pub failed_logins_in_burst: usize,
    /// Database connections authenticated with MONGODB-AWS, each preceded by a
    /// `GetCallerIdentity` in the trail.
    pub mongodb_aws_sessions: usize,
    /// Of those, the connections whose key no assumption in the trail issued.
    pub unattributed_sessions: usize,
    /// Successful assumptions of the role that no connection followed.
    pub assumptions_without_session: usize,
    /// `CreateRole` and `UpdateAssumeRolePolicy` events.
    pub trust_policy_events: usize,
}

/// Errors writing the sample.
#[derive(Debug, thiserror::Error)]
#[error("writing sample file {path}: {source}")]
pub struct SampleError {
    path: String,
    #[source]
    source: std::io::Error,
}

struct CtEvent {
    account: &'static str,
    time: DateTime<Utc>,
    /// Extra delivery delay (late files).
    delay_minutes: i64,
    record: Value,
}

struct AuditLine {
    host: usize,
    time: DateTime<Utc>,
    line: String,
}

struct Generator {
    rng: StdRng,
    /// Items of padding per background CloudTrail record, on average.
    padding_items: f64,
    day: DateTime<Utc>,
    ct: Vec<CtEvent>,
    audit: Vec<AuditLine>,
    manifest: Manifest,
}

/// The day of the bundled sample.
pub const SAMPLE_DAY: NaiveDate = match NaiveDate::from_ymd_opt(2026, 11, 1) {
    Some(day) => day,
    None => NaiveDate::MIN,
};

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SampleError> {
    let err = |source| SampleError {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    std::fs::write(path, bytes).map_err(err)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// Writes the sample under `out` and returns its manifest.
pub fn generate(out: &Path, options: &SampleOptions) -> Result<Manifest, SampleError> {
    let mut g = Generator {
        rng: StdRng::seed_from_u64(options.seed),
        padding_items: options.cloudtrail_record_bytes.map_or(0.0, |b| {
            (b as f64 - BACKGROUND_RECORD_BYTES).max(0.0) / PADDING_ITEM_BYTES
        }),
        day: options.day.and_time(NaiveTime::MIN).and_utc(),
        ct: Vec::new(),
        audit: Vec::new(),
        manifest: Manifest::default(),
    };
    g.story();
    let ct_wanted = options
        .cloudtrail_records
        .saturating_sub(g.manifest.cloudtrail_rows);
    g.background_ct(ct_wanted);
    let audit_wanted = options
        .audit_lines
        .saturating_sub(g.manifest.mongodb_audit_rows);
    g.background_audit(audit_wanted);

    write_cloudtrail(out, &mut g)?;
    write_atlas(out, &mut g)?;

    // Atlas writes a test object when push export is set up; it matches no layout.
    write_file(
        &out.join("atlas/atlas-push-export-test-object.txt"),
        b"This is a test object written by MongoDB Atlas.\n",
    )?;
    g.manifest.unrecognized_objects += 2; // the test object and MANIFEST.json
    let manifest = g.manifest.clone();
    let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    write_file(&out.join("MANIFEST.json"), &text)?;
    Ok(manifest)
}

fn write_cloudtrail(out: &Path, g: &mut Generator) -> Result<(), SampleError> {
    // Five background events are delivered twice, in a later file.
    let mut duplicates = Vec::new();
    for i in 0..5.min(g.ct.len()) {
        let index = (i * 97 + 13) % g.ct.len();
        let e = &g.ct[index];
        duplicates.push(CtEvent {
            account: e.account,
            time: e.time,
            delay_minutes: 30,
            record: e.record.clone(),
        });
    }
    g.manifest.cloudtrail_duplicates = duplicates.len();
    let mut events = std::mem::take(&mut g.ct);
    events.extend(duplicates);

    // Files every five minutes per account, delivered ~5 minutes after their window.
    let mut files: BTreeMap<(&str, i64), Vec<Value>> = BTreeMap::new();
    for e in events {
        let slot = (e.time - g.day).num_minutes().div_euclid(5) + 1 + e.delay_minutes / 5;
        files.entry((e.account, slot)).or_default().push(e.record);
    }
    let base = out.join("cloudtrail");
    for ((account, slot), records) in files {
        let delivered = g.day + Duration::minutes(slot * 5);
        let dir = base.join(format!(
            "AWSLogs/{account}/CloudTrail/{REGION}/{}",
            delivered.format("%Y/%m/%d")
        ));
        let suffix = g.key_id("");
        let name = format!(
            "{account}_CloudTrail_{REGION}_{}_{suffix}.json.gz",
            delivered.format("%Y%m%dT%H%MZ")
        );
        let body = json!({"Records": records}).to_string();
        write_file(&dir.join(name), &gzip(body.as_bytes()))?;
        g.manifest.cloudtrail_objects += 1;
    }
    // Digest files every six hours.
    for hour in [0, 6, 12, 18] {
        let start = g.day + Duration::hours(hour);
        let end = start + Duration::hours(6);
        let dir = base.join(format!(
            "AWSLogs/{ACCOUNT}/CloudTrail-Digest/{REGION}/{}",
            start.format("%Y/%m/%d")
        ));
        let name = format!(
            "{ACCOUNT}_CloudTrail-Digest_{REGION}_org-trail_{REGION}_{}.json.gz",
            end.format("%Y%m%dT%H%M%SZ")
        );
        let body = json!({"awsAccountId": ACCOUNT, "digestStartTime": ts(start), "digestEndTime": ts(end),
            "digestS3Bucket": "example-trail-bucket", "digestS3Object": name, "digestPublicKeyFingerprint": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "digestSignatureAlgorithm": "SHA256withRSA", "newestEventTime": ts(end), "oldestEventTime": ts(start),
            "previousDigestS3Bucket": null, "previousDigestS3Object": null, "previousDigestHashValue": null,
            "previousDigestHashAlgorithm": null, "previousDigestSignature": null, "logFiles": []})
        .to_string();
        write_file(&dir.join(name), &gzip(body.as_bytes()))?;
        g.manifest.digest_objects += 1;
    }
    Ok(())
}

fn write_atlas(out: &Path, g: &mut Generator) -> Result<(), SampleError> {
    let mut audit = std::mem::take(&mut g.audit);
    audit.sort_by_key(|l| l.time);
    let mut objects: BTreeMap<(usize, i64), Vec<String>> = BTreeMap::new();
    for line in audit {
        let slot = (line.time - g.day).num_minutes().div_euclid(5);
        objects
            .entry((line.host, slot))
            .or_default()
            .push(line.line);
    }
    // Three malformed lines, in three different objects.
    let malformed = [
        "{\"atype\":\"authCheck\",\"ts\":{\"$date\":\"2026-11-01T09:00:00.000+00:00\"},\"param\":{\"command\":\"find\"",
        "this is not JSON at all",
        "{\"note\":\"a JSON line that is no audit message\"}",
    ];
    let keys: Vec<(usize, i64)> = objects.keys().copied().collect();
    for (i, bad) in malformed.iter().enumerate() {
        if let Some(key) = keys.get((i + 1) * keys.len() / 4)
            && let Some(lines) = objects.get_mut(key)
        {
            lines.insert(lines.len() / 2, (*bad).to_owned());
            g.manifest.rejected_rows += 1;
        }
    }
    for ((host, slot), lines) in objects {
        let end = g.day + Duration::minutes((slot + 1) * 5);
        let hostname = HOSTS[host];
        // Host 0 uses the legacy layout with date folders, host 1 the current one.
        let dir: PathBuf = if host == 0 {
            out.join(format!(
                "atlas/{CLUSTER}/{hostname}/mongod-audit/{}",
                end.format("%Y-%m-%d")
            ))
        } else {
            out.join(format!("atlas/{CLUSTER}/{hostname}/mongod-audit"))
        };
        let name = format!("{}-mongod-audit.log", end.timestamp());
        let mut body = lines.join("\n");
        body.push('\n');
        // Atlas may gzip despite the `.log` name: every other object is gzip.
        let bytes = if slot % 2 == 0 {
            gzip(body.as_bytes())
        } else {
            body.into_bytes()
        };
        write_file(&dir.join(name), &bytes)?;
        g.manifest.atlas_audit_objects += 1;
    }
    Ok(())
}
