//! Attacks on the SQL surfaces of the real binary, as a client holding the token would make
//! them (and, for the connection bounds, one without it): over HTTP, the Postgres simple
//! protocol (psql, psycopg's client cursors) and the extended protocol (psycopg's prepared
//! statements). Each asserts the exact refusal or limit; afterwards the server is healthy, its
//! memory under a bound, no secret is anywhere it shows, and ingestion went on meanwhile.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

const TOKEN: &str = "attack-token-5d21";
/// The webhook's URL holds its secret, as a Slack URL does; nothing listens on its port.
const WEBHOOK_SECRET: &str = "T0SECRET9/B0SECRET7/xoxSECRETxox";
/// Small limits, so that every attack is quick.
const MEMORY_LIMIT: u64 = 64 << 20;
const MAX_RESULT_BYTES: usize = 512 << 10;
const MAX_STATEMENT_BYTES: usize = 64 << 10;
const MAX_CONNECTIONS: usize = 8;
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// The process's heap above which running queries are stopped.
const MAX_HEAP_BYTES: u64 = 256 << 20;
/// Peak resident memory allowed over the whole suite: the heap bound, plus what the allocator
/// keeps of freed memory and the binary itself.
const PEAK_RSS_BOUND: u64 = MAX_HEAP_BYTES + (256 << 20);

struct Serve {
    child: Child,
    base: String,
    pg: SocketAddr,
    log: PathBuf,
    data: PathBuf,
    client: reqwest::blocking::Client,
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, data: &Path) -> PathBuf {
    let config = format!(
        r#"
lake = "{lake}"

[http]
listen = "127.0.0.1:0"
pg_listen = "127.0.0.1:0"
max_connections = {MAX_CONNECTIONS}
header_timeout = "{header}ms"
idle_timeout = "5s"

[sql]
# Long enough that the memory-bound queries reach their limit first on a loaded two-core
# machine (at 3 s, one run in three timed out before the distinct count hit the spill limit).
timeout = "8s"
memory_limit = {MEMORY_LIMIT}
max_result_rows = 1000000
max_result_bytes = {MAX_RESULT_BYTES}
max_concurrent = 2
max_function_bytes = 16777216
max_statement_bytes = {MAX_STATEMENT_BYTES}
max_spill_bytes = 67108864
max_heap_bytes = {MAX_HEAP_BYTES}

[ingest]
poll_interval = "200ms"
settle = "0s"

[[source]]
type = "folder"
path = "{data}"

[alerts]
give_up_after = "1h"

[[alerts.webhook]]
name = "slack"
format = "slack"
url_env = "ATTACK_WEBHOOK_URL"
"#,
        lake = dir.join("lake").display(),
        header = HEADER_TIMEOUT.as_millis(),
        data = data.display(),
    );
    let path = dir.join("auditlake.toml");
    std::fs::write(&path, config).expect("config");
    path
}

