//! Nothing lost, nothing doubled, nothing corrupt under the faults an operator meets: folder
//! files that grow between runs, a lake whose filesystem fills up while `serve` runs.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use auditlake_ingest::config::ConfigFile;
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

/// `auditlake ingest` of the folder `data` into `lake`, which must succeed.
fn ingest(lake: &Path, data: &Path) {
    let out = Command::new(common::binary())
        .args(["ingest", "--lake"])
        .arg(lake)
        .arg(data)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run auditlake ingest");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
        ingest(&lake, &data);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_files_that_grow_while_serve_runs_keep_every_file_readable_and_each_line_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, lake) = (dir.path().join("data"), dir.path().join("lake"));
    let mut lines = grow(&data, 0, 2);
    let service = Running::start(common::service::folder_config(&lake, &data)).await;
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

/// A tmpfs of its own, mounted by the test (as root) and unmounted when dropped.
struct SmallFilesystem {
    dir: tempfile::TempDir,
}

impl SmallFilesystem {
    /// Mounts `megabytes` of tmpfs; `None` (or a failure under CI) when this process may not.
    fn mount(megabytes: u64) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            assert!(
                std::env::var("CI").is_err(),
                "mounting a tmpfs failed: the fault test runs as root under CI"
            );
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        Some(SmallFilesystem { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// An alert for every login, one per user, address and five minutes: hundreds of alerts,
/// raised by objects of different groups.
const DETECT: &str = "[detect.mongodb_unexpected_network]\nallowed_cidrs = [\"192.0.2.0/24\"]\ndedup_window = \"5m\"\n";

/// What must come out the same: rows of each table and the alert ids.
fn lake_facts(lake: &Path) -> (Vec<usize>, usize) {
    let counts = ["cloudtrail", "mongodb_audit", "rejected", "alerts"]
        .iter()
        .map(|t| sql_count(lake, &format!("SELECT count(*) FROM {t}")))
        .collect();
    let ids = sql_count(lake, "SELECT count(DISTINCT alert_id) FROM alerts");
    (counts, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_whose_filesystem_fills_up_during_serve_gets_every_object_once_when_space_returns() {
    let Some(small) = SmallFilesystem::mount(48) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let options = auditlake_ingest::sample::SampleOptions {
        cloudtrail_records: 40_000,
        audit_lines: 40_000,
        ..Default::default()
    };
    auditlake_ingest::sample::generate(&data, &options).expect("sample");
    let config_file = dir.path().join("auditlake.toml");
    std::fs::write(&config_file, DETECT).expect("config");

    // The same data into a lake with room: what the full one must end up holding.
    let reference = dir.path().join("reference");
    let out = Command::new(common::binary())
        .args(["ingest", "--config"])
        .arg(&config_file)
        .arg("--lake")
        .arg(&reference)
        .arg(&data)
        .env("RUST_LOG", "error")
        .output()
        .expect("run auditlake ingest");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = lake_facts(&reference);
    assert!(expected.1 > 100, "alerts to lose or double: {expected:?}");

    // The lake and its ledger on a filesystem with 2 MB left.
    let lake = small.path().join("lake");
    let filler = small.path().join("filler");
    let free = 2 << 20;
    std::fs::write(&filler, vec![1u8; (48 << 20) - free]).expect("filler");
    let config = common::service::folder_config_from(
        ConfigFile::parse(DETECT, "test").expect("parse"),
        &lake,
        &data,
    );
    let service = Running::start(config).await;

    // The disk fills up: ingestion pauses, nothing is recorded as failed.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = service.get("/v1/status").await;
        if status["sink"]["down"] == true {
            assert!(
                status["sink"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("No space left")),
                "{status}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lake never filled up: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // While it stays (nearly) full, a full disk is never a verdict on an object. The sink may
    // come up between attempts (an abandoned group frees what it wrote, and a probe fits in
    // what is left) and go down again: how often depends on timing, so only that is asserted.
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        let status = service.get("/v1/status").await;
        assert_eq!(status["lake"]["objects_failed"], 0, "{status}");
        assert_eq!(status["process"]["objects_failed"], 0, "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Space returns; no restart.
    std::fs::remove_file(&filler).expect("free space");
    let status = service.wait_idle().await;
    assert_eq!(status["sink"]["down"], false, "{status}");
    assert_eq!(status["lake"]["objects_failed"], 0, "{status}");
    service.stop().await;

    assert_eq!(lake_facts(&lake), expected, "tables and alert ids");
    assert_eq!(
        readable_rows(&lake),
        expected.0[1],
        "every mongodb_audit file reads"
    );
    let temporary: Vec<_> = walkdir::WalkDir::new(&lake)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .map(|e| e.path().display().to_string())
        .collect();
    assert!(temporary.is_empty(), "{temporary:?}");
}

/// Fills the filesystem at `dir` with a file of its own; the file's path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let chunk = vec![1u8; 64 << 10];
    while file.write_all(&chunk).and_then(|()| file.flush()).is_ok() {}
    let _ = file.sync_all();
    path
}

#[test]
fn a_ledger_that_hit_a_full_disk_takes_writes_again_once_space_returns_without_a_restart() {
    use auditlake_ingest::ledger::{Ledger, ObjectEntry, ObjectStatus};
    let Some(small) = SmallFilesystem::mount(16) else {
        return;
    };
    let ledger = Ledger::open(&small.path().join("ledger.redb")).expect("open");
    let entry = |n: usize| ObjectEntry {
        version: format!("v{n}"),
        kind: "cloudtrail".into(),
        status: ObjectStatus::Ingested,
        cloudtrail_rows: 1,
        mongodb_audit_rows: 0,
        rejected_rows: 0,
        duplicate_events: 0,
        alerts: 0,
        bytes: 1,
        // Large entries, so that a few commits need pages the disk no longer has.
        files: (0..400)
            .map(|f| format!("cloudtrail/date=2026-11-01/hour=00/{n}-{f:0>200}.parquet").into())
            .collect(),
    };
    ledger
        .commit("s3://b/first", &entry(0), &[])
        .expect("first commit");
    let filler = fill(small.path());
    let failure = (1..200)
        .find_map(|n| ledger.commit(&format!("s3://b/{n}"), &entry(n), &[]).err())
        .expect("a commit on a full disk fails");
    assert!(failure.needs_reopen(), "{failure}");

    // Space returns: the ledger is reopened in place and takes writes; what was committed
    // before the failure is there.
    std::fs::remove_file(&filler).expect("free space");
    let refused = ledger
        .commit("s3://b/before-reopen", &entry(998), &[])
        .expect_err("redb refuses every write after an I/O error until it is reopened");
    assert!(refused.needs_reopen(), "{refused}");
    ledger.check_writable().expect("writable again");
    ledger
        .commit("s3://b/after", &entry(999), &[])
        .expect("commit after");
    assert_eq!(
        ledger
            .entry("s3://b/first")
            .expect("read")
            .map(|e| e.version),
        Some("v0".into())
    );
    assert_eq!(
        ledger
            .entry("s3://b/after")
            .expect("read")
            .map(|e| e.version),
        Some("v999".into())
    );
}

/// Runs `auditlake` with `args` to its end: whether it succeeded, its stderr, and its peak
/// resident memory in bytes, as GNU time (Debian's `time`) counts it for its own child. Not
/// from a `wait4` of this process: Linux carries a process's high-water mark across `exec`, so
/// a child spawned from the test binary starts at the peak of the test binary, which runs every
/// other integration test beside this one.
fn run_measured(args: &[&std::ffi::OsStr], dir: &Path) -> (bool, String, u64) {
    let stderr_path = dir.join("stderr.txt");
    let peak_path = dir.join("peak-kb.txt");
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&peak_path)
        .arg(common::binary())
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .status()
        .expect("run auditlake under /usr/bin/time");
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    // After a failure GNU time writes a line of its own before the figure.
    let peak_kb: u64 = std::fs::read_to_string(&peak_path)
        .expect("GNU time's output")
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("peak RSS in KB");
    (status.success(), stderr, peak_kb * 1024)
}

#[test]
fn a_gzip_bomb_and_a_huge_sparse_file_are_rejected_holding_no_more_than_the_object_limit() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let host = data.join("orders-prod/orders-prod-shard-00-00.x7k2p.mongodb.net/mongod-audit");
    std::fs::create_dir_all(&host).expect("dir");
    // 1 GiB of zeros in 1,024 gzip members of 1 MiB each: about a megabyte on disk.
    let mut member = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    member.write_all(&vec![0u8; 1 << 20]).expect("gzip");
    let member = member.finish().expect("gzip");
    let bomb = member.repeat(1024);
    std::fs::write(host.join("1780000000-mongod-audit.log.gz"), &bomb).expect("bomb");
    std::fs::write(
        host.join("1780007200-mongod-audit.log"),
        audit_line(0, 0) + &audit_line(0, 1),
    )
    .expect("log");
    // An object decoding holds at most the object limit (the default's value here).
    let limit = 256u64 << 20;
    let bound = limit + (128 << 20);
    let config = dir.path().join("auditlake.toml");
    std::fs::write(&config, "[ingest]\nmax_object_bytes = 268435456\n").expect("config");
    let lake = dir.path().join("lake");
    let ingest = || {
        let (ok, stderr, peak) = run_measured(
            &[
                "ingest".as_ref(),
                "--config".as_ref(),
                config.as_os_str(),
                "--lake".as_ref(),
                lake.as_os_str(),
                data.as_os_str(),
            ],
            dir.path(),
        );
        assert!(ok, "{stderr}");
        peak
    };
    let peak = ingest();
    assert!(
        peak < bound,
        "peak RSS {} MB with the gzip bomb",
        peak >> 20
    );
    // Then 2 GiB that the filesystem does not store.
    std::fs::File::create(host.join("1780003600-mongod-audit.log"))
        .and_then(|f| f.set_len(2 << 30))
        .expect("sparse file");
    let peak = ingest();
    assert!(
        peak < bound,
        "peak RSS {} MB with the sparse file",
        peak >> 20
    );
    assert_eq!(sql_count(&lake, "SELECT count(*) FROM mongodb_audit"), 2);
    assert_eq!(
        sql_count(
            &lake,
            "SELECT count(*) FROM rejected WHERE reason LIKE '%ingest.max_object_bytes%'"
        ),
        2,
        "each oversized object is one rejected row naming the limit"
    );
    assert_eq!(
        sql_count(
            &lake,
            "SELECT count(*) FROM rejected WHERE raw_size = 2147483648 AND reason LIKE '%not read'"
        ),
        1,
        "the sparse file is not read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_an_earlier_version_recorded_as_failed_for_a_lake_write_are_ingested_again() {
    use auditlake_ingest::ledger::{Ledger, ObjectEntry, ObjectStatus};
    use auditlake_ingest::source::LogSource;
    use auditlake_ingest::source::folder::FolderSource;
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, lake) = (dir.path().join("data"), dir.path().join("lake"));
    let lines = grow(&data, 0, 2);
    // What a run on a full disk left: every object recorded as failed, kind `write`.
    let source = FolderSource::new(&data, Duration::ZERO, None).expect("source");
    let listing = source.list().await.expect("list");
    std::fs::create_dir_all(lake.join("_state")).expect("state dir");
    let ledger = Ledger::open(&lake.join("_state/ledger.redb")).expect("ledger");
    for object in &listing.objects {
        let entry = ObjectEntry {
            version: object.version.clone(),
            kind: "write".into(),
            status: ObjectStatus::Failed,
            cloudtrail_rows: 0,
            mongodb_audit_rows: 0,
            rejected_rows: 0,
            duplicate_events: 0,
            alerts: 0,
            bytes: 0,
            files: Vec::new(),
        };
        ledger
            .commit(&object.uri, &entry, &[])
            .expect("record failure");
    }
    drop(ledger);
    ingest(&lake, &data);
    assert_eq!(
        sql_count(&lake, "SELECT count(*) FROM mongodb_audit"),
        FILES * lines
    );
}
