//! The Postgres wire protocol with real clients: `psql` and psycopg (Python).

use crate::common;

use std::process::Command;

use auditlake_ingest::sample;
use common::service::Running;

const TOKEN: &str = "pg-test-token-81c2";

async fn start(dir: &std::path::Path) -> (Running, sample::Manifest) {
    let (mut config, manifest) = common::service::sample_config(dir, TOKEN);
    config.pg_listen = Some("127.0.0.1:0".parse().expect("addr"));
    let service = Running::start(config).await;
    service.wait_idle().await;
    (service, manifest)
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

    let (ok, out, err) = common::psql(port, TOKEN, "SELECT count(*) FROM cloudtrail", &[]).await;
    assert!(ok, "{err}");
    assert_eq!(out, manifest.cloudtrail_rows.to_string());
    let (ok, out, err) = common::psql(
        port,
        TOKEN,
        "SELECT caller_principal, count(*) FROM assume_role_events WHERE outcome = 'AccessDenied' GROUP BY 1",
        &[],
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
        let (ok, _, err) = common::psql(port, TOKEN, &sql, &[]).await;
        assert!(!ok, "{sql} ran");
        assert!(
            err.contains("read-only") || err.contains("42501") || err.contains("ERROR"),
            "{sql}: {err}"
        );
    }
    assert!(!copy_target.exists());

    let (ok, _, err) = common::psql(port, "wrong", "SELECT 1", &[]).await;
    assert!(!ok);
    assert!(
        err.contains("password") || err.contains("authentication"),
        "{err}"
    );

    // Still serving.
    let (ok, out, err) = common::psql(port, TOKEN, "SELECT 1", &[]).await;
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

/// Expands the Grafana PostgreSQL macros and `$role` the way Grafana does for a time range and
/// the variable's "All" value.
fn expand_grafana(sql: &str, from: &str, to: &str, roles: &[String]) -> String {
    let time_filter = regex::Regex::new(r"\$__timeFilter\(([^)]+)\)").expect("regex");
    let time_group =
        regex::Regex::new(r"\$__timeGroupAlias\(([^,]+),\s*'(\d+)h'\)").expect("regex");
    let sql = time_filter.replace_all(sql, format!("$1 BETWEEN '{from}' AND '{to}'"));
    let sql = time_group.replace_all(&sql, |c: &regex::Captures<'_>| {
        let seconds = c[2].parse::<u64>().expect("hours") * 3600;
        format!(
            "floor(extract(epoch from {})/{seconds})*{seconds} AS \"time\"",
            &c[1]
        )
    });
    let quoted: Vec<String> = roles
        .iter()
        .map(|r| format!("'{}'", r.replace('\'', "''")))
        .collect();
    let sql = sql.replace("$role", &quoted.join(","));
    assert!(
        !sql.contains('$'),
        "a macro or variable left unexpanded: {sql}"
    );
    sql
}

/// Runs each query through psycopg; returns per query `{"columns": [...], "rows": [[...]]}`.
async fn psycopg_rows(python: &str, port: u16, queries: &[String]) -> Vec<serde_json::Value> {
    let script = format!(
        r#"
import json, sys, psycopg
out = []
with psycopg.connect(host="127.0.0.1", port={port}, user="grafana", password="{TOKEN}", dbname="auditlake", connect_timeout=10) as conn:
    for query in json.load(sys.stdin):
        with conn.cursor() as cur:
            cur.execute(query)
            out.append({{"columns": [d.name for d in cur.description], "rows": [[str(v) if v is not None else None for v in row] for row in cur.fetchall()]}})
print(json.dumps(out))
"#
    );
    let python = python.to_owned();
    let input = serde_json::to_vec(queries).expect("json");
    let output = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new(python)
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&input)
            .expect("write queries");
        child.wait_with_output().expect("python output")
    })
    .await
    .expect("python task");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("python printed JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grafana_panel_runs_through_psycopg_and_psql() {
    let Some(python) = common::aws::endpoint("AUDITLAKE_TEST_PYTHON") else {
        return;
    };
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/auditlake.json");
    let dashboard: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("dashboard")).expect("dashboard JSON");
    let dir = tempfile::tempdir().expect("tempdir");
    let (service, _manifest) = start(dir.path()).await;
    let port = service.pg.expect("pg address").port();

    // The dashboard's one variable, from its own query.
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    assert_eq!(variables.len(), 1);
    let variable_sql = variables[0]["query"]
        .as_str()
        .expect("variable query")
        .to_owned();
    let roles: Vec<String> = psycopg_rows(&python, port, &[variable_sql]).await[0]["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r[0].as_str().map(str::to_owned))
        .collect();
    assert!(!roles.is_empty(), "the role variable lists no role");

    // A range from the day before the sample's day (2026-11-01) to now, as "last N days" would be.
    let from = "2026-10-31T00:00:00Z";
    let to = (chrono::Utc::now() + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    let mut queries = Vec::new();
    let mut empty_range = Vec::new();
    for panel in panels {
        assert_eq!(
            panel["datasource"]["type"], "grafana-postgresql-datasource",
            "{}",
            panel["title"]
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} has no query", panel["title"]);
        for target in targets {
            let sql = target["rawSql"].as_str().expect("rawSql");
            queries.push((
                panel.clone(),
                target["format"].clone(),
                expand_grafana(sql, from, &to, &roles),
            ));
            empty_range.push(expand_grafana(
                sql,
                "1990-01-01T00:00:00Z",
                "1990-01-02T00:00:00Z",
                &roles,
            ));
        }
    }
    let sql: Vec<String> = queries.iter().map(|(_, _, s)| s.clone()).collect();
    let results = psycopg_rows(&python, port, &sql).await;
    for ((panel, format, sql), result) in queries.iter().zip(&results) {
        let title = panel["title"].as_str().unwrap_or_default();
        let rows = result["rows"].as_array().expect("rows");
        assert!(!rows.is_empty(), "{title}: no rows from {sql}");
        if panel["type"] == "stat" {
            let value: i64 = rows[0][0]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            assert!(value > 0, "{title}: {value}");
        }
        if format == "time_series" {
            assert_eq!(result["columns"][0], "time", "{title}: {result}");
        }
    }
    // The time filter filters: a range with no data empties every panel but the counts, which are 0.
    let results = psycopg_rows(&python, port, &empty_range).await;
    for ((panel, _, _), result) in queries.iter().zip(&results) {
        let rows = result["rows"].as_array().expect("rows");
        if panel["type"] == "stat" {
            assert_eq!(rows[0][0], "0", "{}", panel["title"]);
        } else {
            assert!(rows.is_empty(), "{}: {result}", panel["title"]);
        }
    }

    // psql (the simple query protocol) runs every panel too.
    for (panel, _, sql) in &queries {
        let (ok, out, err) = common::psql(port, TOKEN, sql, &[]).await;
        assert!(ok && !out.is_empty(), "{}: {err}", panel["title"]);
    }
    service.stop().await;
}
