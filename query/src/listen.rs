//! Accepting connections for the HTTP API and the Postgres protocol: how many at once, how
//! long a client may take to say what it wants, and TLS.
//!
//! Each listener holds a permit of its connection cap for every open connection and accepts no
//! more while all are taken (the kernel's backlog holds the rest). The TLS handshake, and for
//! HTTP every request's headers, must arrive within the header timeout, so a client that opens
//! connections and never finishes them holds a slot for seconds, not for ever.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Certificate chain and private key files (PEM) that turn TLS on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading TLS certificates from {path}: {message}")]
    Certificate { path: PathBuf, message: String },
    #[error("reading the TLS private key from {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("the TLS certificate and key do not fit together: {0}")]
    Config(String),
}

impl TlsFiles {
    /// A TLS acceptor over these files, with `alpn` protocols offered (Postgres: `postgresql`).
    pub fn acceptor(&self, alpn: &[&[u8]]) -> Result<TlsAcceptor, TlsError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certificates: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(&self.certificate)
                .and_then(|certs| certs.collect::<Result<_, _>>())
                .map_err(|e| certificate_error(&self.certificate, e))?;
        if certificates.is_empty() {
            return Err(certificate_error(
                &self.certificate,
                "no certificate in the file",
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| TlsError::Key {
            path: self.key.clone(),
            message: e.to_string(),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certificates, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

fn certificate_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::Certificate {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Bounds on the connections of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time for the TLS handshake and for each request's headers (HTTP), or for the startup
    /// and login (Postgres).
    pub header_timeout: Duration,
    /// Time a connection may stay open with nothing asked (no request, or between Postgres
    /// statements).
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Accepts connections until `stop`, one permit of the cap each; `None` once stopped.
pub(crate) async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    stop: &CancellationToken,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => return None,
            permit = slots.clone().acquire_owned() => permit.ok()?,
        };
        let accepted = tokio::select! {
            () = stop.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, _)) => return Some((socket, permit)),
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection");
                // Out of file descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves `app` over HTTP/1.1 on `listener` until `stop`, then lets open requests finish.
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let tracker = TaskTracker::new();
    while let Some((socket, permit)) = accept(&listener, &slots, &stop).await {
        let (app, tls, stop) = (app.clone(), tls.clone(), stop.clone());
        tracker.spawn(async move {
            let _permit = permit;
            let _ = socket.set_nodelay(true);
            match tls {
                None => serve_connection(socket, app, limits, stop).await,
                Some(tls) => {
                    match tokio::time::timeout(limits.header_timeout, tls.accept(socket)).await {
                        Ok(Ok(stream)) => serve_connection(stream, app, limits, stop).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

async fn serve_connection<S>(
    stream: S,
    app: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout.min(limits.idle_timeout))
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        }
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        }
    }
}
