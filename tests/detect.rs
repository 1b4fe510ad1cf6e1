//! Detection end to end: the sample story's alerts, replay equal to live, and webhook delivery
//! through a receiver that is down, then up, and across a SIGKILL.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use auditlake_ingest::config::{Config, ConfigFile, DEFAULT_CONFIG};
use common::receiver::{Receiver, signature_is_valid};
use common::service::Running;

const SECRET: &str = "webhook-test-secret";

fn committed_sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sample-data")
}

/// The built-in configuration over `data` into `lake`, with a signed JSON webhook and a Slack
/// webhook for high and critical alerts, both at `hook_base`.
fn config_text(lake: &Path, data: &Path, hook_base: Option<&str>) -> String {
    let mut text = DEFAULT_CONFIG
        .replace(
            "lake = \"lake\"",
            &format!("lake = {:?}", lake.display().to_string()),
        )
        .replace(
            "path = \"sample-data\"",
            &format!("path = {:?}", data.display().to_string()),
        );
    text.push_str("\n[http]\nlisten = \"127.0.0.1:0\"\n[ingest]\npoll_interval = \"100ms\"\nsettle = \"0s\"\n");
    if hook_base.is_some() {
        text.push_str(
            "[[alerts.webhook]]\nname = \"security\"\nurl_env = \"TEST_HOOK_URL\"\nsecret_env = \"TEST_HOOK_SECRET\"\n\
             [[alerts.webhook]]\nname = \"slack\"\nformat = \"slack\"\nurl_env = \"TEST_SLACK_URL\"\nmin_severity = \"high\"\n",
        );
    }
    text
}

fn env_for(hook_base: Option<String>) -> impl Fn(&str) -> Option<String> {
    move |name| match (name, &hook_base) {
        ("TEST_HOOK_URL", Some(base)) => Some(format!("{base}/hook")),
        ("TEST_SLACK_URL", Some(base)) => Some(format!("{base}/slack")),
        ("TEST_HOOK_SECRET", _) => Some(SECRET.to_owned()),
        _ => None,
    }
}

async fn start(text: &str, hook_base: Option<String>) -> Running {
    let file = ConfigFile::parse(text, "test").expect("parse");
    Running::start(Config::from_file(file, &env_for(hook_base)).expect("config")).await
}

