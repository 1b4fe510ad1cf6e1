//! Rule behaviour on hand-made rows, one property per test.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, ListBuilder, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use auditlake_schema as schema;

use crate::config::DetectConfig;
use crate::engine::Engine;

/// A batch of `table` with the given cells; every other cell is null.
fn batch(table: &str, rows: &[Vec<(&str, &str)>]) -> RecordBatch {
    let schema = schema::file_schema(table).expect("schema");
    let cell = |row: &Vec<(&str, &str)>, name: &str| {
        row.iter()
            .find(|(c, _)| *c == name)
            .map(|(_, v)| (*v).to_owned())
    };
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| {
            let values: Vec<Option<String>> = rows.iter().map(|r| cell(r, f.name())).collect();
            let array: ArrayRef = match f.data_type() {
                DataType::Utf8 => Arc::new(StringArray::from(values)),
                DataType::Int32 => Arc::new(Int32Array::from(
                    values
                        .iter()
                        .map(|v| v.as_ref().and_then(|v| v.parse().ok()))
                        .collect::<Vec<_>>(),
                )),
                DataType::Int64 => Arc::new(Int64Array::from(
                    values
                        .iter()
                        .map(|v| Some(v.as_ref().and_then(|v| v.parse().ok()).unwrap_or(0)))
                        .collect::<Vec<_>>(),
                )),
                DataType::Boolean => Arc::new(BooleanArray::from(
                    values
                        .iter()
                        .map(|v| v.as_ref().map(|v| v == "true"))
                        .collect::<Vec<_>>(),
                )),
                DataType::Timestamp(_, _) => Arc::new(
                    TimestampMicrosecondArray::from(
                        values
                            .iter()
                            .map(|v| Some(v.as_ref().and_then(|v| v.parse().ok()).unwrap_or(0)))
                            .collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                DataType::List(item) => {
                    let mut b = ListBuilder::new(StringBuilder::new()).with_field(item.clone());
                    for _ in &values {
                        b.append(true);
                    }
                    Arc::new(b.finish())
                }
                other => panic!("no test builder for {other}"),
            };
            array
        })
        .collect();
    RecordBatch::try_new(schema, columns).expect("batch")
}

fn engine(toml_text: &str) -> Engine {
    let config: DetectConfig = toml::from_str(toml_text).expect("config");
    config.build().expect("rules")
}

const WATCH: &str = r#"
[[unexpected_role_assumer]]
roles = ["arn:aws:iam::111122223333:role/db-*"]
expected = ["arn:aws:iam::111122223333:role/app", "arn:aws:iam::444455556666:role/ci"]
"#;

fn assume(
    event_id: &'static str,
    shared: Option<&'static str>,
    identity: &[(&'static str, &'static str)],
    uri: &'static str,
) -> Vec<(&'static str, &'static str)> {
    let mut row = vec![
        ("event_source", "sts.amazonaws.com"),
        ("event_name", "AssumeRole"),
        ("role_arn", "arn:aws:iam::111122223333:role/db-access"),
        ("event_time", "1000000"),
        ("source_uri", uri),
        ("source_index", "0"),
    ];
    row.push(("event_id", event_id));
    if let Some(s) = shared {
        row.push(("shared_event_id", s));
    }
    row.extend_from_slice(identity);
    row
}

#[test]
fn expected_roles_sessions_and_accounts_pass_and_a_stranger_alerts_once_across_accounts() {
    let mut e = engine(WATCH);
    let app_session = [
        ("user_type", "AssumedRole"),
        ("user_arn", "arn:aws:sts::111122223333:assumed-role/app/s"),
        ("session_issuer_arn", "arn:aws:iam::111122223333:role/app"),
    ];
    let ci_owner_copy = [
        ("user_type", "AWSAccount"),
        ("user_account_id", "444455556666"),
    ];
    let stranger_caller = [
        ("user_type", "AssumedRole"),
        ("user_arn", "arn:aws:sts::777788889999:assumed-role/x/s"),
        ("session_issuer_arn", "arn:aws:iam::777788889999:role/x"),
        ("user_account_id", "777788889999"),
    ];
    let stranger_owner = [
        ("user_type", "AWSAccount"),
        ("user_account_id", "777788889999"),
    ];
    let rows = vec![
        assume("e1", None, &app_session, "s3://b/1"),
        assume("e2", Some("shared-ci"), &ci_owner_copy, "s3://b/1"),
        assume("e3", Some("shared-x"), &stranger_owner, "s3://b/1"),
        assume("e4", Some("shared-x"), &stranger_caller, "s3://b/1"),
    ];
    let alerts = e.observe(schema::CLOUDTRAIL, &batch(schema::CLOUDTRAIL, &rows), 0);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].rule_id, "unexpected_role_assumer");
    assert_eq!(alerts[0].dedup_key, "shared-x");
    // Another object delivering the same pair raises nothing; the owner's redo raises it again.
    assert!(
        e.observe(
            schema::CLOUDTRAIL,
            &batch(
                schema::CLOUDTRAIL,
                &[assume("e4", Some("shared-x"), &stranger_caller, "s3://b/2")]
            ),
            0
        )
        .is_empty()
    );
    assert_eq!(
        e.observe(schema::CLOUDTRAIL, &batch(schema::CLOUDTRAIL, &rows), 0)
            .len(),
        1
    );
}

