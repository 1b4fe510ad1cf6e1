//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/corpora` beside the project root.
pub fn corpora() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora")
}

/// The queries whose answers a lake holding exactly the sample of `manifest` gives, each with
/// its expected number: every record once, CloudTrail events by id once.
pub fn lake_counts(manifest: &auditlake_ingest::sample::Manifest) -> [(&'static str, usize); 4] {
    [
        ("SELECT count(*) FROM cloudtrail", manifest.cloudtrail_rows),
        (
            "SELECT count(DISTINCT event_id) FROM cloudtrail",
            manifest.cloudtrail_rows,
        ),
        (
            "SELECT count(*) FROM mongodb_audit",
            manifest.mongodb_audit_rows,
        ),
        ("SELECT count(*) FROM rejected", manifest.rejected_rows),
    ]
}

/// Runs `psql` against the Postgres server on `port` with `password` and the extra environment
/// `env` (e.g. `PGSSLMODE`); returns (success, stdout trimmed, stderr). A `psql` that cannot run
/// fails the test under CI.
pub async fn psql(
    port: u16,
    password: &str,
    sql: &str,
    env: &[(&'static str, &'static str)],
) -> (bool, String, String) {
    let (password, sql, env) = (password.to_owned(), sql.to_owned(), env.to_vec());
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-U", "auditor", "-d", "auditlake"])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", &sql])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .envs(env)
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

/// The `auditlake` binary built for these tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_auditlake"))
}

/// A webhook receiver on loopback that records what it is sent and can be switched down.
pub mod receiver {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    /// One request as received.
    #[derive(Debug, Clone)]
    pub struct Received {
        pub path: String,
        pub headers: HeaderMap,
        pub body: Bytes,
    }

    #[derive(Default)]
    struct Shared {
        up: AtomicBool,
        received: Mutex<Vec<Received>>,
    }

    /// A running receiver; answers 503 while down.
    #[derive(Clone)]
    pub struct Receiver {
        shared: Arc<Shared>,
        pub addr: SocketAddr,
    }

    async fn record(
        State(shared): State<Arc<Shared>>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        if !shared.up.load(Ordering::SeqCst) {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        shared.received.lock().expect("lock").push(Received {
            path: uri.path().to_owned(),
            headers,
            body,
        });
        StatusCode::OK
    }

    impl Receiver {
        /// Starts on `addr` (port 0 for any), up or down.
        pub async fn start(addr: SocketAddr, up: bool) -> Self {
            let shared = Arc::new(Shared::default());
            shared.up.store(up, Ordering::SeqCst);
            let app = Router::new()
                .route("/{*path}", post(record))
                .with_state(shared.clone());
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .expect("bind receiver");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Receiver { shared, addr }
        }

        pub fn set_up(&self, up: bool) {
            self.shared.up.store(up, Ordering::SeqCst);
        }

        pub fn received(&self) -> Vec<Received> {
            self.shared.received.lock().expect("lock").clone()
        }

        pub fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }
    }

    /// Checks `X-Auditlake-Signature` the way a receiver would: HMAC-SHA256 over
    /// `"<X-Auditlake-Timestamp>.<body>"` with the shared secret.
    pub fn signature_is_valid(received: &Received, secret: &str) -> bool {
        use hmac::{Hmac, Mac};
        let header = |name: &str| {
            received
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (Some(timestamp), Some(signature)) = (
            header("x-auditlake-timestamp"),
            header("x-auditlake-signature"),
        ) else {
            return false;
        };
        let Some(hex_mac) = signature.strip_prefix("v1=") else {
            return false;
        };
        let Ok(expected) = hex::decode(hex_mac) else {
            return false;
        };
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(&received.body);
        mac.verify_slice(&expected).is_ok()
    }
}

/// The whole service in process, driven over real HTTP.
pub mod service {
    use std::time::Duration;

    use serde_json::Value;

    use auditlake_ingest::config::Config;
    use auditlake_ingest::service::Service;

