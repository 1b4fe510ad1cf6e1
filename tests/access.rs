//! The access chain (`access_chain`): every MONGODB-AWS login of the sample day linked to the
//! assumption whose key opened it, and a day built by hand for each way a link is made, refused
//! or left open, read through `auditlake ingest` and `auditlake sql --config`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

const ROLE: &str = "arn:aws:iam::111122223333:role/app/db-writer";
/// The database user Atlas audits for the role: its ARN without the path.
const DB_USER: &str = "arn:aws:iam::111122223333:role/db-writer";
const ACCOUNT: &str = "111122223333";
const HOSTS: [&str; 2] = [
    "c0-shard-00-00.ab1cd.mongodb.net",
    "c0-shard-00-01.ab1cd.mongodb.net",
];

fn committed_sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sample-data")
}

/// Runs `auditlake` with `args` then `paths`; its standard output, after it succeeded.
fn auditlake(args: &[&str], paths: &[&Path]) -> Vec<u8> {
    let out = Command::new(common::binary())
        .args(args)
        .args(paths)
        .env("RUST_LOG", "error")
        .output()
        .expect("run auditlake");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Ingests `data` into `lake` with `config`, once.
fn ingest(config: &Path, lake: &Path, data: &Path) {
    let (config, lake) = (config.display().to_string(), lake.display().to_string());
    auditlake(&["ingest", "--config", &config, "--lake", &lake], &[data]);
}

/// The rows of `sql` over `lake`, as `auditlake sql --format json` prints them.
fn sql(config: &Path, lake: &Path, sql: &str) -> Vec<Value> {
    let (config, lake) = (config.display().to_string(), lake.display().to_string());
    let out = auditlake(
        &[
            "sql", "--format", "json", "--config", &config, "--lake", &lake, sql,
        ],
        &[],
    );
    let result: Value = serde_json::from_slice(&out).expect("json result");
    result["rows"].as_array().expect("rows").clone()
}

#[test]
fn every_mongodb_aws_login_of_the_sample_day_is_linked_to_the_assumption_that_issued_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("auditlake.toml");
    std::fs::write(&config, auditlake_ingest::config::DEFAULT_CONFIG).expect("config");
    let lake = dir.path().join("lake");
    ingest(&config, &lake, &committed_sample());
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(committed_sample().join("MANIFEST.json")).expect("manifest"),
    )
    .expect("manifest json");

    let by_caller = sql(
        &config,
        &lake,
        "SELECT caller_principal, link, count(*) AS n, count(db_session_id) AS sessions, \
         count(DISTINCT access_key_id) AS keys, count(caller_identity_event_id) AS checks \
         FROM access_chain GROUP BY 1, 2 ORDER BY 1, 2",
    );
    let lambda = "arn:aws:iam::111122223333:role/service-role/orders-api-lambda";
    let ci = "arn:aws:iam::444455556666:role/ci-deployer";
    let alice = "arn:aws:iam::111122223333:user/alice";
    assert_eq!(
        by_caller,
        [
            json!({"caller_principal": lambda, "link": "caller_identity", "n": 288, "sessions": 288, "keys": 288, "checks": 288}),
            json!({"caller_principal": alice, "link": "caller_identity", "n": 1, "sessions": 1, "keys": 1, "checks": 1}),
            json!({"caller_principal": ci, "link": "caller_identity", "n": 4, "sessions": 4, "keys": 4, "checks": 4}),
            json!({"caller_principal": ci, "link": "none", "n": 1, "sessions": 0, "keys": 1, "checks": 0}),
            json!({"link": "none", "n": 1, "sessions": 1, "keys": 1, "checks": 1}),
        ]
    );
    let sessions = sql(
        &config,
        &lake,
        "SELECT count(*) AS n FROM access_chain WHERE db_session_id IS NOT NULL",
    );
    assert_eq!(sessions[0]["n"], manifest["mongodb_aws_sessions"]);
    let unattributed = sql(
        &config,
        &lake,
        "SELECT count(*) AS n FROM access_chain WHERE link = 'none' AND db_session_id IS NOT NULL",
    );
    assert_eq!(unattributed[0]["n"], manifest["unattributed_sessions"]);
    let idle = sql(
        &config,
        &lake,
        "SELECT count(*) AS n FROM access_chain WHERE db_session_id IS NULL",
    );
    assert_eq!(idle[0]["n"], manifest["assumptions_without_session"]);

    // Each link is what the trail says: the key of the assumption is the key that signed the
    // GetCallerIdentity, which came just before the login.
    let checked = sql(
        &config,
        &lake,
        "SELECT count(*) AS n FROM access_chain a \
         JOIN cloudtrail g ON g.event_id = a.caller_identity_event_id \
         JOIN cloudtrail s ON s.event_id = a.assume_event_id \
         WHERE g.user_access_key_id = a.access_key_id AND s.assumed_access_key_id = a.access_key_id \
           AND g.event_time <= a.db_authenticated_at AND g.event_time >= s.event_time \
           AND a.db_authenticated_at <= a.key_expires_at",
    );
    assert_eq!(checked[0]["n"], 293);
    let alice_row = sql(
        &config,
        &lake,
        &format!(
            "SELECT session_name, caller_ip, db_remote_ip, db_app_name, db_commands, db_namespaces, \
             CAST(key_expires_at AS VARCHAR) AS expires, CAST(assumed_at AS VARCHAR) AS assumed \
             FROM access_chain WHERE caller_principal = '{alice}'"
        ),
    );
    assert_eq!(
        alice_row,
        [
            json!({"session_name": "alice-debug", "caller_ip": "198.51.100.23", "db_remote_ip": "198.51.100.23",
            "db_app_name": "MongoDB Compass", "db_commands": 6, "db_namespaces": ["orders.orders"],
            "expires": "2026-11-01T15:12:07Z", "assumed": "2026-11-01T14:12:07Z"})
        ]
    );
    assert_sample_trust(&config, &lake);
}