#[test]
fn unwatched_roles_and_denied_calls_do_not_count_as_assumptions() {
    let mut e = engine(WATCH);
    let stranger = [
        ("user_type", "IAMUser"),
        ("user_arn", "arn:aws:iam::111122223333:user/eve"),
    ];
    let mut other_role = assume("e1", None, &stranger, "u");
    other_role.retain(|(c, _)| *c != "role_arn");
    other_role.push(("role_arn", "arn:aws:iam::111122223333:role/other"));
    let mut denied = assume("e2", None, &stranger, "u");
    denied.push(("error_code", "AccessDenied"));
    let alerts = e.observe(
        schema::CLOUDTRAIL,
        &batch(schema::CLOUDTRAIL, &[other_role, denied]),
        0,
    );
    let rules: Vec<&str> = alerts.iter().map(|a| a.rule_id.as_str()).collect();
    assert_eq!(
        rules,
        ["assume_role_denied"],
        "the denied call is its own rule's alert only"
    );
}

#[test]
fn first_seen_learns_then_alerts_on_a_new_expected_principal() {
    let mut e = engine(
        r#"
[[unexpected_role_assumer]]
roles = ["arn:aws:iam::111122223333:role/db-*"]
expected = ["111122223333"]
first_seen = true
learning_period = "1h"
"#,
    );
    let a = [
        ("user_type", "IAMUser"),
        ("user_arn", "arn:aws:iam::111122223333:user/a"),
        ("user_account_id", "111122223333"),
    ];
    let b = [
        ("user_type", "IAMUser"),
        ("user_arn", "arn:aws:iam::111122223333:user/b"),
        ("user_account_id", "111122223333"),
    ];
    let at = |mut row: Vec<(&'static str, &'static str)>, t: &'static str| {
        row.retain(|(c, _)| *c != "event_time");
        row.push(("event_time", t));
        row
    };
    let learning = vec![at(assume("e1", None, &a, "u"), "0")];
    assert!(
        e.observe(schema::CLOUDTRAIL, &batch(schema::CLOUDTRAIL, &learning), 0)
            .is_empty()
    );
    let later = vec![
        at(assume("e2", None, &a, "u"), "7200000000"),
        at(assume("e3", None, &b, "u"), "7200000000"),
    ];
    let alerts = e.observe(schema::CLOUDTRAIL, &batch(schema::CLOUDTRAIL, &later), 0);
    assert_eq!(alerts.len(), 1);
    assert!(
        alerts[0].summary.contains("first time"),
        "{}",
        alerts[0].summary
    );
    // The state survives a save and restore.
    let state = e.save();
    let mut restored = engine(
        "[[unexpected_role_assumer]]\nroles = [\"arn:aws:iam::111122223333:role/db-*\"]\nexpected = [\"111122223333\"]\nfirst_seen = true\nlearning_period = \"1h\"\n",
    );
    restored.restore(state);
    let again = vec![at(assume("e4", None, &b, "u2"), "9000000000")];
    assert!(
        restored
            .observe(schema::CLOUDTRAIL, &batch(schema::CLOUDTRAIL, &again), 0)
            .is_empty(),
        "b is known now"
    );
}

fn auth(
    ts: &'static str,
    index: &'static str,
    result: &'static str,
) -> Vec<(&'static str, &'static str)> {
    vec![
        ("atype", "authenticate"),
        ("ts", ts),
        ("result", result),
        ("user", "admin"),
        ("remote_ip", "203.0.113.9"),
        ("remote_ip_text", "203.0.113.9"),
        ("source_uri", "file:///a"),
        ("source_index", index),
    ]
}

