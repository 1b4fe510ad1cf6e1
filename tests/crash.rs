//! Killing the real binary with SIGKILL at random moments loses and doubles nothing.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::Value;

use auditlake_ingest::sample::{self, SampleOptions};

struct Serve {
    child: Child,
    base: String,
    /// Kept open so the service's later output has somewhere to go.
    _stdout: BufReader<std::process::ChildStdout>,
}

/// A test that fails midway still stops its service.
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(config: &std::path::Path) -> Serve {
    let mut child = Command::new(common::binary())
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn auditlake serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    let mut stdout = BufReader::new(stdout);
    stdout.read_line(&mut first).expect("first line");
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_owned();
    Serve {
        child,
        base,
        _stdout: stdout,
    }
}

fn get(client: &reqwest::blocking::Client, url: &str) -> Option<Value> {
    client.get(url).send().ok()?.json().ok()
}

fn scalar(client: &reqwest::blocking::Client, base: &str, sql: &str) -> u64 {
    let body: Value = client
        .post(format!("{base}/v1/sql"))
        .body(sql.to_owned())
        .send()
        .expect("POST")
        .json()
        .expect("JSON");
    body["rows"][0]
        .as_object()
        .and_then(|r| r.values().next())
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{body}"))
}

/// Starts the service ten times and kills it with SIGKILL after a random number of
/// milliseconds in `after`.
fn kill_ten_times(config: &std::path::Path, seed: u64, after: std::ops::Range<u64>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for kill in 0..10 {
        let mut serve = start(config);
        std::thread::sleep(Duration::from_millis(rng.random_range(after.clone())));
        serve.child.kill().expect("SIGKILL");
        serve.child.wait().expect("reap");
        eprintln!("killed run {kill}");
    }
}

/// Asserts each query's single number.
fn assert_counts(client: &reqwest::blocking::Client, base: &str, expected: &[(&str, usize)]) {
    for (sql, n) in expected {
        assert_eq!(scalar(client, base, sql) as usize, *n, "{sql}");
    }
}

fn wait_idle(client: &reqwest::blocking::Client, base: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let status = get(client, &format!("{base}/v1/status"));
        if status
            .as_ref()
            .is_some_and(|s| s["idle"] == Value::Bool(true))
        {
            return;
        }
        assert!(Instant::now() < deadline, "never idle: {status:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A few thousand objects in the local S3 server (moto), a lake in the other one (SeaweedFS):
/// ten kills, then the lake holds every record once. Small commit groups put many files, so
/// kills land while a group's files are being put (whose late writes recovery waits out).
#[test]
fn sigkill_while_ingesting_from_s3_into_a_lake_on_s3_loses_and_doubles_nothing() {
    let (Some(moto), Some(seaweed)) = (common::aws::moto(), common::aws::seaweed()) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let manifest = sample::generate(&data, &SampleOptions::default()).expect("sample");
    let source_bucket = common::aws::unique("crash-source");
    let lake_bucket = common::aws::unique("crash-lake");
    const COPIES: usize = 4;
    let objects = runtime.block_on(async {
        let s3 = common::aws::s3(&common::aws::sdk(&moto).await);
        common::aws::create_bucket(&s3, &source_bucket).await;
        let mut n = 0;
        for copy in 0..COPIES {
            n += common::aws::upload_dir(&s3, &source_bucket, &format!("copy{copy}/"), &data).await;
        }
        let lake = common::aws::s3(&common::aws::sdk(&seaweed).await);
        common::aws::create_bucket(&lake, &lake_bucket).await;
        n
    });
    assert!(objects > 2000, "{objects} objects");
    let config = dir.path().join("auditlake.toml");
    std::fs::write(
        &config,
        format!(
            "lake = \"s3://{lake_bucket}/lake\"\nstate_dir = {:?}\n[lake_aws]\nendpoint_url = {seaweed:?}\nregion = \"us-east-1\"\n[http]\nlisten = \"127.0.0.1:0\"\n[ingest]\npoll_interval = \"100ms\"\nconcurrency = 4\ncommit_rows = 5000\n[[source]]\ntype = \"s3\"\nbucket = {source_bucket:?}\nendpoint_url = {moto:?}\nregion = \"us-east-1\"\n",
            dir.path().join("state").display().to_string(),
        ),
    )
    .expect("config");

    let client = reqwest::blocking::Client::new();
    kill_ten_times(&config, 4242, 300..2500);
    let mut serve = start(&config);
    wait_idle(&client, &serve.base, Duration::from_secs(600));
    // Every copy's CloudTrail events are the same events: kept once.
    assert_counts(
        &client,
        &serve.base,
        &[
            ("SELECT count(*) FROM cloudtrail", manifest.cloudtrail_rows),
            (
                "SELECT count(DISTINCT event_id) FROM cloudtrail",
                manifest.cloudtrail_rows,
            ),
            (
                "SELECT count(*) FROM mongodb_audit",
                COPIES * manifest.mongodb_audit_rows,
            ),
            (
                "SELECT count(DISTINCT source_uri) FROM mongodb_audit",
                COPIES * manifest.atlas_audit_objects,
            ),
            (
                "SELECT count(*) FROM rejected",
                COPIES * manifest.rejected_rows,
            ),
        ],
    );
    serve.child.kill().expect("kill");
    serve.child.wait().expect("reap");
}

/// Small commit groups: each scan commits many groups, each while the next one fills.
#[test]
fn sigkill_at_random_moments_then_restart_yields_the_uninterrupted_lake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let options = SampleOptions {
        seed: 7,
        cloudtrail_records: 30_000,
        audit_lines: 60_000,
        ..SampleOptions::default()
    };
    let manifest = sample::generate(&data, &options).expect("sample");
    let lake = dir.path().join("lake");
    let config = dir.path().join("auditlake.toml");
    std::fs::write(
        &config,
        format!(
            "lake = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\n[ingest]\npoll_interval = \"100ms\"\nsettle = \"0s\"\nconcurrency = 2\ncommit_rows = 4000\n[[source]]\ntype = \"folder\"\npath = {:?}\n",
            lake.display().to_string(),
            data.display().to_string()
        ),
    )
    .expect("config");

    let client = reqwest::blocking::Client::new();
    kill_ten_times(&config, 42, 50..900);

    let mut serve = start(&config);
    wait_idle(&client, &serve.base, Duration::from_secs(300));
    let base = serve.base.clone();
    assert_counts(&client, &base, &common::lake_counts(&manifest));
    // The default rules' alerts (bob's refused AssumeRole, the drop, the root grant) are raised
    // once each, whatever the kills interrupted.
    let alerts = scalar(&client, &base, "SELECT count(*) FROM alerts");
    assert_eq!(alerts, 3);
    assert_eq!(
        scalar(
            &client,
            &base,
            "SELECT count(DISTINCT alert_id) FROM alerts"
        ),
        alerts
    );
    serve.child.kill().expect("kill");
    serve.child.wait().expect("reap");
    // What the kills left half-written was removed at the restart.
    let strays: Vec<_> = walkdir::WalkDir::new(&lake)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .map(|e| e.path().display().to_string())
        .collect();
    assert!(strays.is_empty(), "temporary files left: {strays:?}");
}
