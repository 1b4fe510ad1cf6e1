//! The service end to end, in process: sample data in, exact counts out over real HTTP.

use crate::common;

use std::time::Duration;

use auditlake_ingest::sample::{self, Manifest, SampleOptions};
use common::service::Running;
use common::service::folder_config as config_for;

async fn assert_counts(service: &Running, manifest: &Manifest) {
    for (sql, expected) in common::lake_counts(manifest) {
        assert_eq!(service.scalar(sql).await as usize, expected, "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_day_lands_with_exact_counts_and_is_queryable_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let manifest = sample::generate(&data, &SampleOptions::default()).expect("sample");
    let lake = dir.path().join("lake");
    let service = Running::start(config_for(&lake, &data)).await;

    let status = service.wait_idle().await;
    assert_eq!(
        status["lake"]["cloudtrail_rows"].as_u64(),
        Some(manifest.cloudtrail_rows as u64),
        "{status}"
    );
    assert_eq!(
        status["lake"]["duplicate_events"].as_u64(),
        Some(manifest.cloudtrail_duplicates as u64)
    );
    let kinds = &status["lake"]["objects_by_kind"];
    assert_eq!(
        kinds["unrecognized"].as_u64(),
        Some(manifest.unrecognized_objects as u64),
        "{status}"
    );
    assert_eq!(
        kinds["cloudtrail_digest"].as_u64(),
        Some(manifest.digest_objects as u64)
    );
    assert_eq!(
        kinds["atlas_audit"].as_u64(),
        Some(manifest.atlas_audit_objects as u64)
    );
    assert_counts(&service, &manifest).await;

    // The story is in the rows.
    let unexpected = service
        .sql("SELECT user_arn, source_ip FROM cloudtrail WHERE role_arn = 'arn:aws:iam::111122223333:role/mongo-atlas-access' AND user_type = 'IAMUser' AND error_code IS NULL")
        .await;
    assert_eq!(unexpected.len(), 1);
    assert_eq!(unexpected[0]["user_arn"], sample::UNEXPECTED_USER);
    let shared = service.scalar("SELECT count(DISTINCT shared_event_id) FROM cloudtrail WHERE shared_event_id IS NOT NULL").await;
    assert_eq!(shared as usize * 2, manifest.assume_role_by_ci);
    let burst = service
        .scalar(&format!("SELECT count(*) FROM mongodb_audit WHERE atype = 'authenticate' AND result = 18 AND remote_ip = '{}'", sample::BURST_IP))
        .await;
    assert_eq!(burst as usize, manifest.failed_logins_in_burst);
    let leaked = service
        .scalar("SELECT count(*) FROM cloudtrail WHERE response_elements LIKE '%sessionToken%'")
        .await;
    assert_eq!(leaked, 0, "session tokens are never stored");
    // Partition pruning: a filter on the partition columns reads only that hour.
    let hour = service
        .scalar("SELECT count(*) FROM cloudtrail WHERE date = '2026-11-01' AND hour = '14'")
        .await;
    let by_time = service
        .scalar("SELECT count(*) FROM cloudtrail WHERE event_time >= '2026-11-01T14:00:00Z' AND event_time < '2026-11-01T15:00:00Z'")
        .await;
    assert!(hour > 0);
    assert_eq!(hour, by_time);

    // Tables, health, and the other formats.
    let tables = service.get("/v1/tables").await;
    let names: Vec<&str> = tables["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "cloudtrail",
            "mongodb_audit",
            "rejected",
            "alerts",
            "access_chain",
            "alert_deliveries",
            "assume_role_events",
            "db_sessions",
            "identity_activity",
            "role_trust",
            "watched_roles"
        ]
    );
    let health = service
        .client
        .get(format!("{}/healthz", service.base))
        .send()
        .await
        .expect("healthz");
    assert!(health.status().is_success());
    let ndjson = service
        .client
        .post(format!("{}/v1/sql?format=ndjson", service.base))
        .body("SELECT event_name FROM cloudtrail LIMIT 3")
        .send()
        .await
        .expect("ndjson")
        .text()
        .await
        .expect("text");
    assert_eq!(ndjson.lines().count(), 3);
    let csv = service
        .client
        .post(format!("{}/v1/sql?format=csv", service.base))
        .body("SELECT atype, count(*) AS n FROM mongodb_audit GROUP BY atype ORDER BY atype")
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("text");
    assert!(csv.starts_with("atype,n\n"), "{csv}");
    let arrow = service
        .client
        .post(format!("{}/v1/sql?format=arrow", service.base))
        .body("SELECT count(*) AS n FROM cloudtrail")
        .send()
        .await
        .expect("arrow")
        .bytes()
        .await
        .expect("bytes");
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow.to_vec()), None)
            .expect("IPC stream");
    let batches: Vec<_> = reader.collect::<Result<_, _>>().expect("batches");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);

    // Writes are refused.
    let refused = service
        .client
        .post(format!("{}/v1/sql", service.base))
        .body("CREATE TABLE x AS SELECT 1")
        .send()
        .await
        .expect("ddl");
    assert_eq!(refused.status(), reqwest::StatusCode::BAD_REQUEST);

    // A new file appearing while serving is picked up.
    let scans_before = service.get("/v1/status").await["process"]["scans"]
        .as_u64()
        .expect("scans");
    let extra = data.join("atlas/orders-prod/orders-prod-shard-00-00.x7k2p.mongodb.net/mongod-audit/9999999999-mongod-audit.log");
    std::fs::write(&extra, b"{\"atype\":\"logout\",\"ts\":{\"$date\":{\"$numberLong\":\"1761998400000\"}},\"users\":[],\"roles\":[],\"param\":{},\"result\":0}\n")
        .expect("write extra");
    service.wait_idle_after(scans_before + 2).await;
    assert_eq!(
        service.scalar("SELECT count(*) FROM mongodb_audit").await as usize,
        manifest.mongodb_audit_rows + 1
    );
    let ts = service.sql("SELECT CAST(ts AS VARCHAR) AS ts FROM mongodb_audit WHERE source_uri LIKE '%9999999999-mongod-audit.log'").await;
    assert_eq!(ts[0]["ts"], "2025-11-01T12:00:00Z", "$numberLong ts");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_over_the_same_folder_leaves_the_lake_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let manifest = sample::generate(&data, &SampleOptions::default()).expect("sample");
    let lake = dir.path().join("lake");

    let first = Running::start(config_for(&lake, &data)).await;
    first.wait_idle().await;
    first.stop().await;
    let before = snapshot(&lake);

    let second = Running::start(config_for(&lake, &data)).await;
    let status = second.wait_idle().await;
    assert_eq!(
        status["process"]["objects_ingested"].as_u64(),
        Some(0),
        "nothing is ingested twice"
    );
    assert_counts(&second, &manifest).await;
    second.stop().await;
    assert_eq!(before, snapshot(&lake));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_a_group_never_committed_are_deleted_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let manifest = sample::generate(&data, &SampleOptions::default()).expect("sample");
    let lake = dir.path().join("lake");
    let first = Running::start(config_for(&lake, &data)).await;
    first.wait_idle().await;
    first.stop().await;

    // As if a run had been killed between publishing a group's files and committing it: a
    // copy of a real lake file under another group's name, and the ledger's note of it.
    let committed = snapshot(&lake);
    let original = std::path::Path::new(&committed[0].0);
    let stray = original.with_file_name("killed-0000000000000001.parquet");
    std::fs::copy(original, &stray).expect("copy");
    let relative = stray
        .strip_prefix(&lake)
        .expect("in lake")
        .to_string_lossy()
        .into_owned();
    {
        let ledger = auditlake_ingest::ledger::Ledger::open(&lake.join("_state/ledger.redb"))
            .expect("ledger");
        ledger
            .begin_publish("killed-0000000000000001", &[relative.into()])
            .expect("note");
    }

    let second = Running::start(config_for(&lake, &data)).await;
    second.wait_idle().await;
    assert!(!stray.exists(), "the uncommitted group's file is deleted");
    assert_counts(&second, &manifest).await;
    second.stop().await;
    assert_eq!(committed, snapshot(&lake), "committed files are untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grown_folder_file_replaces_the_rows_of_its_earlier_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let manifest = sample::generate(&data, &SampleOptions::default()).expect("sample");
    let lake = dir.path().join("lake");
    let extra = data.join(
        "atlas/orders-prod/orders-prod-shard-00-00.x7k2p.mongodb.net/mongod-audit/1999999999-mongod-audit.log",
    );
    std::fs::create_dir_all(extra.parent().expect("parent")).expect("dir");
    let line = |n: usize| {
        format!(
            "{{\"atype\":\"authenticate\",\"local\":{{\"ip\":\"192.168.248.2\",\"port\":27017}},\"param\":{{\"db\":\"admin\",\"mechanism\":\"SCRAM-SHA-256\",\"user\":\"app\"}},\"remote\":{{\"ip\":\"10.20.3.15\",\"port\":38392}},\"result\":0,\"roles\":[],\"ts\":{{\"$date\":\"2026-11-01T12:00:0{n}.000+00:00\"}},\"users\":[]}}\n"
        )
    };
    std::fs::write(&extra, line(1) + &line(2)).expect("write");
    let service = Running::start(config_for(&lake, &data)).await;
    service.wait_idle().await;
    let of_extra =
        "SELECT count(*) FROM mongodb_audit WHERE source_uri LIKE '%/1999999999-mongod-audit.log'";
    assert_eq!(service.scalar(of_extra).await, 2);

    // The file grows: its rows are those of the new version, once each.
    std::fs::write(&extra, line(1) + &line(2) + &line(3)).expect("grow");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while service.scalar(of_extra).await != 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new version was not ingested"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    service.wait_idle().await;
    assert_eq!(
        service
            .scalar("SELECT count(DISTINCT ts) FROM mongodb_audit WHERE source_uri LIKE '%/1999999999-mongod-audit.log'")
            .await,
        3
    );
    assert_eq!(
        service.scalar("SELECT count(*) FROM mongodb_audit").await as usize,
        manifest.mongodb_audit_rows + 3,
        "the sample's rows sharing files with the earlier version are kept"
    );
    service.stop().await;
}

