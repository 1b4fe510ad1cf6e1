//! Benchmark: what detection costs, and how long an alert takes to reach a webhook.
//!
//!     cargo bench -p auditlake-ingest --bench detect [-- RECORDS]
//!
//! Cost: the same generated data set (RECORDS CloudTrail records and RECORDS audit lines,
//! default 200,000 each) ingested by the one-shot pipeline twice, without rules and with the
//! built-in rules; records per second for each and the relative cost.
//! Latency: the service runs with a webhook pointing at a receiver in this process; one audit
//! object holding a `dropDatabase` is dropped into the watched folder at a time, and the time
//! from the object being read (the alert's `alert_time`, stamped when decoding starts) to the
//! receiver having the alert is recorded; p50 and p99 over 200 alerts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditlake_ingest::config::{Config, ConfigFile, DEFAULT_CONFIG, LakeSpec, SourceSpec};
use auditlake_ingest::sample::{self, SampleOptions};
use auditlake_ingest::service::{self, Service};

fn config(
    text: &str,
    lake: &std::path::Path,
    data: &std::path::Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Config {
    let mut config =
        Config::from_file(ConfigFile::parse(text, "bench").expect("parse"), env).expect("config");
    config.lake = LakeSpec::Local(lake.to_path_buf());
    config.state_dir = lake.join("_state");
    config.settle = Duration::ZERO;
    config.sources = vec![SourceSpec::Folder {
        path: data.to_path_buf(),
        atlas_project: None,
    }];
    config
}

async fn ingest_once(config: &Config) -> (Duration, u64) {
    let ingestion = service::open_pipeline(config).await.expect("pipeline");
    let stop = tokio_util::sync::CancellationToken::new();
    let start = Instant::now();
    for listed in &ingestion.sources {
        ingestion
            .pipeline
            .scan(listed.source.as_ref(), &stop)
            .await
            .expect("scan");
    }
    let elapsed = start.elapsed();
    let s = ingestion.pipeline.stats();
    let rows = s.cloudtrail_rows.load(std::sync::atomic::Ordering::Relaxed)
        + s.mongodb_audit_rows
            .load(std::sync::atomic::Ordering::Relaxed);
    (elapsed, rows)
}

const NO_RULES: &str = "[detect.assume_role_denied]\nenabled = false\n[detect.mongodb_drop]\nenabled = false\n[detect.mongodb_user_change]\nenabled = false\n";

async fn cost(records: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    sample::generate(
        &data,
        &SampleOptions {
            seed: 3,
            cloudtrail_records: records,
            audit_lines: records,
            ..SampleOptions::default()
        },
    )
    .expect("sample");
    let mut results = Vec::new();
    for (name, text) in [
        ("without rules", NO_RULES),
        ("with rules", DEFAULT_CONFIG),
        ("without rules", NO_RULES),
        ("with rules", DEFAULT_CONFIG),
    ] {
        let lake = dir.path().join(format!("lake-{}", results.len()));
        let config = config(text, &lake, &data, &|_| None);
        let (elapsed, rows) = ingest_once(&config).await;
        let rate = rows as f64 / elapsed.as_secs_f64();
        println!(
            "ingest {name:<14} {rows} records in {:.2} s: {rate:>10.0} records/s",
            elapsed.as_secs_f64()
        );
        results.push((name, rate));
    }
    let best = |n: &str| {
        results
            .iter()
            .filter(|(name, _)| *name == n)
            .map(|(_, r)| *r)
            .fold(0.0, f64::max)
    };
    let (without, with) = (best("without rules"), best("with rules"));
    println!(
        "detection cost: {:.1} % of ingest throughput (best of two runs each)",
        (1.0 - with / without) * 100.0
    );
}

async fn latency(alerts: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    let received: Arc<Mutex<Vec<(i64, i64)>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let now = chrono::Utc::now().timestamp_micros();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                    let raised = v["alert"]["alert_time_micros"].as_i64().unwrap_or(now);
                    sink.lock().expect("lock").push((raised, now));
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let text = format!(
        "{DEFAULT_CONFIG}\n[ingest]\npoll_interval = \"20ms\"\n[http]\nlisten = \"127.0.0.1:0\"\n[[alerts.webhook]]\nname = \"bench\"\nurl_env = \"BENCH_HOOK\"\n"
    );
    let env = move |name: &str| (name == "BENCH_HOOK").then(|| url.clone());
    let config = config(&text, &dir.path().join("lake"), &data, &env);
    let service = Service::bind(config).await.expect("bind");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(service.run(async {
        let _ = stopped.await;
    }));

    let folder =
        data.join("atlas/orders-prod/orders-prod-shard-00-00.x7k2p.mongodb.net/mongod-audit");
    std::fs::create_dir_all(&folder).expect("folder");
    for n in 0..alerts {
        let line = format!(
            "{{\"atype\":\"dropDatabase\",\"ts\":{{\"$date\":{{\"$numberLong\":\"{}\"}}}},\"uuid\":{{\"$binary\":\"KXMtAMh9TOOSl9aQBW1Zkg==\",\"$type\":\"04\"}},\"users\":[{{\"user\":\"dba\",\"db\":\"admin\"}}],\"roles\":[],\"param\":{{\"ns\":\"db{n}\"}},\"result\":0}}\n",
            1_793_500_000_000i64 + n as i64 * 1000
        );
        let temp = folder.join(format!(".{n}.tmp"));
        std::fs::write(&temp, line).expect("write");
        std::fs::rename(&temp, folder.join(format!("{n:06}-mongod-audit.log"))).expect("rename");
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.lock().expect("lock").len() <= n {
            assert!(Instant::now() < deadline, "alert {n} never arrived");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let mut latencies: Vec<i64> = received
        .lock()
        .expect("lock")
        .iter()
        .map(|(raised, got)| got - raised)
        .collect();
    latencies.sort_unstable();
    let pick =
        |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0;
    println!(
        "read -> webhook latency over {} alerts: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
    let _ = stop.send(());
    let _ = task.await;
}

fn main() {
    let records = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(200_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        cost(records).await;
        latency(200).await;
    });
}