#[test]
fn auth_failures_alert_once_per_burst_and_not_below_threshold() {
    let text = "[mongodb_auth_failures]\nthreshold = 3\nwindow = \"1m\"\n[mongodb_drop]\nenabled = false\n[mongodb_user_change]\nenabled = false\n[assume_role_denied]\nenabled = false\n";
    let mut e = engine(text);
    let two = vec![
        auth("0", "1", "18"),
        auth("1000000", "2", "18"),
        auth("2000000", "3", "0"),
    ];
    assert!(
        e.observe(
            schema::MONGODB_AUDIT,
            &batch(schema::MONGODB_AUDIT, &two),
            0
        )
        .is_empty()
    );
    // The third failure within the minute alerts; more of the same burst do not; the same rows
    // seen again change nothing.
    let more = vec![
        auth("30000000", "4", "18"),
        auth("31000000", "5", "18"),
        auth("32000000", "6", "18"),
    ];
    assert_eq!(
        e.observe(
            schema::MONGODB_AUDIT,
            &batch(schema::MONGODB_AUDIT, &more),
            0
        )
        .len(),
        1
    );
    assert!(
        e.observe(
            schema::MONGODB_AUDIT,
            &batch(schema::MONGODB_AUDIT, &more),
            0
        )
        .is_empty()
    );
    // A new burst an hour later is a new alert.
    let later = vec![
        auth("3600000000", "7", "18"),
        auth("3601000000", "8", "18"),
        auth("3602000000", "9", "18"),
    ];
    assert_eq!(
        e.observe(
            schema::MONGODB_AUDIT,
            &batch(schema::MONGODB_AUDIT, &later),
            0
        )
        .len(),
        1
    );
}

#[test]
fn drops_honour_exceptions_and_failed_commands_do_not_alert() {
    let text = "[mongodb_drop]\nexceptions = [{ user = \"etl@admin\", ns = \"staging_*\" }]\n";
    let mut e = engine(text);
    let drop = |user: &'static str, ns: &'static str, result: &'static str, index: &'static str| {
        vec![
            ("atype", "dropCollection"),
            ("user", user),
            ("user_db", "admin"),
            ("ns", ns),
            ("result", result),
            ("ts", index),
            ("source_uri", "u"),
            ("source_index", index),
        ]
    };
    let rows = vec![
        drop("etl", "staging_x.t", "0", "1"),
        drop("etl", "prod.t", "0", "2"),
        drop("bob", "staging_x.t", "0", "3"),
        drop("bob", "prod.t", "13", "4"),
    ];
    let alerts = e.observe(
        schema::MONGODB_AUDIT,
        &batch(schema::MONGODB_AUDIT, &rows),
        0,
    );
    let entities: Vec<(&str, &str)> = alerts
        .iter()
        .map(|a| (a.entity.as_str(), a.summary.as_str()))
        .collect();
    assert_eq!(alerts.len(), 2, "{entities:?}");
    assert!(alerts.iter().all(|a| a.rule_id == "mongodb_drop"));
}

#[test]
fn granting_a_privileged_role_is_critical_and_revoking_it_is_not() {
    let mut e = engine("");
    let change = |atype: &'static str, param: &'static str, index: &'static str| {
        vec![
            ("atype", atype),
            ("user", "dba"),
            ("user_db", "admin"),
            ("param", param),
            ("result", "0"),
            ("ts", index),
            ("source_uri", "u"),
            ("source_index", index),
        ]
    };
    let rows = vec![
        change(
            "grantRolesToUser",
            r#"{"user":"x","db":"admin","roles":[{"role":"readWriteAnyDatabase","db":"admin"}]}"#,
            "1",
        ),
        change(
            "revokeRolesFromUser",
            r#"{"user":"x","db":"admin","roles":[{"role":"root","db":"admin"}]}"#,
            "2",
        ),
        change(
            "createUser",
            r#"{"user":"y","db":"app","roles":["read"]}"#,
            "3",
        ),
    ];
    let alerts = e.observe(
        schema::MONGODB_AUDIT,
        &batch(schema::MONGODB_AUDIT, &rows),
        0,
    );
    let severities: Vec<&str> = alerts.iter().map(|a| a.severity.as_str()).collect();
    assert_eq!(severities, ["critical", "medium", "medium"]);
}