/// Every Parquet file of the lake with its bytes' length and modification time.
fn snapshot(lake: &std::path::Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut files: Vec<_> = walkdir::WalkDir::new(lake)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        .map(|e| {
            let meta = e.metadata().expect("metadata");
            (
                e.path().display().to_string(),
                meta.len(),
                meta.modified().expect("mtime"),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_is_required_on_every_route_but_health() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    let mut config = config_for(&dir.path().join("lake"), &data);
    config.http_token = Some("s3cret-token".into());
    let service = Running::start(config).await;
    let url = |path: &str| format!("{}{path}", service.base);
    let health = service
        .client
        .get(url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    for token in [None, Some("wrong"), Some("s3cret-toke")] {
        let mut request = service.client.post(url("/v1/sql")).body("SELECT 1");
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.expect("sql");
        assert_eq!(
            response.status(),
            reqwest::StatusCode::UNAUTHORIZED,
            "{token:?}"
        );
    }
    let tables = service
        .client
        .get(url("/v1/tables"))
        .send()
        .await
        .expect("tables");
    assert_eq!(tables.status(), reqwest::StatusCode::UNAUTHORIZED);
    let ok = service
        .client
        .post(url("/v1/sql"))
        .bearer_auth("s3cret-token")
        .body("SELECT 1 AS one")
        .send()
        .await
        .expect("sql");
    assert_eq!(ok.status(), reqwest::StatusCode::OK);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_answer_the_audit_questions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let manifest = sample::generate(&data, &SampleOptions::default()).expect("sample");
    let service = Running::start(config_for(&dir.path().join("lake"), &data)).await;
    service.wait_idle().await;

    // One row per role assumption: the caller's record, with the owner's copy joined.
    let family = "event_source = 'sts.amazonaws.com' AND event_name IN ('AssumeRole', 'AssumeRoleWithWebIdentity', 'AssumeRoleWithSAML')";
    let records = service
        .scalar(&format!("SELECT count(*) FROM cloudtrail WHERE {family}"))
        .await as usize;
    let ci_pairs = manifest.assume_role_by_ci / 2;
    assert_eq!(
        service
            .scalar("SELECT count(*) FROM assume_role_events")
            .await as usize,
        records - ci_pairs
    );
    assert_eq!(
        service
            .scalar(&format!(
                "SELECT count(*) FROM assume_role_events WHERE caller_account_id = '{}' AND owner_event_id IS NOT NULL AND cross_account",
                sample::CI_ACCOUNT
            ))
            .await as usize,
        ci_pairs
    );
    assert_eq!(
        service
            .scalar("SELECT count(*) FROM assume_role_events WHERE outcome = 'AccessDenied'")
            .await as usize,
        manifest.assume_role_denied
    );
    // The audit question of docs/tables.md: who assumed the role, from which addresses.
    let who = service
        .sql("SELECT caller_principal, source_ip, count(*) AS n FROM assume_role_events WHERE role_arn = 'arn:aws:iam::111122223333:role/mongo-atlas-access' AND outcome = 'success' GROUP BY 1, 2 ORDER BY n DESC")
        .await;
    assert!(
        who.iter()
            .any(|r| r["caller_principal"] == sample::UNEXPECTED_USER),
        "{who:?}"
    );

    // One row per connection, with its app and driver and what it did.
    let connections = service
        .scalar("SELECT count(DISTINCT conn_uuid) FROM mongodb_audit")
        .await;
    assert_eq!(
        service.scalar("SELECT count(*) FROM db_sessions").await,
        connections
    );
    let sessions = service
        .sql("SELECT user, mechanism, app_name, driver, started, ended, duration_seconds, commands FROM db_sessions WHERE app_name IS NOT NULL AND ended IS NOT NULL ORDER BY started LIMIT 5")
        .await;
    assert!(!sessions.is_empty());
    for s in &sessions {
        assert!(s["user"].is_string() && s["mechanism"].is_string(), "{s}");
        assert!(
            s["driver"].as_str().is_some_and(|d| d.contains("nodejs")),
            "{s}"
        );
        assert!(
            s["duration_seconds"].as_f64().is_some_and(|d| d >= 0.0),
            "{s}"
        );
    }
    let failed = service
        .scalar(&format!(
            "SELECT sum(failed_authentications) FROM db_sessions WHERE remote_ip = '{}'",
            sample::BURST_IP
        ))
        .await;
    assert_eq!(failed as usize, manifest.failed_logins_in_burst);

    // One timeline across both sources.
    let total = service.scalar("SELECT count(*) FROM cloudtrail").await
        + service.scalar("SELECT count(*) FROM mongodb_audit").await;
    assert_eq!(
        service
            .scalar("SELECT count(*) FROM identity_activity")
            .await,
        total
    );
    let tables = service.get("/v1/tables").await;
    for view in ["assume_role_events", "db_sessions", "identity_activity"] {
        assert!(
            tables["tables"]
                .as_array()
                .is_some_and(|t| t.iter().any(|x| x["name"] == view)),
            "{view}"
        );
    }
    service.stop().await;
}

/// The distinct event ids of a CloudTrail log file.
fn event_ids(file: &std::path::Path) -> std::collections::HashSet<String> {
    use std::io::Read as _;
    let mut json = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(file).expect("open"))
        .read_to_string(&mut json)
        .expect("gunzip");
    let log: serde_json::Value = serde_json::from_str(&json).expect("json");
    log["Records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["eventID"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_ids_are_remembered_for_the_retention_before_the_newest_event() {
    for (retention, redelivery_lands) in [(None, false), (Some(Duration::from_secs(3600)), true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let manifest = sample::generate(&data, &SampleOptions::default()).expect("sample");
        let lake = dir.path().join("lake");
        let config = || {
            let mut config = config_for(&lake, &data);
            if let Some(retention) = retention {
                config.event_id_retention = retention;
            }
            config
        };
        let first = Running::start(config()).await;
        first.wait_idle().await;
        first.stop().await;

        // The day's first log file delivered again under another name, after the rest.
        let mut logs: Vec<std::path::PathBuf> = walkdir::WalkDir::new(&data)
            .into_iter()
            .map(|e| e.expect("walk").into_path())
            .filter(|p| {
                let p = p.to_string_lossy();
                p.contains("/CloudTrail/") && p.ends_with(".json.gz")
            })
            .collect();
        logs.sort();
        let earliest = &logs[0];
        // Another delivery's name: the same prefix, another 16-character suffix.
        let name = earliest.file_name().expect("name").to_string_lossy();
        let stem = name.strip_suffix(".json.gz").expect("log file name");
        let again = earliest.with_file_name(format!(
            "{}AGAIN00000000000.json.gz",
            &stem[..stem.len() - 16]
        ));
        std::fs::copy(earliest, &again).expect("copy");
        let redelivered = event_ids(&again).len();

        let second = Running::start(config()).await;
        second.wait_idle().await;
        let rows = second.scalar("SELECT count(*) FROM cloudtrail").await as usize;
        second.stop().await;
        let expected = manifest.cloudtrail_rows + if redelivery_lands { redelivered } else { 0 };
        assert_eq!(
            rows, expected,
            "retention {retention:?}: {redelivered} events redelivered"
        );
    }
}

/// One `AssumeRole`-family record into `role` (account 111122223333 unless the ARN says
/// otherwise) by `identity`, as delivered to `recipient`.
fn assumption(
    id: &str,
    event_name: &str,
    identity: serde_json::Value,
    recipient: &str,
    shared: Option<&str>,
) -> serde_json::Value {
    let mut record = serde_json::json!({
        "eventVersion": "1.08",
        "userIdentity": identity,
        "eventTime": "2026-11-01T10:00:00Z",
        "eventSource": "sts.amazonaws.com",
        "eventName": event_name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.9",
        "userAgent": "test",
        "requestParameters": {
            "roleArn": "arn:aws:iam::111122223333:role/mongo-atlas-access",
            "roleSessionName": format!("s-{id}")
        },
        "responseElements": {
            "credentials": {"accessKeyId": format!("ASIA{id}"), "expiration": "Nov 1, 2026 11:00:00 AM"},
            "assumedRoleUser": {"arn": format!("arn:aws:sts::111122223333:assumed-role/mongo-atlas-access/s-{id}")}
        },
        "requestID": format!("req-{id}"),
        "eventID": format!("00000000-0000-0000-0000-{id:0>12}"),
        "readOnly": true,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": recipient,
        "eventCategory": "Management"
    });
    if let Some(shared) = shared {
        record["sharedEventID"] = shared.into();
    }
    record
}

/// `assume_role_events` names the principal and decides cross-account from the accounts it
/// knows, for every caller type CloudTrail writes (and says nothing where it cannot know).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assume_role_events_name_every_caller_type_and_decide_cross_account_from_known_accounts() {
    use serde_json::json;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let own = "111122223333";
    let other = "444455556666";
    let records = vec![
        assumption(
            "1",
            "AssumeRole",
            json!({"type": "IAMUser", "principalId": "AIDA1", "arn": format!("arn:aws:iam::{own}:user/alice"), "accountId": own, "userName": "alice"}),
            own,
            None,
        ),
        assumption(
            "2",
            "AssumeRole",
            json!({"type": "AssumedRole", "principalId": "AROA2:s", "arn": format!("arn:aws:sts::{own}:assumed-role/app/s"), "accountId": own,
            "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROA2", "arn": format!("arn:aws:iam::{own}:role/app"), "accountId": own, "userName": "app"}}}),
            own,
            None,
        ),
        assumption(
            "3",
            "AssumeRole",
            json!({"type": "AWSService", "invokedBy": "ec2.amazonaws.com"}),
            own,
            None,
        ),
        assumption(
            "4",
            "AssumeRole",
            json!({"type": "Root", "principalId": own, "arn": format!("arn:aws:iam::{own}:root"), "accountId": own}),
            own,
            None,
        ),
        assumption(
            "5",
            "AssumeRole",
            json!({"type": "AssumedRole", "principalId": "AROA5:ci", "arn": format!("arn:aws:sts::{other}:assumed-role/ci/ci"), "accountId": other,
            "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROA5", "arn": format!("arn:aws:iam::{other}:role/ci"), "accountId": other, "userName": "ci"}}}),
            other,
            Some("shared-5"),
        ),
        assumption(
            "6",
            "AssumeRole",
            json!({"type": "AWSAccount", "principalId": "AROA5:ci", "accountId": other}),
            own,
            Some("shared-5"),
        ),
        assumption(
            "7",
            "AssumeRole",
            json!({"type": "AWSAccount", "principalId": "AIDA7", "accountId": own}),
            own,
            Some("shared-7"),
        ),
        assumption(
            "8",
            "AssumeRoleWithWebIdentity",
            json!({"type": "WebIdentityUser", "principalId": "accounts.google.com:a:b:8", "userName": "8", "identityProvider": "accounts.google.com"}),
            own,
            None,
        ),
        assumption(
            "9",
            "AssumeRoleWithSAML",
            json!({"type": "SAMLUser", "principalId": "idp:user9", "userName": "user9", "identityProvider": "idp"}),
            own,
            None,
        ),
        assumption(
            "10",
            "AssumeRole",
            json!({"type": "FederatedUser", "principalId": "FED10:bob", "arn": format!("arn:aws:sts::{own}:federated-user/bob"), "accountId": own,
            "sessionContext": {"sessionIssuer": {"type": "IAMUser", "principalId": "AIDA10", "arn": format!("arn:aws:iam::{own}:user/bob"), "accountId": own, "userName": "bob"}}}),
            own,
            None,
        ),
    ];
    let folder = data.join(format!("AWSLogs/{own}/CloudTrail/us-east-1/2026/11/01"));
    std::fs::create_dir_all(&folder).expect("folder");
    let file = folder.join(format!(
        "{own}_CloudTrail_us-east-1_20261101T1005Z_CALLERTYPES00001.json.gz"
    ));
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&file).expect("file"),
        flate2::Compression::default(),
    );
    std::io::Write::write_all(&mut gz, json!({"Records": records}).to_string().as_bytes())
        .expect("write");
    gz.finish().expect("gzip");

    let service = Running::start(config_for(&dir.path().join("lake"), &data)).await;
    service.wait_idle().await;
    let rows = service
        .sql("SELECT event_id, caller_type, caller_principal, cross_account, owner_event_id FROM assume_role_events ORDER BY event_id")
        .await;
    service.stop().await;
    let by_id: std::collections::BTreeMap<String, &serde_json::Value> = rows
        .iter()
        .map(|r| {
            (
                r["event_id"]
                    .as_str()
                    .expect("id")
                    .trim_start_matches(['0', '-'])
                    .to_owned(),
                r,
            )
        })
        .collect();
    let expect = |id: &str, principal: Option<&str>, cross: Option<bool>| {
        let row = by_id
            .get(id)
            .unwrap_or_else(|| panic!("no row for {id}: {rows:?}"));
        assert_eq!(row["caller_principal"].as_str(), principal, "{id}: {row}");
        assert_eq!(row["cross_account"].as_bool(), cross, "{id}: {row}");
    };
    expect(
        "1",
        Some(&format!("arn:aws:iam::{own}:user/alice")),
        Some(false),
    );
    expect(
        "2",
        Some(&format!("arn:aws:iam::{own}:role/app")),
        Some(false),
    );
    expect("3", Some("ec2.amazonaws.com"), Some(false));
    expect("4", Some(&format!("arn:aws:iam::{own}:root")), Some(false));
    expect(
        "5",
        Some(&format!("arn:aws:iam::{other}:role/ci")),
        Some(true),
    );
    assert!(
        !by_id.contains_key("6"),
        "the owner's copy joins its caller's row"
    );
    assert!(
        by_id["5"]["owner_event_id"]
            .as_str()
            .is_some_and(|o| o.ends_with("000000000006"))
    );
    expect("7", Some("AIDA7"), Some(false));
    expect("8", Some("accounts.google.com:a:b:8"), None);
    expect("9", Some("idp:user9"), None);
    expect(
        "10",
        Some(&format!("arn:aws:iam::{own}:user/bob")),
        Some(false),
    );
    assert_eq!(rows.len(), 9, "{rows:?}");
}
