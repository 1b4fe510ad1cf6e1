//! Nothing lost, nothing doubled, nothing corrupt under the faults an operator meets: folder
//! files that grow between runs, a lake whose filesystem fills up while `serve` runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use auditlake_ingest::config::{Config, ConfigFile, LakeSpec, SourceSpec};
use common::service::Running;

/// Atlas audit log files of `FILES` hosts, plain text, one per host.
const FILES: usize = 60;

fn log_file(data: &Path, n: usize) -> PathBuf {
    data.join(format!(
        "orders-prod/orders-prod-shard-00-{n:02}.x7k2p.mongodb.net/mongod-audit/1780000000-mongod-audit.log"
    ))
}

/// One valid audit line, distinct for every `(file, line)`.
fn audit_line(file: usize, line: usize) -> String {
    format!(
        "{{\"atype\":\"authenticate\",\"local\":{{\"ip\":\"192.168.248.2\",\"port\":27017}},\"param\":{{\"db\":\"admin\",\"mechanism\":\"SCRAM-SHA-256\",\"user\":\"app{file}\"}},\"remote\":{{\"ip\":\"10.20.3.15\",\"port\":{}}},\"result\":0,\"roles\":[],\"ts\":{{\"$date\":\"2026-11-01T12:{:02}:{:02}.000+00:00\"}},\"users\":[]}}\n",
        10_000 + line,
        line / 60 % 60,
        line % 60
    )
}

/// Appends `lines` lines to every file (creating it); the lines each file holds now.
fn grow(data: &Path, from: usize, lines: usize) -> usize {
    use std::io::Write;
    for file in 0..FILES {
        let path = log_file(data, file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open");
        for line in from..from + lines {
            out.write_all(audit_line(file, line).as_bytes())
                .expect("append");
        }
    }
    from + lines
}

/// Opens every Parquet file of the lake's `mongodb_audit` table and reads all its rows:
/// the rows, or the first file that cannot be read and why.
fn readable_rows(lake: &Path) -> usize {
    let mut rows = 0;
    for entry in walkdir::WalkDir::new(lake.join("mongodb_audit")) {
        let entry = entry.expect("walk");
        if entry.path().extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        let file = std::fs::File::open(entry.path()).expect("open");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .unwrap_or_else(|e| panic!("{} does not open: {e}", entry.path().display()));
        for batch in reader {
            let batch =
                batch.unwrap_or_else(|e| panic!("{} does not read: {e}", entry.path().display()));
            rows += batch.num_rows();
        }
    }
    rows
}

fn sql_count(lake: &Path, sql: &str) -> usize {
    let out = Command::new(common::binary())
        .args(["sql", "--format", "csv", "--lake"])
        .arg(lake)
        .arg(sql)
        .output()
        .expect("run auditlake sql");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{sql}: {text}"))
}

#[test]
fn folder_files_that_grow_between_one_shot_runs_keep_every_file_readable_and_each_line_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, lake) = (dir.path().join("data"), dir.path().join("lake"));
    let mut lines = grow(&data, 0, 3);
    for round in 0..4 {
        // Default concurrency: objects decode (and replace their earlier rows) side by side.
        let out = Command::new(common::binary())
            .args(["ingest", "--lake"])
            .arg(&lake)
            .arg(&data)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run auditlake ingest");
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(readable_rows(&lake), FILES * lines, "round {round}");
        assert_eq!(
            sql_count(&lake, "SELECT count(*) FROM mongodb_audit"),
            FILES * lines,
            "round {round}"
        );
        assert_eq!(
            sql_count(
                &lake,
                "SELECT count(*) FROM (SELECT DISTINCT source_uri, remote_port FROM mongodb_audit)"
            ),
            FILES * lines,
            "round {round}: a line twice"
        );
        lines = grow(&data, lines, 1);
    }
}

fn folder_config(lake: &Path, data: &Path) -> Config {
    let mut config = Config::from_file(ConfigFile::default(), &|_| None).expect("config");
    config.lake = LakeSpec::Local(lake.to_path_buf());
    config.state_dir = lake.join("_state");
    config.http_listen = "127.0.0.1:0".parse().expect("addr");
    config.poll_interval = Duration::from_millis(100);
    config.settle = Duration::ZERO;
    config.sources = vec![SourceSpec::Folder {
        path: data.to_path_buf(),
        atlas_project: None,
    }];
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_files_that_grow_while_serve_runs_keep_every_file_readable_and_each_line_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, lake) = (dir.path().join("data"), dir.path().join("lake"));
    let mut lines = grow(&data, 0, 2);
    let service = Running::start(folder_config(&lake, &data)).await;
    for round in 0..4 {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while service.scalar("SELECT count(*) FROM mongodb_audit").await as usize != FILES * lines {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: the lake never held each line once"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        service.wait_idle().await;
        assert_eq!(readable_rows(&lake), FILES * lines, "round {round}");
        assert_eq!(
            service
                .scalar(
                    "SELECT count(*) FROM (SELECT DISTINCT source_uri, remote_port FROM mongodb_audit)"
                )
                .await as usize,
            FILES * lines,
            "round {round}: a line twice"
        );
        let status = service.get("/v1/status").await;
        assert_eq!(status["lake"]["objects_failed"], 0, "{status}");
        lines = grow(&data, lines, 1);
    }
    service.stop().await;
}