#[test]
fn unexpected_network_skips_allowed_failed_and_system_sessions() {
    let mut e = engine("[mongodb_unexpected_network]\nallowed_cidrs = [\"10.0.0.0/8\"]\n");
    let login =
        |ip: &'static str, result: &'static str, system: &'static str, index: &'static str| {
            vec![
                ("atype", "authenticate"),
                ("user", "app"),
                ("remote_ip", ip),
                ("result", result),
                ("is_system_user", system),
                ("ts", index),
                ("source_uri", "u"),
                ("source_index", index),
            ]
        };
    let rows = vec![
        login("10.1.2.3", "0", "false", "1"),
        login("198.51.100.7", "18", "false", "2"),
        login("198.51.100.7", "0", "true", "3"),
        login("198.51.100.7", "0", "false", "4"),
        login("198.51.100.7", "0", "false", "5"),
    ];
    let alerts = e.observe(
        schema::MONGODB_AUDIT,
        &batch(schema::MONGODB_AUDIT, &rows),
        0,
    );
    assert_eq!(alerts.len(), 1, "one alert per user and address per day");
}

#[test]
fn a_dedup_window_folds_repeated_drops_by_one_user() {
    let mut e = engine("[mongodb_drop]\ndedup_window = \"10m\"\n");
    let drop = |ns: &'static str, ts: &'static str, index: &'static str| {
        vec![
            ("atype", "dropCollection"),
            ("user", "etl"),
            ("user_db", "admin"),
            ("ns", ns),
            ("result", "0"),
            ("ts", ts),
            ("source_uri", "u"),
            ("source_index", index),
        ]
    };
    let rows = vec![
        drop("a.t", "0", "1"),
        drop("b.t", "60000000", "2"),
        drop("c.t", "900000000", "3"),
    ];
    assert_eq!(
        e.observe(
            schema::MONGODB_AUDIT,
            &batch(schema::MONGODB_AUDIT, &rows),
            0
        )
        .len(),
        2
    );
}

#[test]
fn abandoning_a_group_keeps_the_alerts_other_objects_raised_since() {
    let text = "[mongodb_unexpected_network]\nallowed_cidrs = [\"10.0.0.0/8\"]\ndedup_window = \"1h\"\n[mongodb_drop]\nenabled = false\n[mongodb_user_change]\nenabled = false\n[mongodb_auth_failures]\nenabled = false\n";
    let mut e = engine(text);
    let login = |uri: &'static str, user: &'static str, ts: &'static str| {
        vec![
            ("atype", "authenticate"),
            ("result", "0"),
            ("user", user),
            ("user_db", "admin"),
            ("remote_ip", "203.0.113.9"),
            ("remote_ip_text", "203.0.113.9"),
            ("ts", ts),
            ("source_uri", uri),
            ("source_index", "0"),
        ]
    };
    let observe = |e: &mut Engine, row| {
        e.observe(
            schema::MONGODB_AUDIT,
            &batch(schema::MONGODB_AUDIT, &[row]),
            0,
        )
    };
    // A group of object `b` starts; meanwhile `a` (another group) raises an alert for eve,
    // and `b` one for mallory.
    let before = e.save();
    assert_eq!(observe(&mut e, login("a", "eve", "1000000")).len(), 1);
    assert_eq!(observe(&mut e, login("b", "mallory", "1000000")).len(), 1);
    // `b`'s group fails.
    e.abandon(before, &std::collections::HashSet::from(["b"]));
    // `a`'s alert may be committed: another object raising it must not store it twice.
    assert!(observe(&mut e, login("c", "eve", "2000000")).is_empty());
    // `b`'s is taken back: its redo raises it again.
    assert_eq!(observe(&mut e, login("b", "mallory", "1000000")).len(), 1);
}

/// A successful `MONGODB-AWS` login as `user`, session `session`, at `ts` µs.
fn aws_login(
    user: &'static str,
    session: &'static str,
    ts: &'static str,
) -> Vec<(&'static str, &'static str)> {
    vec![
        ("atype", "authenticate"),
        ("mechanism", "MONGODB-AWS"),
        ("result", "0"),
        ("user", user),
        ("conn_uuid", session),
        ("hostname", "h0"),
        ("remote_ip", "203.0.113.9"),
        ("ts", ts),
        ("source_uri", "s3://atlas/a"),
        ("source_index", "1"),
    ]
}

fn trail(rows: &[Vec<(&'static str, &'static str)>]) -> RecordBatch {
    batch(schema::CLOUDTRAIL, rows)
}

