//! The Postgres wire protocol with real clients: `psql` and psycopg (Python).

mod common;

use std::process::Command;
use std::time::Duration;

use auditlake_ingest::sample;
use common::service::Running;

const TOKEN: &str = "pg-test-token-81c2";

async fn start(dir: &std::path::Path) -> (Running, sample::Manifest) {
    let (mut config, manifest) = common::service::sample_config(dir, TOKEN);
    config.pg_listen = Some("127.0.0.1:0".parse().expect("addr"));
    let service = Running::start(config).await;
    for _ in 0..600 {
        let status: serde_json::Value = service
            .client
            .get(format!("{}/v1/status", service.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json");
        if status["idle"] == serde_json::Value::Bool(true) {
            return (service, manifest);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never idle");
}

/// Runs `psql` with `password`; returns (success, stdout, stderr).
async fn psql(port: u16, password: &str, sql: &str) -> (bool, String, String) {
    let (password, sql) = (password.to_owned(), sql.to_owned());
    tokio::task::spawn_blocking(move || {
        let output = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "auditor",
                "-d",
                "auditlake",
            ])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", &sql])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .output();
        match output {
            Ok(o) => (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).trim().to_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ),
            Err(e) => {
                assert!(std::env::var("CI").is_err(), "psql cannot run: {e}");
                (false, String::new(), format!("psql cannot run: {e}"))
            }
        }
    })
    .await
    .expect("psql task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_queries_the_lake_with_the_token_as_password_and_cannot_write() {
    if Command::new("psql").arg("--version").output().is_err() {
        assert!(std::env::var("CI").is_err(), "psql is not installed");
        eprintln!("skipped: psql is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (service, manifest) = start(dir.path()).await;
    let port = service.pg.expect("pg address").port();

    let (ok, out, err) = psql(port, TOKEN, "SELECT count(*) FROM cloudtrail").await;
    assert!(ok, "{err}");
    assert_eq!(out, manifest.cloudtrail_rows.to_string());
    let (ok, out, err) = psql(
        port,
        TOKEN,
        "SELECT caller_principal, count(*) FROM assume_role_events WHERE outcome = 'AccessDenied' GROUP BY 1",
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        out,
        format!("{}|{}", sample::DENIED_USER, manifest.assume_role_denied)
    );

    let copy_target = dir.path().join("copied.csv");
    for sql in [
        "DROP TABLE cloudtrail".to_owned(),
        "CREATE TABLE t AS SELECT 1".to_owned(),
        "SET datafusion.execution.batch_size = 1".to_owned(),
        format!("COPY (SELECT 1) TO '{}'", copy_target.display()),
    ] {
        let (ok, _, err) = psql(port, TOKEN, &sql).await;
        assert!(!ok, "{sql} ran");
        assert!(
            err.contains("read-only") || err.contains("42501") || err.contains("ERROR"),
            "{sql}: {err}"
        );
    }
    assert!(!copy_target.exists());

    let (ok, _, err) = psql(port, "wrong", "SELECT 1").await;
    assert!(!ok);
    assert!(
        err.contains("password") || err.contains("authentication"),
        "{err}"
    );

    // Still serving.
    let (ok, out, err) = psql(port, TOKEN, "SELECT 1").await;
    assert!(ok && out == "1", "{err}");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_runs_parameterised_queries() {
    let Some(python) = common::aws::endpoint("AUDITLAKE_TEST_PYTHON") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (service, manifest) = start(dir.path()).await;
    let port = service.pg.expect("pg address").port();
    let script = format!(
        r#"
import psycopg
with psycopg.connect(host="127.0.0.1", port={port}, user="grafana", password="{TOKEN}", dbname="auditlake", connect_timeout=10) as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM mongodb_audit")
        print(cur.fetchone()[0])
        cur.execute("SELECT count(*) FROM mongodb_audit WHERE remote_ip = %s AND result = %s", ("{ip}", 18))
        print(cur.fetchone()[0])
        cur.execute("SELECT session_id, started FROM db_sessions ORDER BY started LIMIT 3")
        rows = cur.fetchall()
        print(len(rows), type(rows[0][1]).__name__)
"#,
        ip = sample::BURST_IP,
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg("-c")
            .arg(script)
            .output()
            .expect("python")
    })
    .await
    .expect("python task");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], manifest.mongodb_audit_rows.to_string());
    assert_eq!(lines[1], manifest.failed_logins_in_burst.to_string());
    assert_eq!(lines[2], "3 datetime");
    service.stop().await;
}
