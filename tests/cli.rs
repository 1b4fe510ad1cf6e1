//! The command line as a user runs it.

use crate::common;

use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(common::binary())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run auditlake");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn config_check_names_the_bad_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "lake = \"l\"\n[ingest]\nconcurency = 2\n").expect("write");
    let (ok, _, unknown_key) = run(&["config", "check", bad.to_str().expect("utf-8")]);
    assert!(!ok);
    assert!(unknown_key.contains("concurency"), "{unknown_key}");

    let invalid = dir.path().join("invalid.toml");
    std::fs::write(&invalid, "[ingest]\nconcurrency = 0\n").expect("write");
    let (ok, _, bad_value) = run(&["config", "check", invalid.to_str().expect("utf-8")]);
    assert!(!ok);
    assert!(bad_value.contains("ingest.concurrency"), "{bad_value}");

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "lake = \"l\"\n[[source]]\ntype = \"folder\"\npath = \"d\"\n",
    )
    .expect("write");
    let (ok, valid, stderr) = run(&["config", "check", good.to_str().expect("utf-8")]);
    assert!(ok, "{stderr}");
    assert!(valid.contains("is valid"), "{valid}");

    // What the user reads, whole: the file, the key, where in the file, and what is wrong.
    let folder = regex::escape(&dir.path().display().to_string());
    insta::with_settings!({ filters => vec![(folder.as_str(), "[dir]")] }, {
        insta::assert_snapshot!("config_check_unknown_key", unknown_key);
        insta::assert_snapshot!("config_check_bad_value", bad_value);
        insta::assert_snapshot!("config_check_valid", valid);
    });
}

#[test]
fn generate_ingest_and_query_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let lake = dir.path().join("lake");
    let (ok, stdout, stderr) = run(&["sample", "generate", "--out", data.to_str().expect("utf-8")]);
    assert!(ok, "{stderr}");
    let manifest: serde_json::Value = serde_json::from_str(&stdout).expect("manifest JSON");

    let (ok, stdout, stderr) = run(&[
        "ingest",
        "--lake",
        lake.to_str().expect("utf-8"),
        data.to_str().expect("utf-8"),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!("{} cloudtrail rows", manifest["cloudtrail_rows"])),
        "{stdout}"
    );
    // The sample is the same for its seed, so is the whole summary of ingesting it.
    insta::assert_snapshot!("ingest_sample_summary", stdout);

    // A second one-shot run finds nothing new.
    let (ok, stdout, _) = run(&[
        "ingest",
        "--lake",
        lake.to_str().expect("utf-8"),
        data.to_str().expect("utf-8"),
    ]);
    assert!(ok);
    assert!(stdout.starts_with("ingested 0 objects"), "{stdout}");

    let (ok, stdout, stderr) = run(&[
        "sql",
        "--lake",
        lake.to_str().expect("utf-8"),
        "--format",
        "csv",
        "SELECT count(*) AS n FROM mongodb_audit",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, format!("n\n{}\n", manifest["mongodb_audit_rows"]));

    let (ok, stdout, _) = run(&[
        "sql",
        "--lake",
        lake.to_str().expect("utf-8"),
        "SELECT event_name FROM cloudtrail WHERE user_type = 'IAMUser'",
    ]);
    assert!(ok);
    assert!(stdout.contains("| AssumeRole |"), "{stdout}");

    let (ok, stdout, stderr) = run(&[
        "sql",
        "--lake",
        lake.to_str().expect("utf-8"),
        "SELECT event_name, user_name, count(*) AS calls FROM cloudtrail \
         WHERE user_type = 'IAMUser' GROUP BY event_name, user_name ORDER BY event_name, user_name",
    ]);
    assert!(ok, "{stderr}");
    insta::assert_snapshot!("sql_table_of_iam_user_calls", stdout);

    let (ok, _, stderr) = run(&[
        "sql",
        "--lake",
        lake.to_str().expect("utf-8"),
        "DROP TABLE cloudtrail",
    ]);
    assert!(!ok);
    assert!(stderr.contains("error"), "{stderr}");
}

