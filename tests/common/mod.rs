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