/// The trust policies of the sample day, version by version, as `role_trust` lists them.
fn assert_sample_trust(config: &Path, lake: &Path) {
    let rows = sql(
        config,
        lake,
        "SELECT role_arn, CAST(valid_from AS VARCHAR) AS valid_from, CAST(valid_to AS VARCHAR) AS valid_to, \
         event_name, effect, principal_type, principal, principal_account_id, conditions \
         FROM role_trust ORDER BY role_arn, valid_from, principal",
    );
    let access = "arn:aws:iam::111122223333:role/mongo-atlas-access";
    let readonly = "arn:aws:iam::111122223333:role/mongo-atlas-readonly";
    let lambda = "arn:aws:iam::111122223333:role/service-role/orders-api-lambda";
    let ci_root = "arn:aws:iam::444455556666:root";
    let alice = "arn:aws:iam::111122223333:user/alice";
    let external_id = r#"{"StringEquals":{"sts:ExternalId":"ci-7f3a"}}"#;
    let row = |role: &str,
               from: &str,
               to: Option<&str>,
               event: &str,
               kind: &str,
               who: &str,
               account: &str,
               conditions: Option<&str>| {
        without_nulls(
            json!({"role_arn": role, "valid_from": from, "valid_to": to, "event_name": event,
            "effect": "Allow", "principal_type": kind, "principal": who, "principal_account_id": account,
            "conditions": conditions}),
        )
    };
    let (morning, widened) = ("2026-11-01T08:02:30Z", "2026-11-01T14:05:30Z");
    let update = "UpdateAssumeRolePolicy";
    assert_eq!(
        rows,
        [
            row(
                access,
                morning,
                Some(widened),
                update,
                "role",
                lambda,
                "111122223333",
                None
            ),
            row(
                access,
                morning,
                Some(widened),
                update,
                "account",
                ci_root,
                "444455556666",
                Some(external_id)
            ),
            row(
                access,
                widened,
                None,
                update,
                "role",
                lambda,
                "111122223333",
                None
            ),
            row(
                access,
                widened,
                None,
                update,
                "user",
                alice,
                "111122223333",
                None
            ),
            row(
                access,
                widened,
                None,
                update,
                "account",
                ci_root,
                "444455556666",
                Some(external_id)
            ),
            row(
                readonly,
                "2026-11-01T10:15:30Z",
                None,
                "CreateRole",
                "role",
                lambda,
                "111122223333",
                None
            ),
        ]
    );
}

/// One hand-built day of the role `db-writer` (with a path), each case at its own hour.
struct Day {
    records: Vec<Value>,
    audit: Vec<(usize, String)>,
    next_id: usize,
}