/// An assumption of the role (with a path) issuing `key` at `time` µs, for an hour.
fn issued(key: &'static str, time: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("event_source", "sts.amazonaws.com"),
        ("event_name", "AssumeRole"),
        ("role_arn", "arn:aws:iam::111122223333:role/apps/db-access"),
        ("assumed_access_key_id", key),
        ("event_time", time),
        ("event_id", key),
        ("source_uri", "s3://trail/1"),
    ]
}

fn caller_identity(key: &'static str, time: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("event_source", "sts.amazonaws.com"),
        ("event_name", "GetCallerIdentity"),
        (
            "session_issuer_arn",
            "arn:aws:iam::111122223333:role/apps/db-access",
        ),
        ("user_access_key_id", key),
        ("event_time", time),
        ("event_id", "check"),
        ("source_uri", "s3://trail/2"),
    ]
}

/// Any event, moving CloudTrail's event time to `time` µs.
fn tick(time: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("event_source", "ec2.amazonaws.com"),
        ("event_name", "DescribeInstances"),
        ("event_time", time),
        ("source_uri", "s3://trail/3"),
    ]
}

/// The alerts of `unattributed_db_session` among `alerts`.
fn unattributed(alerts: Vec<crate::alert::Alert>) -> Vec<crate::alert::Alert> {
    alerts
        .into_iter()
        .filter(|a| a.rule_id == "unattributed_db_session")
        .collect()
}

const DB_USER: &str = "arn:aws:iam::111122223333:role/db-access";
/// The role watched with its path, which the database user does not carry.
const WATCH_WITH_PATH: &str = r#"
[[unexpected_role_assumer]]
roles = ["arn:aws:iam::111122223333:role/apps/db-*"]
expected = ["arn:aws:iam::111122223333:role/app"]
"#;
const MINUTE: i64 = 60_000_000;

#[test]
fn a_login_is_unattributed_only_once_the_trail_has_passed_it_with_nothing_explaining_it() {
    let mut e = engine(WATCH_WITH_PATH);
    assert!(e.rule_ids().contains(&"unattributed_db_session"));
    // 10:00 a key is issued; 10:05 a login with it, and one with a key from nowhere.
    let t0: i64 = 36_000_000_000;
    let at = |minutes: i64| -> &'static str {
        Box::leak((t0 + minutes * MINUTE).to_string().into_boxed_str())
    };
    let trail_batch = trail(&[
        issued("ASIAKNOWN", at(0)),
        caller_identity("ASIAKNOWN", at(5)),
        caller_identity("ASIAUNKNOWN", at(6)),
    ]);
    assert!(unattributed(e.observe(schema::CLOUDTRAIL, &trail_batch, 0)).is_empty());
    let logins = batch(
        schema::MONGODB_AUDIT,
        &[
            aws_login(DB_USER, "known", at(5)),
            aws_login(DB_USER, "unknown", at(6)),
        ],
    );
    assert!(
        e.observe(schema::MONGODB_AUDIT, &logins, 0).is_empty(),
        "the trail may still bring what explains them"
    );
    // The trail reaches 10:20: the unknown key's login is decided, the other explained.
    let alerts = unattributed(e.observe(schema::CLOUDTRAIL, &trail(&[tick(at(21))]), 0));
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert.rule_id, "unattributed_db_session");
    assert_eq!(alert.entity, DB_USER);
    assert_eq!(alert.dedup_key, "h0|unknown");
    assert!(alert.summary.contains("ASIAUNKNOWN"), "{}", alert.summary);
    assert_eq!(alert.evidence.len(), 2, "the call and the login");
    assert_eq!(alert.evidence[1].source_uri, "s3://atlas/a");
    // Nothing more later, whatever comes.
    assert!(
        e.observe(schema::CLOUDTRAIL, &trail(&[tick(at(600))]), 0)
            .is_empty()
    );
}