fn start(dir: &Path) -> Serve {
    use std::io::BufRead;
    let data = dir.join("data");
    let generated = Command::new(common::binary())
        .args(["sample", "generate", "--out"])
        .arg(&data)
        .output()
        .expect("sample generate");
    assert!(generated.status.success());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let webhook = format!(
        "http://{}/services/{WEBHOOK_SECRET}",
        closed.local_addr().expect("addr")
    );
    drop(closed);
    let config = write_config(dir, &data);
    let log = dir.join("serve.log");
    let mut child = Command::new(common::binary())
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "debug")
        .env("AUDITLAKE_HTTP_TOKEN", TOKEN)
        .env("ATTACK_WEBHOOK_URL", &webhook)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn auditlake serve");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut welcome = String::new();
    let (mut base, mut pg) = (None, None);
    while base.is_none() || pg.is_none() {
        welcome.clear();
        if stdout.read_line(&mut welcome).expect("welcome") == 0 {
            panic!(
                "serve ended: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let words: Vec<&str> = welcome.split_whitespace().collect();
        if base.is_none() {
            base = words
                .iter()
                .find(|w| w.starts_with("http://"))
                .map(|w| (*w).to_owned());
        }
        if let Some(i) = words.iter().position(|w| *w == "-p") {
            let port: u16 = words[i + 1].parse().expect("pg port");
            pg = Some(SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }
    Serve {
        child,
        base: base.expect("url"),
        pg: pg.expect("pg"),
        log,
        data,
        client: reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        _stdout: stdout,
    }
}

impl Serve {
    /// [`Serve::post`] again while the answer is busy (429: the slots of queries stopped just
    /// before are freed once their tasks have ended, which may come after their answers).
    fn post_when_free(&self, path: &str, body: &str) -> (u16, Value) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, answer) = self.post(path, body.to_owned());
            if status != 429 || Instant::now() > deadline {
                return (status, answer);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn post(&self, path: &str, body: impl Into<reqwest::blocking::Body>) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
            .expect("request");
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn sql(&self, sql: &str) -> (u16, Value) {
        self.post("/v1/sql", sql.to_owned())
    }

    fn scalar(&self, sql: &str) -> i64 {
        let (status, body) = self.sql(sql);
        assert_eq!(status, 200, "{sql}: {body}");
        body["rows"][0]
            .as_object()
            .and_then(|row| row.values().next())
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("{sql}: {body}"))
    }

    fn get(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null)
    }

    fn wait_idle(&self) {
        for _ in 0..600 {
            if self.get("/v1/status")["idle"] == Value::Bool(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("never idle");
    }

    /// `VmRSS` and `VmHWM` (peak) of the server, in bytes.
    fn memory(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
                .map(|kb| kb * 1024)
                .expect("memory field")
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// CPU seconds the server has used.
    fn cpu(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("stat");
        let after = stat.rsplit_once(')').expect("comm").1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 =
            fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
        ticks / 100.0
    }

    /// Waits until the server uses (almost) no CPU for a second: nothing runs on.
    fn assert_quiet_within(&self, limit: Duration, what: &str) {
        let started = Instant::now();
        loop {
            let before = self.cpu();
            std::thread::sleep(Duration::from_secs(1));
            let used = self.cpu() - before;
            if used < 0.3 {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "{what}: the server still used {used:.2} CPU-s a second after"
            );
        }
    }

    fn assert_healthy(&self) {
        let health = self
            .client
            .get(format!("{}/healthz", self.base))
            .send()
            .expect("healthz");
        assert_eq!(health.status().as_u16(), 200);
        assert_eq!(self.scalar("SELECT 1 + 1"), 2);
    }
}

/// Runs `cases` (JSON: `[{"sql": …, "mode": "simple" | "extended"}]`) through psycopg, one
/// connection each; returns per case `{"ok", "rows"}` or `{"ok": false, "sqlstate", "message"}`.
fn psycopg(python: &str, pg: SocketAddr, script: &str, cases: &Value) -> Vec<Value> {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(format!("{PSYCOPG_PRELUDE}\n{script}"))
        .arg(pg.port().to_string())
        .arg(TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    // The cases go through standard input: a long statement is longer than an argument may be.
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(cases.to_string().as_bytes())
        .expect("cases");
    drop(stdin);
    let output = child.wait_with_output().expect("python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

const PSYCOPG_PRELUDE: &str = r#"
import json, os, sys, threading, time
import psycopg
port, password = int(sys.argv[1]), sys.argv[2]
raw = sys.stdin.read()
cases = json.loads(raw) if raw.strip() else None
def connect():
    return psycopg.connect(host="127.0.0.1", port=port, user="auditor", dbname="auditlake",
                           password=password, autocommit=True, connect_timeout=10)
def run(conn, sql, mode):
    if mode == "simple":
        cur = psycopg.ClientCursor(conn)
        cur.execute(sql)
    else:
        cur = conn.cursor()
        cur.execute(sql, prepare=True)
    return cur.fetchall() if cur.description else []
def outcome(f):
    started = time.time()
    try:
        rows = f()
        return {"ok": True, "rows": len(rows), "seconds": time.time() - started}
    except psycopg.Error as e:
        return {"ok": False, "sqlstate": e.sqlstate, "message": str(e), "seconds": time.time() - started}
"#;

const RUN_CASES: &str = r#"
out = []
for case in cases:
    def one():
        with connect() as conn:
            return run(conn, case["sql"], case["mode"])
    out.append(outcome(one))
print(json.dumps(out))
"#;

fn cases(sqls: &[&str]) -> Value {
    let mut all = Vec::new();
    for sql in sqls {
        for mode in ["simple", "extended"] {
            all.push(serde_json::json!({"sql": sql, "mode": mode}));
        }
    }
    Value::Array(all)
}

fn assert_pg_refused(results: &[Value], cases: &Value, sqlstate: &str) {
    for (result, case) in results.iter().zip(cases.as_array().expect("cases")) {
        assert_eq!(result["ok"], false, "{case} ran: {result}");
        assert_eq!(result["sqlstate"], sqlstate, "{case}: {result}");
    }
}

/// Statements that would create a table, in every form: each refused, none creates one.
const WRITES: [&str; 8] = [
    "SELECT * INTO cloudtrail_reviewed FROM cloudtrail LIMIT 1",
    "SELECT 1 AS a INTO TEMPORARY forged",
    "SELECT 1 AS a INTO UNLOGGED forged",
    "SELECT 1 AS a INTO lake.forged",
    "SELECT 1 AS a INTO auditlake.lake.forged",
    "WITH x AS (SELECT 1 AS a) SELECT * INTO forged FROM x",
    "SELECT 1 AS a UNION SELECT 2 INTO forged",
    "CREATE TABLE forged AS SELECT 1 AS a",
];

/// Statements that change or reach outside anything.
const STATEMENTS: [&str; 7] = [
    "CREATE EXTERNAL TABLE stolen (line TEXT) STORED AS CSV LOCATION '/etc/passwd'",
    "COPY (SELECT * FROM cloudtrail) TO 'auditlake-attack-copy.csv'",
    "DROP TABLE cloudtrail",
    "INSERT INTO cloudtrail SELECT * FROM cloudtrail",
    "DELETE FROM cloudtrail",
    "SET datafusion.execution.batch_size = 1",
    "CREATE VIEW forged AS SELECT 1 AS a",
];

/// Files and URLs outside the lake, which are not tables.
const OUTSIDE: [&str; 4] = [
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM 'file:///etc/passwd'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM 's3://other-bucket/data.parquet'",
];

/// Calls whose output would be far larger than their input.
const AMPLIFIERS: [&str; 6] = [
    "SELECT length(repeat('x', 1500000000))",
    "SELECT cardinality(range(1, 1000000000))",
    "SELECT cardinality(array_repeat('x', 1000000000))",
    "SELECT count(*) FROM (SELECT unnest(range(1, 200000000)))",
    "SELECT length(lpad('x', 1500000000))",
    "SELECT count(*) FROM (SELECT unnest(generate_series(1, 200000000)))",
];

/// A query that holds far more than the pool: the sets of a distinct count.
const UNACCOUNTED: &str =
    "SELECT count(DISTINCT x) FROM (SELECT value % 50000000 AS x FROM range(200000000))";

/// A CPU-bound query that runs until the time limit.
const ENDLESS: &str = "SELECT count(*) FROM range(1000000000000)";

/// The start of a body, for messages.
fn brief(body: &Value) -> String {
    body.to_string().chars().take(300).collect()
}

fn table_names(serve: &Serve) -> Vec<String> {
    let tables = serve.get("/v1/tables");
    tables["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn raw_connections(addr: SocketAddr, n: usize, first_bytes: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut socket = TcpStream::connect(addr).expect("connect");
            socket.write_all(first_bytes).expect("write");
            socket
        })
        .collect()
}

/// Whether the server closed every socket within `limit`.
fn all_closed_within(sockets: &mut [TcpStream], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    sockets.iter_mut().all(|socket| {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(10));
        socket.set_read_timeout(Some(left)).expect("timeout");
        let mut buf = [0u8; 4096];
        loop {
            match socket.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    })
}

/// Copies the CloudTrail objects of a second sample into the source folder, one every 50 ms,
/// while the attacks run.
fn feed(from: PathBuf, to: PathBuf) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut copied = 0;
        for entry in walkdir::WalkDir::new(&from).sort_by_file_name() {
            let entry = entry.expect("walk");
            let path = entry.path();
            if !entry.file_type().is_file() || !path.to_string_lossy().contains("/CloudTrail/") {
                continue;
            }
            let target = to
                .join("more")
                .join(path.strip_prefix(&from).expect("below"));
            std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
            std::fs::copy(path, &target).expect("copy");
            copied += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        copied
    })
}

#[test]
fn every_sql_surface_holds_its_limits_under_attack_and_ingestion_goes_on() {
    let Some(python) = common::aws::endpoint("AUDITLAKE_TEST_PYTHON") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = start(dir.path());
    serve.wait_idle();
    let rows_before = serve.scalar("SELECT count(*) FROM cloudtrail");
    let tables_before = table_names(&serve);

    let more = dir.path().join("more-sample");
    let generated = Command::new(common::binary())
        .args(["sample", "generate", "--seed", "99", "--out"])
        .arg(&more)
        .output()
        .expect("sample generate");
    assert!(generated.status.success());
    let feeder = feed(more, serve.data.clone());

    // 1. Read-only on every path: HTTP, pg simple and extended, cursors.
    for sql in WRITES {
        let (status, body) = serve.sql(sql);
        assert_eq!(
            (status, body["kind"].as_str()),
            (400, Some("rejected")),
            "{sql}: {}",
            brief(&body)
        );
    }
    // The HTTP API's existing abuse cases, over both Postgres protocols: refused as read-only,
    // or as syntax the Postgres dialect does not have (CREATE EXTERNAL TABLE).
    let statements = cases(&STATEMENTS);
    for (result, case) in psycopg(&python, serve.pg, RUN_CASES, &statements)
        .iter()
        .zip(statements.as_array().expect("cases"))
    {
        assert_eq!(result["ok"], false, "{case} ran: {result}");
        let code = result["sqlstate"].as_str().unwrap_or_default();
        assert!(code == "42501" || code == "42601", "{case}: {result}");
    }
    assert!(!Path::new("auditlake-attack-copy.csv").exists());
    let outside = cases(&OUTSIDE);
    for (result, case) in psycopg(&python, serve.pg, RUN_CASES, &outside)
        .iter()
        .zip(outside.as_array().expect("cases"))
    {
        assert_eq!(result["ok"], false, "{case} read a file: {result}");
        assert!(
            !result["message"]
                .as_str()
                .unwrap_or_default()
                .contains("root:"),
            "{case}: {result}"
        );
    }
    let write_cases = cases(&WRITES);
    assert_pg_refused(
        &psycopg(&python, serve.pg, RUN_CASES, &write_cases),
        &write_cases,
        "42501",
    );
    let cursor_cases = cases(&[
        "DECLARE c CURSOR FOR SELECT 1 AS a INTO forged",
        "DECLARE c CURSOR FOR SELECT * INTO TEMPORARY forged FROM cloudtrail",
    ]);
    assert_pg_refused(
        &psycopg(&python, serve.pg, RUN_CASES, &cursor_cases),
        &cursor_cases,
        "42501",
    );
    let several = cases(&["SELECT 1; SELECT * INTO forged FROM cloudtrail"]);
    assert_pg_refused(
        &psycopg(&python, serve.pg, RUN_CASES, &several),
        &several,
        "42601",
    );
    let (status, _) = serve.sql("SELECT 1; SELECT 2");
    assert_eq!(status, 400, "several statements over HTTP");
    for sql in ["SHOW ALL", "SHOW datafusion.runtime.temp_directory"] {
        assert_eq!(serve.sql(sql).0, 400, "{sql}");
    }
    assert_eq!(table_names(&serve), tables_before, "no table was created");
    // A cursor that only reads still works, through the engine.
    let cursor = psycopg(
        &python,
        serve.pg,
        r#"
with connect() as conn:
    cur = psycopg.ClientCursor(conn)
    cur.execute("BEGIN")
    cur.execute("DECLARE c CURSOR FOR SELECT event_id FROM cloudtrail LIMIT 5")
    cur.execute("FETCH FORWARD 3 FROM c")
    first = cur.fetchall()
    cur.execute("FETCH FORWARD ALL FROM c")
    rest = cur.fetchall()
    cur.execute("CLOSE c")
    print(json.dumps([{"first": len(first), "rest": len(rest)}]))
"#,
        &Value::Null,
    );
    assert_eq!(cursor[0], serde_json::json!({"first": 3, "rest": 2}));

    // 2. Memory: functions that outgrow their input are refused before they allocate.
    for sql in AMPLIFIERS {
        let (status, body) = serve.sql(sql);
        assert_eq!(
            (status, body["kind"].as_str()),
            (422, Some("memory_limit")),
            "{sql}: {}",
            brief(&body)
        );
    }
    // A distinct count of 50 M values: past the pool it spills, and past the spill limit (or the
    // heap bound, for what the pool does not account) it stops.
    let (status, body) = serve.sql(UNACCOUNTED);
    assert_eq!(
        (status, body["kind"].as_str()),
        (422, Some("memory_limit")),
        "{}",
        brief(&body)
    );
    let unaccounted = cases(&[UNACCOUNTED]);
    assert_pg_refused(
        &psycopg(&python, serve.pg, RUN_CASES, &unaccounted),
        &unaccounted,
        "53200",
    );
    let amplifier_cases = cases(&AMPLIFIERS);
    assert_pg_refused(
        &psycopg(&python, serve.pg, RUN_CASES, &amplifier_cases),
        &amplifier_cases,
        "53200",
    );

    // 3. The result cap counts encoded bytes in every format: a small Arrow result with a
    // long column name is a large JSON body.
    let name = "n".repeat(4000);
    let wide = format!("SELECT 1 AS \"{name}\" FROM range(200000)");
    let long_values = "SELECT repeat('x', 100) AS s FROM range(20000)".to_owned();
    for (format, sql) in [
        ("json", &wide),
        ("ndjson", &wide),
        ("csv", &long_values),
        ("arrow", &long_values),
    ] {
        let (status, body) = serve.post_when_free(&format!("/v1/sql?format={format}"), sql);
        assert_eq!(
            (status, body["kind"].as_str()),
            (422, Some("result_too_large")),
            "{format}: {}",
            brief(&body)
        );
    }
    let (status, _) = serve.sql("SELECT 1 AS a FROM range(1000)");
    assert_eq!(status, 200, "a result under the cap is whole");
    let wide_cases = cases(&["SELECT repeat('x', 4000) AS s FROM range(2000)"]);
    assert_pg_refused(
        &psycopg(&python, serve.pg, RUN_CASES, &wide_cases),
        &wide_cases,
        "54000",
    );
    // A statement over the limit: HTTP 413, pg refused at the message's header.
    let long = format!("SELECT '{}'", "x".repeat(MAX_STATEMENT_BYTES));
    assert_eq!(serve.sql(&long).0, 413);
    let long_cases = cases(&[&long]);
    let results = psycopg(&python, serve.pg, RUN_CASES, &long_cases);
    for result in &results {
        assert_eq!(result["ok"], false, "{result}");
        assert!(
            result["sqlstate"] == "54000"
                || result["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("bytes a statement may take"),
            "{result}"
        );
    }

    // 4. Time, concurrency and cancellation, over both protocols.
    let (status, body) = serve.sql(ENDLESS);
    assert_eq!(
        (status, body["kind"].as_str()),
        (408, Some("timeout")),
        "{}",
        brief(&body)
    );
    let endless = cases(&[ENDLESS]);
    let results = psycopg(&python, serve.pg, RUN_CASES, &endless);
    assert_pg_refused(&results, &endless, "57014");
    let busy = psycopg(
        &python,
        serve.pg,
        r#"
results = [None, None, None]
def slow(i):
    with connect() as conn:
        results[i] = outcome(lambda: run(conn, sys.argv[4], "extended"))
threads = [threading.Thread(target=slow, args=(i,)) for i in range(2)]
for t in threads: t.start()
time.sleep(1.0)
with connect() as conn:
    results[2] = outcome(lambda: run(conn, "SELECT 1", "simple"))
for t in threads: t.join()
print(json.dumps(results))
"#
        .replace("sys.argv[4]", &format!("{ENDLESS:?}"))
        .as_str(),
        &Value::Null,
    );
    assert_eq!(
        busy[2]["sqlstate"], "53300",
        "a third query is refused: {busy:?}"
    );
    let cancelled = psycopg(
        &python,
        serve.pg,
        r#"
with connect() as conn:
    threading.Timer(0.5, conn.cancel).start()
    first = outcome(lambda: run(conn, sys.argv[4], "simple"))
    again = outcome(lambda: run(conn, "SELECT 1", "simple"))
print(json.dumps([first, again]))
"#
        .replace("sys.argv[4]", &format!("{ENDLESS:?}"))
        .as_str(),
        &Value::Null,
    );
    assert_eq!(cancelled[0]["sqlstate"], "57014", "{cancelled:?}");
    assert!(
        cancelled[0]["seconds"].as_f64().unwrap_or(9.0) < 2.5,
        "cancelled at once: {cancelled:?}"
    );
    assert_eq!(
        cancelled[1]["ok"], true,
        "the connection goes on: {cancelled:?}"
    );

    // A client that leaves mid-query stops its query, on both surfaces, and frees its slot.
    for _ in 0..2 {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .expect("client");
        let gone = client
            .post(format!("{}/v1/sql", serve.base))
            .bearer_auth(TOKEN)
            .body(ENDLESS)
            .send();
        assert!(gone.is_err(), "the client gave up");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        serve.sql("SELECT 1").0,
        200,
        "the slots of clients that left are free"
    );
    serve.assert_quiet_within(Duration::from_secs(2), "HTTP clients that left");
    let mut python_gone = Command::new(&python)
        .arg("-c")
        .arg(format!(
            "{PSYCOPG_PRELUDE}\nconn = connect()\nthreading.Timer(0.5, lambda: os._exit(0)).start()\nrun(conn, {ENDLESS:?}, 'extended')"
        ))
        .arg(serve.pg.port().to_string())
        .arg(TOKEN)
        .stdin(Stdio::null())
        .spawn()
        .expect("python");
    let _ = python_gone.wait();
    serve.assert_quiet_within(Duration::from_secs(2), "a Postgres client that left");

    // 5. Connections: headers that never finish are closed after the header timeout; the cap
    // holds; failed logins slow down.
    let http_addr: SocketAddr = serve
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let mut slow = raw_connections(
        http_addr,
        MAX_CONNECTIONS,
        b"POST /v1/sql HTTP/1.1\r\nHost: x\r\n",
    );
    let quick = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(400))
        .build()
        .expect("client");
    let refused = quick.get(format!("{}/healthz", serve.base)).send();
    assert!(
        refused.is_err(),
        "all connections taken: the next one waits"
    );
    assert!(
        all_closed_within(&mut slow, HEADER_TIMEOUT + Duration::from_secs(2)),
        "unfinished headers are closed after the header timeout"
    );
    serve.assert_healthy();
    let mut silent = raw_connections(serve.pg, MAX_CONNECTIONS + 2, b"");
    assert!(
        all_closed_within(&mut silent, HEADER_TIMEOUT + Duration::from_secs(3)),
        "Postgres connections that never log in are closed"
    );
    let logins = psycopg(
        &python,
        serve.pg,
        r#"
out = []
for i in range(4):
    started = time.time()
    try:
        psycopg.connect(host="127.0.0.1", port=port, user="x", dbname="x", password="wrong", connect_timeout=30).close()
        out.append({"ok": True})
    except psycopg.Error as e:
        out.append({"ok": False, "seconds": time.time() - started})
print(json.dumps(out))
"#,
        &Value::Null,
    );
    assert!(logins.iter().all(|l| l["ok"] == false), "{logins:?}");
    let waited = logins[3]["seconds"].as_f64().unwrap_or(0.0);
    assert!(waited >= 0.9, "the fourth failed login waits: {logins:?}");

    // 6. No secret in the deliveries table, the status, the settings or the logs.
    let mut deliveries = Value::Null;
    for _ in 0..100 {
        let (status, body) =
            serve.sql("SELECT last_error FROM alert_deliveries WHERE last_error IS NOT NULL");
        assert_eq!(status, 200);
        if body["row_count"].as_u64().unwrap_or(0) > 0 {
            deliveries = body;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!deliveries.is_null(), "a delivery failed");
    let (_, settings) = serve.sql("SELECT * FROM information_schema.df_settings");
    let log = std::fs::read_to_string(&serve.log).expect("log");
    let secret_part = WEBHOOK_SECRET.split('/').next().expect("part");
    for (what, text) in [
        ("alert_deliveries", deliveries.to_string()),
        ("status", serve.get("/v1/status").to_string()),
        ("settings", settings.to_string()),
        ("logs", log.clone()),
    ] {
        assert!(
            !text.contains(secret_part),
            "the webhook secret is in the {what}"
        );
    }
    assert!(
        log.contains("alert delivery failed"),
        "the failure is logged"
    );

    // 7. Healthy, memory back under the bound, and the lake grew meanwhile.
    serve.assert_healthy();
    let copied = feeder.join().expect("feeder");
    assert!(copied > 0);
    serve.wait_idle();
    let rows_after = serve.scalar("SELECT count(*) FROM cloudtrail");
    assert!(
        rows_after > rows_before,
        "ingestion went on: {rows_before} -> {rows_after}"
    );
    let (rss, peak) = serve.memory();
    eprintln!(
        "attack suite: RSS {} MiB now, peak {} MiB",
        rss >> 20,
        peak >> 20
    );
    assert!(peak < PEAK_RSS_BOUND, "peak RSS {} MiB", peak >> 20);
    assert!(rss < PEAK_RSS_BOUND, "RSS {} MiB", rss >> 20);
}
