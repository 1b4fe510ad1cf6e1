//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/corpora` beside the project root.
pub fn corpora() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora")
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

    /// The service running in this process, and an HTTP client for it.
    pub struct Running {
        pub base: String,
        pub client: reqwest::Client,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Running {
        pub async fn start(config: Config) -> Self {
            let service = Service::bind(config).await.expect("bind");
            let base = format!("http://{}", service.local_addr());
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
                client: reqwest::Client::new(),
                stop: Some(stop),
                task,
            }
        }

        pub async fn get(&self, path: &str) -> Value {
            let response = self
                .client
                .get(format!("{}{path}", self.base))
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
                .client
                .post(format!("{}/v1/sql", self.base))
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