    /// `file` validated, with a local lake at `lake` (its state inside) reading the folder
    /// `data`, HTTP on loopback port 0, polls every 100 ms and no settle time.
    pub fn folder_config_from(
        file: auditlake_ingest::config::ConfigFile,
        lake: &std::path::Path,
        data: &std::path::Path,
    ) -> Config {
        use auditlake_ingest::config::{LakeSpec, SourceSpec};
        let mut config = Config::from_file(file, &|_| None).expect("config");
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

    /// [`folder_config_from`] the default configuration.
    pub fn folder_config(lake: &std::path::Path, data: &std::path::Path) -> Config {
        folder_config_from(Default::default(), lake, data)
    }

    /// A configuration serving the sample day (written below `dir`) from a local lake on
    /// loopback port 0, with `token` as the API token; and the sample's manifest.
    pub fn sample_config(
        dir: &std::path::Path,
        token: &str,
    ) -> (Config, auditlake_ingest::sample::Manifest) {
        use auditlake_ingest::sample::{self, SampleOptions};
        let data = dir.join("data");
        let manifest = sample::generate(&data, &SampleOptions::default()).expect("sample");
        let mut config = folder_config(&dir.join("lake"), &data);
        config.http_token = Some(token.into());
        (config, manifest)
    }

    /// The service running in this process, and an HTTP client for it.
    pub struct Running {
        pub base: String,
        /// `host:port` of the Postgres protocol server, if the config enables it.
        pub pg: Option<std::net::SocketAddr>,
        pub client: reqwest::Client,
        /// The bearer token of the service, sent by [`Running::get`] and [`Running::sql`].
        token: Option<String>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Running {
        pub async fn start(config: Config) -> Self {
            let token = config.http_token.as_deref().map(str::to_owned);
            let service = Service::bind(config).await.expect("bind");
            let base = format!("http://{}", service.local_addr());
            let pg = service.pg_addr();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                service
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("service run");
            });
            Running {
                base,
                pg,
                client: reqwest::Client::new(),
                token,
                stop: Some(stop),
                task,
            }
        }

        pub async fn get(&self, path: &str) -> Value {
            let response = self
                .authorized(self.client.get(format!("{}{path}", self.base)))
                .send()
                .await
                .expect("GET");
            assert!(
                response.status().is_success(),
                "GET {path}: {}",
                response.status()
            );
            response.json().await.expect("JSON")
        }

        fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
            match &self.token {
                Some(token) => request.bearer_auth(token),
                None => request,
            }
        }

        pub async fn wait_idle(&self) -> Value {
            self.wait_idle_after(0).await
        }

        /// Waits for an idle status reported after at least `scans` scans; a scan that began before
        /// a change cannot then pass for one that saw it.
        pub async fn wait_idle_after(&self, scans: u64) -> Value {
            for _ in 0..600 {
                let status = self.get("/v1/status").await;
                let scanned = status["process"]["scans"].as_u64().unwrap_or(0);
                if status["idle"] == Value::Bool(true) && scanned >= scans {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("service never became idle");
        }

        pub async fn sql(&self, sql: &str) -> Vec<Value> {
            let response = self
                .authorized(self.client.post(format!("{}/v1/sql", self.base)))
                .json(&serde_json::json!({ "sql": sql }))
                .send()
                .await
                .expect("POST /v1/sql");
            let status = response.status();
            let body: Value = response.json().await.expect("JSON");
            assert!(status.is_success(), "{sql}: {status} {body}");
            body["rows"].as_array().cloned().unwrap_or_default()
        }

        pub async fn scalar(&self, sql: &str) -> i64 {
            let rows = self.sql(sql).await;
            let row = rows.first().and_then(Value::as_object).expect("one row");
            row.values()
                .next()
                .and_then(Value::as_i64)
                .expect("an integer")
        }

        pub async fn stop(mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            self.task.await.expect("service task");
        }
    }
}

/// The local AWS-compatible servers that `tests/servers.sh` starts (moto, SeaweedFS).
pub mod aws {
    use std::path::Path;
    use std::sync::atomic::{AtomicU32, Ordering};

    use aws_config::{BehaviorVersion, Region, SdkConfig};

    /// The endpoint in `variable`. Missing: a failure under CI, else the test is skipped
    /// (returns `None`) with a note on how to run it.
    pub fn endpoint(variable: &str) -> Option<String> {
        match std::env::var(variable) {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                assert!(
                    std::env::var("CI").is_err(),
                    "{variable} is not set: the test servers did not start (run bash tests/run.sh)"
                );
                eprintln!(
                    "skipped: {variable} is not set; bash tests/run.sh starts the test servers"
                );
                None
            }
        }
    }

    /// moto's endpoint (S3, SQS, CloudWatch Logs, STS).
    pub fn moto() -> Option<String> {
        endpoint("AUDITLAKE_TEST_MOTO")
    }

    /// SeaweedFS's S3 endpoint.
    pub fn seaweed() -> Option<String> {
        endpoint("AUDITLAKE_TEST_S3")
    }

    /// SDK configuration for a local server, with the credentials the test script exports.
    pub async fn sdk(endpoint: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .load()
            .await
    }

    pub fn s3(config: &SdkConfig) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(config)
                .force_path_style(true)
                .build(),
        )
    }

    /// A bucket (or queue, or group) name no other test uses.
    pub fn unique(name: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        format!(
            "{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Uploads every file below `dir` under `prefix`; returns how many.
    pub async fn upload_dir(
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        prefix: &str,
        dir: &Path,
    ) -> usize {
        let mut n = 0;
        for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
            let entry = entry.expect("walk");
            if !entry.file_type().is_file() {
                continue;
            }
            let relative = entry
                .path()
                .strip_prefix(dir)
                .expect("below dir")
                .to_string_lossy()
                .replace('\\', "/");
            put(
                s3,
                bucket,
                &format!("{prefix}{relative}"),
                std::fs::read(entry.path()).expect("read"),
            )
            .await;
            n += 1;
        }
        n
    }

    pub async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) {
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)));
    }

    pub async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str) {
        s3.create_bucket()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "create bucket {bucket}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
    }
}
