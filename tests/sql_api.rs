//! Abusive requests against the SQL endpoint: each gets the right JSON error, none reads outside
//! the lake, and the server stays healthy afterwards.

mod common;

use std::time::Duration;

use auditlake_query::QueryLimits;
use common::service::Running;
use serde_json::Value;

const TOKEN: &str = "test-token-4f9a";

struct Api {
    service: Running,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut config, _) = common::service::sample_config(dir.path(), TOKEN);
        config.query_limits = QueryLimits {
            timeout: Duration::from_secs(2),
            memory_bytes: 8 << 20,
            max_result_rows: 1_000,
            max_result_bytes: 8 << 20,
            max_concurrent: 4,
        };
        let service = Running::start(config).await;
        let api = Api { service, _dir: dir };
        api.wait_idle().await;
        api
    }

    async fn wait_idle(&self) {
        for _ in 0..600 {
            let status = self.request("GET", "/v1/status", None, Some(TOKEN)).await.1;
            if status["idle"] == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never idle");
    }

    /// (status, JSON body) of a request; `body` is sent as plain-text SQL.
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.service.base);
        let mut request = match method {
            "GET" => self.service.client.get(url),
            _ => self.service.client.post(url),
        };
        if let Some(body) = body {
            request = request.body(body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn sql(&self, sql: &str) -> (u16, Value) {
        self.request(
            "POST",
            "/v1/sql",
            Some(sql.as_bytes().to_vec()),
            Some(TOKEN),
        )
        .await
    }

    async fn assert_refused(&self, sql: &str, status: u16, kind: &str) -> String {
        let (got, body) = self.sql(sql).await;
        assert_eq!(got, status, "{sql}: {body}");
        assert_eq!(body["kind"], kind, "{sql}: {body}");
        body["error"].as_str().unwrap_or_default().to_owned()
    }

    async fn assert_healthy(&self) {
        let (status, body) = self.sql("SELECT count(*) AS n FROM cloudtrail").await;
        assert_eq!(status, 200, "{body}");
        assert!(body["rows"][0]["n"].as_i64() > Some(0), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusive_requests_get_clear_errors_and_leave_the_server_healthy() {
    let api = Api::start().await;
    let outside = tempfile::tempdir().expect("tempdir");
    let secret = outside.path().join("secret.csv");
    std::fs::write(&secret, "password\nhunter2\n").expect("secret");
    let secret = secret.display().to_string();
    let copy_target = outside.path().join("copied.csv");

    // Files and URLs outside the lake are not tables.
    for sql in [
        format!("SELECT * FROM '{secret}'"),
        format!("SELECT * FROM 'file://{secret}'"),
        "SELECT * FROM 's3://other-bucket/data.parquet'".to_owned(),
        "SELECT * FROM read_csv('/etc/passwd')".to_owned(),
        "SELECT * FROM read_parquet('/etc/passwd')".to_owned(),
    ] {
        let message = api.assert_refused(&sql, 400, "rejected").await;
        assert!(!message.contains("hunter2"), "{message}");
    }
    // Statements that change or reach outside anything are refused before planning.
    for sql in [
        format!("CREATE EXTERNAL TABLE stolen (password TEXT) STORED AS CSV LOCATION '{secret}'"),
        format!(
            "COPY (SELECT * FROM cloudtrail) TO '{}'",
            copy_target.display()
        ),
        "DROP TABLE cloudtrail".to_owned(),
        "CREATE TABLE t AS SELECT 1".to_owned(),
        "INSERT INTO cloudtrail SELECT * FROM cloudtrail".to_owned(),
        "DELETE FROM cloudtrail".to_owned(),
        "SET datafusion.execution.batch_size = 1".to_owned(),
        "SELECT 1; DROP TABLE cloudtrail".to_owned(),
        "SELECT 1; SELECT 2".to_owned(),
        "EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'".to_owned(),
    ] {
        api.assert_refused(&sql, 400, "rejected").await;
    }
    assert!(!copy_target.exists());
    // Malformed SQL.
    api.assert_refused("SELEC * FROM cloudtrail", 400, "rejected")
        .await;
    api.assert_refused("SELECT * FROM", 400, "rejected").await;
    api.assert_refused("SELECT * FROM no_such_table", 400, "rejected")
        .await;

    // Reads of every allowed kind work.
    for sql in [
        "WITH t AS (SELECT event_name FROM cloudtrail) SELECT count(*) FROM t",
        "EXPLAIN SELECT * FROM cloudtrail WHERE date = '2026-11-01'",
        "SHOW TABLES",
        "SHOW COLUMNS FROM cloudtrail",
        "DESCRIBE mongodb_audit",
    ] {
        let (status, body) = api.sql(sql).await;
        assert_eq!(status, 200, "{sql}: {body}");
    }

    // Costs: a result over the cap, a query over the time limit, one over the memory pool.
    let message = api
        .assert_refused(
            "SELECT * FROM generate_series(1, 100000)",
            422,
            "result_too_large",
        )
        .await;
    assert!(message.contains("1000 rows"), "{message}");
    let started = std::time::Instant::now();
    api.assert_refused(
        "SELECT count(*) FROM cloudtrail a CROSS JOIN cloudtrail b CROSS JOIN cloudtrail c \
         WHERE a.event_id < b.event_id AND b.event_id < c.event_id",
        408,
        "timeout",
    )
    .await;
    // The limit is 2 s; the answer comes on time even though the query keeps the cores busy.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    api.assert_refused(
        "SELECT count(*) FROM (SELECT a.event_id || b.event_id AS x FROM cloudtrail a CROSS JOIN cloudtrail b) l \
         JOIN (SELECT a.event_id || b.event_id AS y FROM cloudtrail a CROSS JOIN cloudtrail b) r ON l.x = r.y",
        422,
        "memory_limit",
    )
    .await;
    api.assert_healthy().await;

    // Authentication and transport.
    let (status, body) = api
        .request("POST", "/v1/sql", Some(b"SELECT 1".to_vec()), None)
        .await;
    assert_eq!((status, body["kind"].as_str()), (401, Some("unauthorized")));
    let (status, _) = api
        .request("POST", "/v1/sql", Some(b"SELECT 1".to_vec()), Some("wrong"))
        .await;
    assert_eq!(status, 401);
    let (status, _) = api.request("GET", "/metrics", None, None).await;
    assert_eq!(status, 401);
    let (status, _) = api.request("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    let oversized = format!("SELECT '{}'", "x".repeat(2 << 20)).into_bytes();
    let (status, _) = api
        .request("POST", "/v1/sql", Some(oversized), Some(TOKEN))
        .await;
    assert_eq!(status, 413);
    let (status, body) = api
        .request(
            "POST",
            "/v1/sql?format=xml",
            Some(b"SELECT 1".to_vec()),
            Some(TOKEN),
        )
        .await;
    assert_eq!((status, body["kind"].as_str()), (400, Some("bad_request")));

    api.assert_healthy().await;
    api.service.stop().await;
}