impl Day {
    fn time(hms: &str) -> String {
        format!("2026-11-02T{hms}Z")
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:04}", self.next_id)
    }

    fn assume(&mut self, at: &str, caller: &str, key: &str) -> String {
        let id = self.id("assume");
        self.records.push(json!({
            "eventVersion": "1.08", "eventTime": Self::time(at), "eventSource": "sts.amazonaws.com",
            "eventName": "AssumeRole", "awsRegion": "us-east-1", "sourceIPAddress": "10.1.2.3",
            "userIdentity": {"type": "IAMUser", "arn": caller, "accountId": ACCOUNT, "principalId": "AIDA1"},
            "requestParameters": {"roleArn": ROLE, "roleSessionName": format!("s-{key}"), "durationSeconds": 3600},
            "responseElements": {"credentials": {"accessKeyId": key, "sessionToken": "t"},
                "assumedRoleUser": {"arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/db-writer/s-{key}")}},
            "eventID": id, "eventType": "AwsApiCall", "recipientAccountId": ACCOUNT
        }));
        id
    }

    fn check(&mut self, at: &str, key: &str) -> String {
        let id = self.id("check");
        self.records.push(json!({
            "eventVersion": "1.08", "eventTime": Self::time(at), "eventSource": "sts.amazonaws.com",
            "eventName": "GetCallerIdentity", "awsRegion": "us-east-1", "sourceIPAddress": "192.0.2.44",
            "userIdentity": {"type": "AssumedRole", "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/db-writer/s-{key}"),
                "accountId": ACCOUNT, "accessKeyId": key, "principalId": "AROA1:s",
                "sessionContext": {"sessionIssuer": {"type": "Role", "arn": ROLE, "accountId": ACCOUNT, "userName": "db-writer"}}},
            "eventID": id, "eventType": "AwsApiCall", "recipientAccountId": ACCOUNT
        }));
        id
    }

    /// A login as the role on `host`, with one command and a logout; its `conn_uuid` is `uuid`.
    fn login(&mut self, host: usize, at: &str, uuid: u8) {
        use base64::Engine as _;
        let conn = json!({"$binary": base64::engine::general_purpose::STANDARD.encode([uuid; 16]), "$type": "04"});
        let ts = |t: &str| json!({"$date": format!("2026-11-02T{t}+00:00")});
        let users = json!([{"user": DB_USER, "db": "$external"}]);
        let remote = json!({"ip": "10.9.8.7", "port": 40000 + u32::from(uuid)});
        for message in [
            json!({"atype": "authenticate", "ts": ts(at), "uuid": conn, "remote": remote, "users": users, "roles": [],
                "param": {"user": DB_USER, "db": "$external", "mechanism": "MONGODB-AWS"}, "result": 0}),
            json!({"atype": "authCheck", "ts": ts(at), "uuid": conn, "remote": remote, "users": users, "roles": [],
                "param": {"command": "find", "ns": "app.items", "args": {}}, "result": 0}),
            json!({"atype": "logout", "ts": ts(at), "uuid": conn, "remote": remote, "users": [], "roles": [],
                "param": {"reason": "Client has disconnected"}, "result": 0}),
        ] {
            self.audit.push((host, message.to_string()));
        }
    }

    fn write(&self, data: &Path) {
        let ct = data.join(format!("AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2026/11/02"));
        std::fs::create_dir_all(&ct).expect("ct dir");
        let body = json!({"Records": self.records}).to_string();
        std::fs::write(
            ct.join(format!(
                "{ACCOUNT}_CloudTrail_us-east-1_20261102T2355Z_a1.json"
            )),
            body,
        )
        .expect("ct file");
        for (n, host) in HOSTS.iter().enumerate() {
            let dir = data.join(format!("atlas/c0/{host}/mongod-audit"));
            std::fs::create_dir_all(&dir).expect("audit dir");
            let lines: Vec<&str> = self
                .audit
                .iter()
                .filter(|(h, _)| *h == n)
                .map(|(_, l)| l.as_str())
                .collect();
            std::fs::write(
                dir.join("1793663700-mongod-audit.log"),
                lines.join("\n") + "\n",
            )
            .expect("audit file");
        }
    }
}