#[test]
fn without_a_call_a_login_is_explained_by_a_key_of_its_role_valid_then_and_state_survives_a_restart()
 {
    let t0: i64 = 36_000_000_000;
    let at = |minutes: i64| -> &'static str {
        Box::leak((t0 + minutes * MINUTE).to_string().into_boxed_str())
    };
    let mut e = engine(WATCH_WITH_PATH);
    assert!(
        unattributed(e.observe(schema::CLOUDTRAIL, &trail(&[issued("ASIAKEY", at(0))]), 0))
            .is_empty()
    );
    let logins = batch(
        schema::MONGODB_AUDIT,
        &[
            aws_login(DB_USER, "in-window", at(30)),
            aws_login(DB_USER, "after-expiry", at(70)),
        ],
    );
    assert!(e.observe(schema::MONGODB_AUDIT, &logins, 0).is_empty());
    // A restart: the pending logins and the issued key come back from the saved state.
    let saved = e.save();
    let mut restarted = engine(WATCH_WITH_PATH);
    restarted.restore(saved);
    let alerts = unattributed(restarted.observe(schema::CLOUDTRAIL, &trail(&[tick(at(120))]), 0));
    let keys: Vec<&str> = alerts.iter().map(|a| a.dedup_key.as_str()).collect();
    assert_eq!(keys, ["h0|after-expiry"]);
    assert!(alerts[0].summary.contains("no GetCallerIdentity"));
}

#[test]
fn logins_of_unwatched_roles_and_of_other_mechanisms_are_not_judged() {
    let mut e = engine(WATCH);
    let mut scram = aws_login(DB_USER, "scram", "1000");
    scram[1] = ("mechanism", "SCRAM-SHA-256");
    let logins = batch(
        schema::MONGODB_AUDIT,
        &[
            aws_login("arn:aws:iam::111122223333:role/other", "other", "1000"),
            scram,
        ],
    );
    assert!(e.observe(schema::MONGODB_AUDIT, &logins, 0).is_empty());
    assert!(
        e.observe(schema::CLOUDTRAIL, &trail(&[tick("9000000000000")]), 0)
            .is_empty()
    );
    // Without a watched role the rule is off.
    assert!(!engine("").rule_ids().contains(&"unattributed_db_session"));
}

/// An `UpdateAssumeRolePolicy` of `db-access` at `time` µs allowing `principals` (AWS).
fn trust_update(
    event_id: &'static str,
    time: &'static str,
    principals: &[&str],
) -> Vec<(&'static str, &'static str)> {
    let policy = serde_json::json!({"Statement": [{"Effect": "Allow",
        "Principal": {"AWS": principals}, "Action": "sts:AssumeRole"}]})
    .to_string();
    let request =
        serde_json::json!({"roleName": "db-access", "policyDocument": policy}).to_string();
    vec![
        ("event_source", "iam.amazonaws.com"),
        ("event_name", "UpdateAssumeRolePolicy"),
        ("recipient_account_id", "111122223333"),
        ("session_issuer_arn", "arn:aws:iam::111122223333:role/ops"),
        ("request_parameters", Box::leak(request.into_boxed_str())),
        ("event_time", time),
        ("event_id", event_id),
        ("source_uri", "s3://trail/4"),
    ]
}

#[test]
fn a_watched_roles_trust_change_names_the_principals_added_and_removed_and_a_no_op_is_silent() {
    let mut e = engine(WATCH);
    let only = |alerts: Vec<crate::alert::Alert>| -> Vec<String> {
        alerts
            .into_iter()
            .filter(|a| a.rule_id == "watched_role_trust_changed")
            .map(|a| a.summary)
            .collect()
    };
    let app = "arn:aws:iam::111122223333:role/app";
    let alice = "arn:aws:iam::111122223333:user/alice";
    let batch1 = trail(&[
        trust_update("t1", "1000", &[app]),
        trust_update("t2", "2000", &[app, alice]),
        trust_update("t3", "3000", &[alice, app]),
    ]);
    let summaries = only(e.observe(schema::CLOUDTRAIL, &batch1, 0));
    assert_eq!(summaries.len(), 2, "{summaries:#?}");
    assert!(summaries[0].contains("no earlier version") && summaries[0].contains(app));
    assert!(
        summaries[1].contains(&format!("added user {alice}; removed none")),
        "{}",
        summaries[1]
    );
    // A record that arrives late is compared with the version before it in event time.
    let late = trail(&[trust_update("t0", "500", &[])]);
    let summaries = only(e.observe(schema::CLOUDTRAIL, &late, 0));
    assert_eq!(summaries.len(), 1);
    // Another role is not watched.
    let mut other = trust_update("t9", "4000", &[alice]);
    other[4] = (
        "request_parameters",
        r#"{"roleName":"other","policyDocument":"{\"Statement\":[]}"}"#,
    );
    assert!(only(e.observe(schema::CLOUDTRAIL, &trail(&[other]), 0)).is_empty());
}
