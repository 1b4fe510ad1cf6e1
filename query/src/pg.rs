//! The Postgres wire protocol, so that `psql`, Grafana's PostgreSQL data source, Metabase and
//! Python drivers can query the lake.
//!
//! The protocol itself (messages, type mapping, the session chatter drivers send: `SET` of
//! client settings, `SHOW`, transactions, `FETCH`/`CLOSE`) comes from `datafusion-postgres` and
//! `pgwire`. A connection flows: [`wire`] (accepted within the cap; startup, login and idle time
//! limits; a size limit on every message; TLS when configured; `CancelRequest`; a watch that
//! stops the query of a client that went away) → [`login`] (the bearer token as the password,
//! failed logins slowed down per address) → [`service`] (every query of the simple and extended
//! protocol and every `DECLARE … CURSOR` through the read-only gate onto the engine, with the
//! HTTP API's threads and limits; several statements at once refused; anything else that is not
//! session chatter refused before it reaches the library).

use std::sync::Arc;

use datafusion_postgres::pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::{DefaultServerParameterProvider, StartupHandler};
use datafusion_postgres::pgwire::api::cancel::DefaultCancelHandler;
use datafusion_postgres::pgwire::api::{ConnectionManager, NoopHandler, PgWireConnectionState};
use datafusion_postgres::pgwire::error::ErrorInfo;
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use futures::{Sink, SinkExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::QueryEngine;
use crate::listen::{self, ConnectionLimits};

mod login;
mod service;
mod wire;

use login::{Failures, Open, Throttled, TokenPassword};
use service::Service;

/// How the Postgres server is reached and bounded.
#[derive(Clone)]
pub struct PgSettings {
    /// The password every client must give (any user name); none on loopback-only setups.
    pub token: Option<Arc<str>>,
    pub connections: ConnectionLimits,
    /// Largest message a client may send (a statement, a bind of its parameters).
    pub max_statement_bytes: usize,
    pub tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("connections", &self.connections)
            .field("max_statement_bytes", &self.max_statement_bytes)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// What every connection of one server shares.
struct Handlers<A> {
    service: Arc<Service>,
    startup: Arc<A>,
    cancel: Arc<DefaultCancelHandler>,
    copy: Arc<NoopHandler>,
}

/// Serves `engine` over the Postgres protocol on `listener` until `stop`, bounded by `settings`.
pub async fn serve(
    listener: TcpListener,
    engine: &QueryEngine,
    settings: PgSettings,
    stop: CancellationToken,
) {
    let service = Arc::new(Service::new(engine, settings.max_statement_bytes));
    let manager = Arc::new(ConnectionManager::new());
    let cancel = Arc::new(DefaultCancelHandler::new(manager.clone()));
    let copy = Arc::new(NoopHandler);
    match settings.token.clone() {
        Some(token) => {
            let startup = CleartextPasswordAuthStartupHandler::new(
                TokenPassword(token),
                DefaultServerParameterProvider::default(),
            )
            .with_connection_manager(manager);
            let handlers = Arc::new(Handlers {
                service,
                startup: Arc::new(Throttled {
                    inner: startup,
                    failures: Failures::default(),
                }),
                cancel,
                copy,
            });
            accept(listener, handlers, settings, stop).await;
        }
        None => {
            let handlers = Arc::new(Handlers {
                service,
                startup: Arc::new(Open(manager)),
                cancel,
                copy,
            });
            accept(listener, handlers, settings, stop).await;
        }
    }
}

async fn accept<A: StartupHandler + 'static>(
    listener: TcpListener,
    handlers: Arc<Handlers<A>>,
    settings: PgSettings,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(settings.connections.max_connections.max(1)));
    let tracker = TaskTracker::new();
    while let Some((socket, permit)) = listen::accept(&listener, &slots, &stop).await {
        let (handlers, settings, stop) = (handlers.clone(), settings.clone(), stop.clone());
        tracker.spawn(async move {
            let _permit = permit;
            tokio::select! {
                () = wire::connection(socket, handlers, &settings) => {}
                () = stop.cancelled() => {}
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// The parts of [`Handlers`] the connection loop hands to `pgwire`.
impl<A: StartupHandler> Handlers<A> {
    fn parts(
        &self,
    ) -> (
        Arc<A>,
        Arc<Service>,
        Arc<NoopHandler>,
        Arc<DefaultCancelHandler>,
    ) {
        (
            self.startup.clone(),
            self.service.clone(),
            self.copy.clone(),
            self.cancel.clone(),
        )
    }
}

/// Whether a connection is still logging in (the startup time limit applies) or serving.
fn logging_in(state: PgWireConnectionState) -> bool {
    matches!(
        state,
        PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress
    )
}

/// A message that tells a client why its connection ends.
fn fatal(code: &str, message: &str) -> PgWireBackendMessage {
    PgWireBackendMessage::ErrorResponse(
        ErrorInfo::new("FATAL".to_owned(), code.to_owned(), message.to_owned()).into(),
    )
}

/// Sends `message` and closes, ignoring a client already gone.
async fn tell_and_close<S>(socket: &mut S, message: PgWireBackendMessage)
where
    S: Sink<PgWireBackendMessage> + Unpin,
{
    let _ = socket.send(message).await;
    let _ = socket.close().await;
}