#[test]
fn each_login_is_linked_by_its_caller_identity_by_the_keys_valid_window_or_marked_ambiguous_or_none()
 {
    let mut day = Day {
        records: Vec::new(),
        audit: Vec::new(),
        next_id: 0,
    };
    let p = |name: &str| format!("arn:aws:iam::{ACCOUNT}:user/{name}");
    // A: one GetCallerIdentity, one key.
    let a = day.assume("01:00:00", &p("a"), "ASIAKEYA");
    let a_check = day.check("01:00:05.200", "ASIAKEYA");
    day.login(0, "01:00:05.600", 1);
    // B: two sessions of different keys in the same second.
    day.assume("02:00:00", &p("b"), "ASIAKEYB");
    day.assume("02:00:01", &p("c"), "ASIAKEYC");
    day.check("02:00:10.100", "ASIAKEYB");
    day.check("02:00:10.400", "ASIAKEYC");
    day.login(0, "02:00:10.500", 2);
    day.login(1, "02:00:10.600", 3);
    // C: a pool of two connections on one key.
    let d = day.assume("02:59:00", &p("d"), "ASIAKEYD");
    day.check("03:00:00.200", "ASIAKEYD");
    // Nearest to both logins.
    let d_check = day.check("03:00:00.400", "ASIAKEYD");
    day.login(0, "03:00:00.500", 4);
    day.login(1, "03:00:00.700", 5);
    // D: no GetCallerIdentity, one key valid at the login.
    let e = day.assume("04:00:00", &p("e"), "ASIAKEYE");
    day.login(0, "04:10:00.000", 6);
    // E: no GetCallerIdentity, two keys valid.
    day.assume("05:00:00", &p("f"), "ASIAKEYF");
    day.assume("05:05:00", &p("g"), "ASIAKEYG");
    day.login(0, "05:10:00.000", 7);
    // F: a key no assumption issued.
    let x_check = day.check("06:00:00.300", "ASIAKEYX");
    day.login(1, "06:00:00.600", 8);
    // G: neither a call nor a valid key.
    day.login(1, "20:00:00.000", 9);
    // H: a watched assumption and no session.
    let h = day.assume("07:00:00", &p("h"), "ASIAKEYH");
    // I: the nearest of two calls of different keys, each login its own.
    let i = day.assume("07:59:00", &p("i"), "ASIAKEYI");
    let j = day.assume("07:59:01", &p("j"), "ASIAKEYJ");
    let i_check = day.check("07:59:59.800", "ASIAKEYI");
    let j_check = day.check("07:59:45.000", "ASIAKEYJ");
    day.login(0, "08:00:00.000", 10);
    day.login(1, "07:59:45.300", 11);

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    day.write(&data);
    let config = dir.path().join("auditlake.toml");
    std::fs::write(
        &config,
        "[access]\nlink_window = \"30s\"\nroles = [\"arn:aws:iam::111122223333:role/app/*\"]\n",
    )
    .expect("config");
    let lake = dir.path().join("lake");
    ingest(&config, &lake, &data);

    let rows = sql(
        &config,
        &lake,
        "SELECT db_session_id, db_host, assume_event_id, access_key_id, caller_identity_event_id, link, link_candidates \
         FROM access_chain ORDER BY COALESCE(db_authenticated_at, assumed_at), db_host",
    );
    let session = |n: u8| {
        let bytes = [n; 16];
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    };
    let row = |n: u8,
               host: usize,
               assume: Option<&str>,
               key: Option<&str>,
               check: Option<&str>,
               link: &str,
               candidates: i64| {
        json!({"db_session_id": session(n), "db_host": HOSTS[host], "assume_event_id": assume, "access_key_id": key,
            "caller_identity_event_id": check, "link": link, "link_candidates": candidates})
    };
    let expected = vec![
        row(
            1,
            0,
            Some(&a),
            Some("ASIAKEYA"),
            Some(&a_check),
            "caller_identity",
            1,
        ),
        row(2, 0, None, None, None, "ambiguous", 2),
        row(3, 1, None, None, None, "ambiguous", 2),
        row(
            4,
            0,
            Some(&d),
            Some("ASIAKEYD"),
            Some(&d_check),
            "caller_identity",
            1,
        ),
        row(
            5,
            1,
            Some(&d),
            Some("ASIAKEYD"),
            Some(&d_check),
            "caller_identity",
            1,
        ),
        row(6, 0, Some(&e), Some("ASIAKEYE"), None, "time_window", 1),
        row(7, 0, None, None, None, "ambiguous", 2),
        row(8, 1, None, Some("ASIAKEYX"), Some(&x_check), "none", 0),
        json!({"db_session_id": null, "db_host": null, "assume_event_id": h, "access_key_id": "ASIAKEYH",
            "caller_identity_event_id": null, "link": "none", "link_candidates": 0}),
        row(
            11,
            1,
            Some(&j),
            Some("ASIAKEYJ"),
            Some(&j_check),
            "caller_identity",
            1,
        ),
        row(
            10,
            0,
            Some(&i),
            Some("ASIAKEYI"),
            Some(&i_check),
            "caller_identity",
            1,
        ),
        row(9, 1, None, None, None, "none", 0),
    ];
    let expected: Vec<Value> = expected.into_iter().map(without_nulls).collect();
    assert_eq!(rows, expected);
}

/// `row` without its null fields, as the JSON output writes rows.
fn without_nulls(row: Value) -> Value {
    match row {
        Value::Object(fields) => {
            Value::Object(fields.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}
