//! `auditlake sample generate`: a day of realistic CloudTrail and Atlas audit objects with a
//! story in it, in the real key layouts.
//!
//! The story (account 111122223333, day 2026-11-01 UTC):
//! - the `orders-api-lambda` execution role assumes `mongo-atlas-access` every five minutes and
//!   then authenticates to the `orders-prod` cluster with MONGODB-AWS from the app subnet;
//! - the cross-account `ci-deployer` role (444455556666) assumes it four times (two CloudTrail
//!   events sharing a `sharedEventID`, one in each account's log) and connects over the VPN;
//! - the IAM user `alice` assumes it once, unexpectedly, and connects from outside the networks;
//!   `bob` tries and is refused;
//! - a `dropDatabase` and a `createUser` granting `root`, by a break-glass user;
//! - a burst of 30 failed logins from one IP;
//! - background API calls, five events CloudTrail delivers twice, events delivered late, digest
//!   files, Atlas's setup test object, and three malformed audit lines.
//!
//! Output is deterministic for a seed. `MANIFEST.json` at the root gives the exact counts a
//! correct ingest must produce (it is itself an unrecognised object, and counted as such).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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

impl Generator {
    fn id(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.random())
            .into_uuid()
            .to_string()
    }

    fn key_id(&mut self, prefix: &str) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let tail: String = (0..16)
            .map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        format!("{prefix}{tail}")
    }

    fn at(&mut self, minute: i64) -> DateTime<Utc> {
        self.day
            + Duration::minutes(minute)
            + Duration::milliseconds(self.rng.random_range(0..59_000))
    }

    fn conn_uuid(&mut self) -> Value {
        use base64::Engine as _;
        let bytes: [u8; 16] = self.rng.random();
        json!({"$binary": base64::engine::general_purpose::STANDARD.encode(bytes), "$type": "04"})
    }

    fn push_audit(&mut self, host: usize, time: DateTime<Utc>, mut message: Value) {
        let date = time.format("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string();
        message["ts"] = json!({"$date": date});
        self.audit.push(AuditLine {
            host,
            time,
            line: message.to_string(),
        });
        self.manifest.mongodb_audit_rows += 1;
    }

    fn push_ct(&mut self, account: &'static str, time: DateTime<Utc>, record: Value) {
        self.ct.push(CtEvent {
            account,
            time,
            delay_minutes: 0,
            record,
        });
        self.manifest.cloudtrail_rows += 1;
    }

    fn assume_role(
        &mut self,
        time: DateTime<Utc>,
        identity: Value,
        source_ip: &str,
        agent: &str,
        session: &str,
        recipient: &str,
    ) -> Value {
        let key = self.key_id("ASIA");
        let role_id = self.key_id("AROA");
        let expiration = (time + Duration::hours(1))
            .format("%b %-d, %Y %-I:%M:%S %p")
            .to_string();
        json!({
            "eventVersion": "1.08",
            "userIdentity": identity,
            "eventTime": ts(time),
            "eventSource": "sts.amazonaws.com",
            "eventName": "AssumeRole",
            "awsRegion": REGION,
            "sourceIPAddress": source_ip,
            "userAgent": agent,
            "requestParameters": {"roleArn": MONGO_ROLE, "roleSessionName": session, "durationSeconds": 3600},
            "responseElements": {
                "credentials": {"accessKeyId": key, "sessionToken": "IQoJb3JpZ2luX2VjEXAMPLETOKEN//////////wEaCXVzLWVhc3QtMSJHMEUCIQD", "expiration": expiration},
                "assumedRoleUser": {"assumedRoleId": format!("{role_id}:{session}"), "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/mongo-atlas-access/{session}")}
            },
            "requestID": self.id(),
            "eventID": self.id(),
            "readOnly": true,
            "resources": [{"accountId": ACCOUNT, "type": "AWS::IAM::Role", "ARN": MONGO_ROLE}],
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": recipient,
            "eventCategory": "Management",
            "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": "sts.us-east-1.amazonaws.com"}
        })
    }

    fn role_session(
        &mut self,
        account: &str,
        role_path: &str,
        role_name: &str,
        session: &str,
        time: DateTime<Utc>,
    ) -> Value {
        let principal = self.key_id("AROA");
        json!({
            "type": "AssumedRole",
            "principalId": format!("{principal}:{session}"),
            "arn": format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session}"),
            "accountId": account,
            "accessKeyId": self.key_id("ASIA"),
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "principalId": principal, "arn": format!("arn:aws:iam::{account}:role/{role_path}{role_name}"), "accountId": account, "userName": role_name},
                "attributes": {"creationDate": ts(time - Duration::minutes(3)), "mfaAuthenticated": "false"}
            }
        })
    }

    /// One database connection: authenticate, client metadata, some commands, logout.
    #[allow(clippy::too_many_arguments)]
    fn db_session(
        &mut self,
        host: usize,
        start: DateTime<Utc>,
        user: &str,
        db: &str,
        mechanism: &str,
        ip: &str,
        app: &str,
        commands: usize,
    ) {
        let uuid = self.conn_uuid();
        let port: u16 = self.rng.random_range(32768..61000);
        let local = json!({"ip": "192.168.248.2", "port": 27017});
        let remote = json!({"ip": ip, "port": port});
        let users = json!([{"user": user, "db": db}]);
        let roles = json!([{"role": "readWrite", "db": "orders"}]);
        let mut t = start;
        self.push_audit(host, t, json!({"atype": "authenticate", "ts": null, "uuid": uuid, "local": local, "remote": remote,
            "users": users, "roles": roles, "param": {"user": user, "db": db, "mechanism": mechanism}, "result": 0}));
        t += Duration::milliseconds(15);
        self.push_audit(host, t, json!({"atype": "clientMetadata", "ts": null, "uuid": uuid, "local": local, "remote": remote,
            "users": users, "roles": roles, "param": {"localEndpoint": local, "clientMetadata": {
                "driver": {"name": "nodejs", "version": "6.10.0"}, "os": {"type": "Linux", "architecture": "x64"},
                "platform": "Node.js v20.18.0, LE", "application": {"name": app}}}, "result": 0}));
        for _ in 0..commands {
            t += Duration::milliseconds(self.rng.random_range(5..400));
            let command = ["find", "insert", "update", "aggregate"][self.rng.random_range(0..4)];
            self.push_audit(host, t, json!({"atype": "authCheck", "ts": null, "uuid": uuid, "local": local, "remote": remote,
                "users": users, "roles": roles, "param": {"command": command, "ns": "orders.orders", "args": {
                    command: "orders", "$db": "orders", "lsid": {"id": {"$uuid": "0b9d2a4c-3f0e-4c8e-9b7a-2f0d9e6c1a11"}},
                    "$clusterTime": {"clusterTime": {"$timestamp": {"t": start.timestamp(), "i": 1}}}}}, "result": 0}));
        }
        t += Duration::milliseconds(50);
        self.push_audit(host, t, json!({"atype": "logout", "ts": null, "uuid": uuid, "local": local, "remote": remote,
            "users": [], "roles": [], "param": {"reason": "Client has disconnected", "initialUsers": users, "updatedUsers": []}, "result": 0}));
    }

    fn story(&mut self) {
        // The Lambda, every five minutes.
        for slot in 0..288 {
            let time = self.at(slot * 5);
            let session = format!("orders-api-{slot:03}");
            let identity = self.role_session(
                ACCOUNT,
                "service-role/",
                "orders-api-lambda",
                "orders-api",
                time,
            );
            let record = self.assume_role(time, identity, "10.20.3.15", "aws-sdk-nodejs/3.693.0 ua/2.1 os/linux lang/js md/nodejs#20.18.0 exec-env/AWS_Lambda_nodejs20.x", &session, ACCOUNT);
            self.push_ct(ACCOUNT, time, record);
            self.manifest.assume_role_by_lambda += 1;
            let commands = self.rng.random_range(1..5);
            self.db_session(
                slot as usize % 2,
                time + Duration::seconds(1),
                MONGO_ROLE,
                "$external",
                "MONGODB-AWS",
                "10.20.3.15",
                "orders-api",
                commands,
            );
        }
        // The CI deployer, across accounts: one event in each account's log, one sharedEventID.
        for minute in [360, 630, 885, 1160] {
            let time = self.at(minute);
            let session = format!("ci-deploy-{minute}");
            let shared = self.id();
            let caller = self.role_session(CI_ACCOUNT, "", "ci-deployer", "gha-run", time);
            let mut caller_copy = self.assume_role(
                time,
                caller,
                "52.94.76.10",
                "aws-cli/2.22.4 md/command#sts.assume-role",
                &session,
                CI_ACCOUNT,
            );
            caller_copy["sharedEventID"] = json!(shared);
            self.push_ct(CI_ACCOUNT, time, caller_copy.clone());
            let mut owner_copy = caller_copy;
            let principal = self.key_id("AROA");
            owner_copy["userIdentity"] = json!({"type": "AWSAccount", "principalId": format!("{principal}:gha-run"), "accountId": CI_ACCOUNT});
            owner_copy["eventID"] = json!(self.id());
            owner_copy["recipientAccountId"] = json!(ACCOUNT);
            self.push_ct(ACCOUNT, time, owner_copy);
            self.manifest.assume_role_by_ci += 2;
            self.db_session(
                0,
                time + Duration::seconds(4),
                MONGO_ROLE,
                "$external",
                "MONGODB-AWS",
                "100.64.10.20",
                "migrations",
                3,
            );
        }
        // The unexpected principal.
        let time = self.day + Duration::minutes(14 * 60 + 12) + Duration::seconds(7);
        let identity = json!({"type": "IAMUser", "principalId": "AIDAEXAMPLEALICE0001", "arn": UNEXPECTED_USER,
            "accountId": ACCOUNT, "accessKeyId": "AKIAEXAMPLEALICE0001", "userName": "alice"});
        let record = self.assume_role(
            time,
            identity,
            "198.51.100.23",
            "aws-cli/2.22.4 md/command#sts.assume-role",
            "alice-debug",
            ACCOUNT,
        );
        self.push_ct(ACCOUNT, time, record);
        self.manifest.assume_role_by_unexpected += 1;
        // Bob tries too, and is refused.
        let bob_time = self.day + Duration::minutes(9 * 60 + 41) + Duration::seconds(30);
        let bob = json!({"type": "IAMUser", "principalId": "AIDAEXAMPLEBOB000001", "arn": DENIED_USER,
            "accountId": ACCOUNT, "accessKeyId": "AKIAEXAMPLEBOB000001", "userName": "bob"});
        let mut record = self.assume_role(
            bob_time,
            bob,
            "198.51.100.80",
            "aws-cli/2.22.4 md/command#sts.assume-role",
            "bob",
            ACCOUNT,
        );
        record["errorCode"] = json!("AccessDenied");
        record["errorMessage"] = json!(format!(
            "User: {DENIED_USER} is not authorized to perform: sts:AssumeRole on resource: {MONGO_ROLE}"
        ));
        if let Some(r) = record.as_object_mut() {
            r.remove("responseElements");
        }
        self.push_ct(ACCOUNT, bob_time, record);
        self.manifest.assume_role_denied += 1;
        self.db_session(
            1,
            time + Duration::seconds(40),
            MONGO_ROLE,
            "$external",
            "MONGODB-AWS",
            "198.51.100.23",
            "MongoDB Compass",
            6,
        );

        // Break-glass changes.
        let dba = json!([{"user": "dba-breakglass", "db": "admin"}]);
        let dba_roles = json!([{"role": "root", "db": "admin"}]);
        let local = json!({"ip": "192.168.248.2", "port": 27017});
        let remote = json!({"ip": "100.64.10.31", "port": 51544});
        let uuid = self.conn_uuid();
        let t = self.day + Duration::minutes(16 * 60 + 40);
        self.push_audit(0, t, json!({"atype": "authenticate", "ts": null, "uuid": uuid, "local": local, "remote": remote,
            "users": dba, "roles": dba_roles, "param": {"user": "dba-breakglass", "db": "admin", "mechanism": "SCRAM-SHA-256"}, "result": 0}));
        self.push_audit(0, t + Duration::seconds(20), json!({"atype": "dropDatabase", "ts": null, "uuid": uuid, "local": local,
            "remote": remote, "users": dba, "roles": dba_roles, "param": {"ns": "reporting_tmp"}, "result": 0}));
        self.push_audit(0, t + Duration::minutes(5), json!({"atype": "createUser", "ts": null, "uuid": uuid, "local": local,
            "remote": remote, "users": dba, "roles": dba_roles, "param": {"user": "svc-backup", "db": "admin",
            "customData": {}, "roles": [{"role": "root", "db": "admin"}]}, "result": 0}));

        // Failed-login burst.
        let start = self.day + Duration::minutes(3 * 60 + 17);
        for attempt in 0..30 {
            let uuid = self.conn_uuid();
            let t = start + Duration::seconds(attempt * 3);
            self.push_audit(1, t, json!({"atype": "authenticate", "ts": null, "uuid": uuid, "local": local,
                "remote": {"ip": BURST_IP, "port": 40000 + attempt}, "users": [], "roles": [],
                "param": {"user": "admin", "db": "admin", "mechanism": "SCRAM-SHA-256"}, "result": 18}));
            self.manifest.failed_logins_in_burst += 1;
        }
    }

    fn background_ct(&mut self, count: usize) {
        const CALLS: [(&str, &str, bool); 6] = [
            ("ec2.amazonaws.com", "DescribeInstances", true),
            ("s3.amazonaws.com", "ListBuckets", true),
            ("kms.amazonaws.com", "Decrypt", true),
            ("lambda.amazonaws.com", "Invoke", false),
            ("logs.amazonaws.com", "CreateLogStream", false),
            ("iam.amazonaws.com", "GetRole", true),
        ];
        for _ in 0..count {
            let minute = self.rng.random_range(0..1440);
            let time = self.at(minute);
            let (source, name, read_only) = CALLS[self.rng.random_range(0..CALLS.len())];
            let identity = if source == "kms.amazonaws.com" {
                json!({"type": "AWSService", "invokedBy": "lambda.amazonaws.com"})
            } else {
                self.role_session(ACCOUNT, "", "platform-ops", "ops", time)
            };
            let (request, response) = self.padding();
            let record = json!({
                "eventVersion": "1.09", "userIdentity": identity, "eventTime": ts(time), "eventSource": source,
                "eventName": name, "awsRegion": REGION, "sourceIPAddress": "10.20.7.44",
                "userAgent": "aws-sdk-go-v2/1.32.2 os/linux lang/go#1.23.2", "requestParameters": request,
                "responseElements": response, "requestID": self.id(), "eventID": self.id(), "readOnly": read_only,
                "eventType": "AwsApiCall", "managementEvent": true, "recipientAccountId": ACCOUNT, "eventCategory": "Management"
            });
            self.push_ct(ACCOUNT, time, record);
            // Some events arrive in a later file than their time suggests.
            if self.rng.random_range(0..20) == 0
                && let Some(last) = self.ct.last_mut()
            {
                last.delay_minutes = 15;
            }
        }
    }

    /// Request parameters and response elements of a background record: a page size alone,
    /// or (with a record size asked for) filters and the instances they found, between none and
    /// twice the average number of items.
    fn padding(&mut self) -> (Value, Value) {
        if self.padding_items <= 0.0 {
            return (json!({"maxResults": 50}), Value::Null);
        }
        // Uniform over 0..=2n, whose mean is n: a fractional mean takes the two nearest n.
        let mean = self.padding_items.floor() as usize
            + usize::from(self.rng.random_bool(self.padding_items.fract()));
        let items = self.rng.random_range(0..=2 * mean);
        let filters = items / 3;
        let request = json!({
            "maxResults": 50,
            "filterSet": {"items": (0..filters).map(|n| json!({
                "name": format!("tag:team-{n}"),
                "valueSet": {"items": [{"value": format!("platform-{}", self.rng.random_range(0..1000))}]}
            })).collect::<Vec<_>>()},
        });
        let instances: Vec<Value> = (0..items - filters)
            .map(|_| {
                json!({
                    "instanceId": format!("i-{:017x}", self.rng.random::<u64>() >> 4),
                    "imageId": "ami-0abcdef1234567890",
                    "instanceState": {"code": 16, "name": "running"},
                    "privateIpAddress": format!("10.20.{}.{}", self.rng.random_range(0..255), self.rng.random_range(1..255)),
                    "subnetId": "subnet-0123456789abcdef0",
                })
            })
            .collect();
        (request, json!({"instancesSet": {"items": instances}}))
    }

    fn background_audit(&mut self, count: usize) {
        let mut remaining = count;
        while remaining > 0 {
            let minute = self.rng.random_range(0..1440);
            let time = self.at(minute);
            let commands = remaining
                .saturating_sub(3)
                .min(self.rng.random_range(1..40));
            let host = self.rng.random_range(0..2);
            self.db_session(
                host,
                time,
                MONGO_ROLE,
                "$external",
                "MONGODB-AWS",
                "10.20.3.16",
                "orders-worker",
                commands,
            );
            remaining = remaining.saturating_sub(commands + 3);
        }
    }
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