#[test]
fn committed_sample_data_is_what_the_generator_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    auditlake_ingest::sample::generate(
        dir.path(),
        &auditlake_ingest::sample::SampleOptions::default(),
    )
    .expect("generate");
    let committed = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sample-data");
    let files = |root: &std::path::Path| -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<_> = walkdir::WalkDir::new(root)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                let relative = e
                    .path()
                    .strip_prefix(root)
                    .expect("prefix")
                    .display()
                    .to_string();
                (relative, std::fs::read(e.path()).expect("read"))
            })
            .collect();
        out.sort();
        out
    };
    let fresh = files(dir.path());
    let kept = files(&committed);
    assert_eq!(
        fresh.len(),
        kept.len(),
        "file count; regenerate with `auditlake sample generate --out sample-data`"
    );
    for ((name_a, bytes_a), (name_b, bytes_b)) in fresh.iter().zip(&kept) {
        assert_eq!(name_a, name_b);
        assert!(
            bytes_a == bytes_b,
            "{name_a} differs; regenerate sample-data"
        );
    }
}

/// A configuration that names a lake and no source serves queries only: it never falls back to
/// the sample day, not even when `./sample-data` is in the folder it runs from.
#[test]
fn a_configuration_without_sources_serves_queries_only() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, _, err) = run(&[
        "sample",
        "generate",
        "--out",
        &dir.path().join("sample-data").display().to_string(),
    ]);
    assert!(ok, "{err}");
    let lake = dir.path().join("auditors-lake");
    std::fs::create_dir_all(&lake).expect("lake");
    let config = dir.path().join("query-node.toml");
    std::fs::write(
        &config,
        format!(
            "lake = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            lake.display()
        ),
    )
    .expect("config");
    let mut child = Command::new(common::binary())
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("welcome");
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(str::to_owned);
    let client = reqwest::blocking::Client::new();
    let status: Option<serde_json::Value> = base.as_ref().and_then(|base| {
        std::thread::sleep(std::time::Duration::from_secs(2));
        client
            .get(format!("{base}/v1/status"))
            .send()
            .ok()?
            .json()
            .ok()
    });
    let count: Option<serde_json::Value> = base.as_ref().and_then(|base| {
        client
            .post(format!("{base}/v1/sql"))
            .body("SELECT count(*) AS n FROM cloudtrail")
            .send()
            .ok()?
            .json()
            .ok()
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.contains("queries only"), "{first}");
    let status = status.expect("status");
    assert_eq!(status["sources"], serde_json::json!([]), "{status}");
    let count = count.expect("a query answered");
    assert_eq!(count["rows"][0]["n"], 0, "nothing ingested: {count}");
}

/// Average bytes of compact JSON per CloudTrail record under `folder`.
fn average_cloudtrail_record_bytes(folder: &std::path::Path) -> usize {
    use std::io::Read;
    let (mut records, mut bytes) = (0, 0);
    for entry in walkdir::WalkDir::new(folder) {
        let entry = entry.expect("walk");
        let path = entry.path().to_string_lossy().into_owned();
        if !path.ends_with(".json.gz") || !path.contains("/CloudTrail/") {
            continue;
        }
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(entry.path()).expect("open"))
            .read_to_string(&mut text)
            .expect("gunzip");
        let document: serde_json::Value = serde_json::from_str(&text).expect("json");
        for record in document["Records"].as_array().expect("records") {
            records += 1;
            bytes += record.to_string().len();
        }
    }
    bytes / records
}

#[test]
fn sample_records_can_be_made_larger_for_the_benchmark() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (natural, large) = (dir.path().join("natural"), dir.path().join("large"));
    for (out, size) in [(&natural, None), (&large, Some("1400"))] {
        let mut args = vec![
            "sample",
            "generate",
            "--out",
            out.to_str().expect("utf-8"),
            "--cloudtrail-records",
            "5000",
        ];
        args.extend(size.map(|s| ["--record-size", s]).into_iter().flatten());
        let (ok, _, stderr) = run(&args);
        assert!(ok, "{stderr}");
    }
    let natural = average_cloudtrail_record_bytes(&natural);
    let large = average_cloudtrail_record_bytes(&large);
    assert!((850..1050).contains(&natural), "{natural}");
    assert!((1300..1500).contains(&large), "{large}");
}
