//! Abusive requests against the SQL endpoint: each gets the right JSON error, none reads outside
//! the lake, and the server stays healthy afterwards.

use crate::common;

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
            ..QueryLimits::default()
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
        // Long and small: one row per step, a hundred million steps (a join of the table with
        // itself twice could reach the memory pool first).
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 100000000) \
         SELECT count(*) FROM t",
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
    // Refused unread, and the connection it came on is closed, saying so: a client must not
    // send its next request down it.
    let response = api
        .service
        .client
        .post(format!("{}/v1/sql", api.service.base))
        .bearer_auth(TOKEN)
        .body(oversized)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(
        response
            .headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_only_loopback_names_are_served_and_large_results_stream_within_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut config, _) = common::service::sample_config(dir.path(), TOKEN);
    config.http_token = None;
    config.query_limits = QueryLimits {
        max_result_bytes: 3 << 20,
        ..QueryLimits::default()
    };
    config.connections.header_timeout = Duration::from_secs(1);
    let service = Running::start(config).await;
    service.wait_idle().await;
    let port = service.base.rsplit(':').next().expect("port").to_owned();

    // A kept-alive connection that asks nothing more is closed after the header timeout.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = service.base.trim_start_matches("http://").to_owned();
        let mut socket = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        socket
            .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .expect("request");
        let mut buf = vec![0u8; 4096];
        let n = socket.read(&mut buf).await.expect("response");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        let waited = closed_within(&mut socket, Duration::from_secs(5)).await;
        let waited = waited.expect("an idle kept-alive connection is closed");
        assert!(waited >= Duration::from_millis(900), "{waited:?}");
    }
    let client = reqwest::Client::new();
    let post = |host: String, origin: Option<&'static str>| {
        let mut request = client
            .post(format!("{}/v1/sql", service.base))
            .header("Host", host)
            .body("SELECT 1 AS one");
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        request.send()
    };
    // DNS rebinding: a page of another site whose name resolves to 127.0.0.1 reads nothing.
    for (host, origin) in [
        (format!("attacker.example:{port}"), None),
        (format!("127.0.0.1.nip.example:{port}"), None),
        (format!("127.0.0.1:{port}"), Some("http://attacker.example")),
    ] {
        let response = post(host.clone(), origin).await.expect("request");
        assert_eq!(response.status().as_u16(), 403, "{host} {origin:?}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["kind"], "forbidden_host");
    }
    for (host, origin) in [
        (format!("127.0.0.1:{port}"), None),
        (format!("localhost:{port}"), Some("http://localhost:7080")),
        (format!("[::1]:{port}"), None),
    ] {
        let response = post(host.clone(), origin).await.expect("request");
        assert_eq!(response.status().as_u16(), 200, "{host} {origin:?}");
    }

    // Past the first MiB a result streams: whole when it ends under the cap, cut (never
    // ended as if whole) when it passes it.
    let sql = |rows: usize| format!("SELECT repeat('x', 1000) AS s FROM range({rows})");
    let response = client
        .post(format!("{}/v1/sql?format=ndjson", service.base))
        .body(sql(2000))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    let body = response.bytes().await.expect("a whole body");
    assert_eq!(
        body.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        2000
    );
    let response = client
        .post(format!("{}/v1/sql?format=ndjson", service.base))
        .body(sql(10_000))
        .send()
        .await
        .expect("request");
    assert_eq!(
        response.status().as_u16(),
        200,
        "the status went out with the first MiB"
    );
    assert!(
        response.bytes().await.is_err(),
        "a result past the cap is cut off"
    );
    let (status, _) = (
        post(format!("127.0.0.1:{port}"), None)
            .await
            .expect("request")
            .status()
            .as_u16(),
        (),
    );
    assert_eq!(status, 200, "the server is healthy");
    service.stop().await;
}

/// How long the server took to close `socket` (reading and dropping whatever it sends), if it
/// did within `limit`.
async fn closed_within(socket: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

/// A self-signed certificate and key for `localhost` and 127.0.0.1, made with `openssl`.
fn self_signed(dir: &std::path::Path) -> Option<auditlake_query::listen::TlsFiles> {
    let (certificate, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&certificate)
        .output();
    match made {
        Ok(o) if o.status.success() => Some(auditlake_query::listen::TlsFiles { certificate, key }),
        other => {
            assert!(
                std::env::var("CI").is_err(),
                "openssl cannot make a certificate: {other:?}"
            );
            eprintln!("skipped: openssl cannot make a certificate");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_both_servers_speak_tls_and_idle_connections_are_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(tls) = self_signed(dir.path()) else {
        return;
    };
    let (mut config, manifest) = common::service::sample_config(dir.path(), TOKEN);
    config.tls = Some(tls);
    config.pg_listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.connections.header_timeout = Duration::from_secs(1);
    let service = Running::start(config).await;
    let https = service.base.replace("http://", "https://");
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    let mut answered = None;
    for _ in 0..600 {
        let status: Value = client
            .get(format!("{https}/v1/status"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("HTTPS")
            .json()
            .await
            .expect("JSON");
        if status["idle"] == Value::Bool(true) {
            answered = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered.is_some(), "served over HTTPS");
    // Plain HTTP on the TLS port gets no answer.
    assert!(
        reqwest::Client::new()
            .get(format!("{}/healthz", service.base))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .is_err()
    );

    let port = service.pg.expect("pg").port();
    let (ok, out, err) = common::psql(
        port,
        TOKEN,
        "SELECT count(*) FROM cloudtrail",
        &[("PGSSLMODE", "require")],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, manifest.cloudtrail_rows.to_string());

    // A connection that never starts its TLS handshake is closed after the header timeout.
    let addr: std::net::SocketAddr = service
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let waited = closed_within(&mut socket, Duration::from_secs(5)).await;
    let waited = waited.expect("a connection without a handshake is closed");
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    service.stop().await;
}