/// The alerts the sample story must raise, and nothing else: (rule, entity, severity).
const STORY: [(&str, &str, &str); 10] = [
    (
        "assume_role_denied",
        "arn:aws:iam::111122223333:user/bob",
        "medium",
    ),
    ("mongodb_auth_failures", "admin", "high"),
    ("mongodb_drop", "dba-breakglass@admin", "high"),
    // Alice's session, and the session of a key no assumption issued.
    (
        "mongodb_unexpected_network",
        "arn:aws:iam::111122223333:role/mongo-atlas-access",
        "high",
    ),
    (
        "mongodb_unexpected_network",
        "arn:aws:iam::111122223333:role/mongo-atlas-access",
        "high",
    ),
    ("mongodb_user_change", "dba-breakglass@admin", "critical"),
    (
        "unattributed_db_session",
        "arn:aws:iam::111122223333:role/mongo-atlas-access",
        "high",
    ),
    (
        "unexpected_role_assumer",
        "arn:aws:iam::111122223333:user/alice",
        "high",
    ),
    // The trust policy set in the morning, and widened to alice at 14:05.
    (
        "watched_role_trust_changed",
        "arn:aws:iam::111122223333:role/mongo-atlas-access",
        "high",
    ),
    (
        "watched_role_trust_changed",
        "arn:aws:iam::111122223333:role/mongo-atlas-access",
        "high",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_story_raises_exactly_its_alerts_and_replay_agrees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let service = start(&config_text(&lake, &committed_sample(), None), None).await;
    service.wait_idle().await;

    let alerts = service.sql("SELECT rule_id, entity, severity, summary, alert_id FROM alerts ORDER BY rule_id, entity, event_time, alert_id").await;
    let got: Vec<(String, String, String)> = alerts
        .iter()
        .map(|a| {
            (
                a["rule_id"].as_str().unwrap_or_default().to_owned(),
                a["entity"].as_str().unwrap_or_default().to_owned(),
                a["severity"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = STORY
        .iter()
        .map(|(r, e, s)| ((*r).to_owned(), (*e).to_owned(), (*s).to_owned()))
        .collect();
    assert_eq!(got, want, "{alerts:#?}");
    // Every field of every alert, the time each was raised aside; the sample's folder is named
    // by its place in the repository, not on this machine.
    let full = service
        .sql(
            "SELECT rule_id, entity, severity, event_time, alert_time, summary, dedup_key, \
             alert_id, evidence_event_ids, evidence FROM alerts ORDER BY rule_id, entity, event_time, alert_id",
        )
        .await;
    insta::with_settings!({ filters => vec![(r#"file://[^\s"\\]*sample-data"#, "file://[sample-data]")] }, {
        insta::assert_json_snapshot!("sample_story_alerts", full, {
            "[].alert_time" => "[when raised]",
        });
    });
    let evidence = service
        .sql("SELECT evidence_event_ids FROM alerts WHERE rule_id = 'unexpected_role_assumer'")
        .await;
    assert_eq!(
        evidence[0]["evidence_event_ids"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        service.get("/v1/status").await["lake"]["alerts"].as_u64(),
        Some(STORY.len() as u64)
    );

    // Replay over the lake raises the same alerts, with the same ids.
    let engine = auditlake_query::QueryEngine::open(&lake)
        .await
        .expect("engine");
    let file =
        ConfigFile::parse(&config_text(&lake, &committed_sample(), None), "t").expect("parse");
    let config = Config::from_file(file, &|_| None).expect("config");
    let replayed = auditlake_ingest::replay::replay(&engine, &config.rules, None, None)
        .await
        .expect("replay");
    let mut replay_ids: Vec<String> = replayed.iter().map(|a| a.alert_id.clone()).collect();
    replay_ids.sort();
    let mut live_ids: Vec<String> = alerts
        .iter()
        .filter_map(|a| a["alert_id"].as_str().map(str::to_owned))
        .collect();
    live_ids.sort();
    assert_eq!(replay_ids, live_ids);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_a_receiver_that_was_down_signed_and_in_slack_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let receiver = Receiver::start("127.0.0.1:0".parse().expect("addr"), false).await;
    let base = format!("http://{}", receiver.addr);
    let service = start(
        &config_text(&lake, &committed_sample(), Some(&base)),
        Some(base.clone()),
    )
    .await;
    service.wait_idle().await;

    // Down: every delivery is pending with the receiver's answer recorded.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let failed = service.sql("SELECT count(*) AS n FROM alert_deliveries WHERE state = 'pending' AND attempts >= 1 AND last_error LIKE '%503%'").await;
        if failed[0]["n"].as_u64() == Some(19) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries never failed: {failed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(receiver.received().is_empty());

    receiver.set_up(true);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered = service
            .sql("SELECT count(*) AS n FROM alert_deliveries WHERE state = 'delivered'")
            .await;
        // Six alerts to the JSON hook, the five high and critical ones to Slack.
        if delivered[0]["n"].as_u64() == Some(19) {
            break;
        }
        assert!(Instant::now() < deadline, "not delivered: {delivered:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let received = receiver.received();
    let hooks: Vec<_> = received.iter().filter(|r| r.path == "/hook").collect();
    let mut ids: Vec<String> = hooks
        .iter()
        .map(|r| {
            assert!(signature_is_valid(r, SECRET), "bad signature");
            let body: Value = serde_json::from_slice(&r.body).expect("json body");
            let id = body["alert"]["alert_id"]
                .as_str()
                .expect("alert id")
                .to_owned();
            assert_eq!(
                r.headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok()),
                Some(id.as_str())
            );
            id
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), STORY.len());
    let slack: Vec<Value> = received
        .iter()
        .filter(|r| r.path == "/slack")
        .map(|r| serde_json::from_slice(&r.body).expect("json"))
        .collect();
    assert_eq!(slack.len(), 9);
    assert!(
        slack.iter().all(|m| m["text"]
            .as_str()
            .is_some_and(|t| t.contains("HIGH") || t.contains("CRITICAL"))),
        "{slack:?}"
    );
    // A tampered body fails verification.
    let mut tampered = hooks[0].clone();
    tampered.body = axum::body::Bytes::from_static(b"{}");
    assert!(!signature_is_valid(&tampered, SECRET));
    service.stop().await;
}

#[test]
fn alerts_raised_before_a_sigkill_are_delivered_after_restart() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    // A free port for the receiver, which is not running yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("auditlake.toml");
    std::fs::write(
        &config,
        config_text(&lake, &committed_sample(), Some(&base)),
    )
    .expect("config");

    let spawn = || {
        let mut child = std::process::Command::new(common::binary())
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .env("TEST_HOOK_URL", format!("{base}/hook"))
            .env("TEST_SLACK_URL", format!("{base}/slack"))
            .env("TEST_HOOK_SECRET", SECRET)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        std::io::BufRead::read_line(&mut out, &mut first).expect("line");
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("url")
            .to_owned();
        (child, url, out)
    };
    let client = reqwest::blocking::Client::new();
    let status = |url: &str| -> Option<Value> {
        client
            .get(format!("{url}/v1/status"))
            .send()
            .ok()?
            .json()
            .ok()
    };

    let (mut child, url, _out) = spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(&url);
        let queued = s
            .as_ref()
            .and_then(|s| s["lake"]["alert_deliveries"]["pending"].as_u64());
        if s.as_ref().is_some_and(|s| s["idle"] == Value::Bool(true)) && queued == Some(19) {
            break;
        }
        assert!(Instant::now() < deadline, "alerts never queued: {s:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    let receiver = runtime.block_on(Receiver::start(
        format!("127.0.0.1:{port}").parse().expect("addr"),
        true,
    ));
    let (mut child, _url, _out) = spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    let ids = loop {
        let mut ids: Vec<String> = receiver
            .received()
            .iter()
            .filter(|r| r.path == "/hook")
            .filter_map(|r| {
                serde_json::from_slice::<Value>(&r.body).ok()?["alert"]["alert_id"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        ids.sort();
        ids.dedup();
        if ids.len() == STORY.len() {
            break ids;
        }
        assert!(
            Instant::now() < deadline,
            "delivered after restart: {ids:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ids.len(), STORY.len());
    child.kill().expect("kill");
    child.wait().expect("reap");
}
