//! The Postgres wire protocol, so that `psql`, Grafana's PostgreSQL data source, Metabase and
//! Python drivers can query the lake.
//!
//! The protocol (simple and extended queries, type mapping) comes from `datafusion-postgres`
//! over the same DataFusion session as the HTTP API, so the same tables, views and memory pool
//! apply. This module adds what makes it ours: the password is the API's bearer token (required
//! whenever one is configured), and a [`ReadOnly`] hook that lets through only the statements the
//! HTTP API runs (see [`crate::engine::check_read_only`]) plus the session chatter drivers send
//! (`SET` of client settings such as `application_name` or `statement_timeout`, `SHOW`,
//! transactions, cursors); `SET` of engine options, DDL, DML and `COPY` are refused with
//! SQLSTATE 42501. Each connection is served on the runtime that accepted it.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion_postgres::DfSessionService;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::api::{ClientInfo, PgWireServerHandlers};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::engine::{QueryEngine, allowed_statement};

/// Client settings a driver may `SET`; anything else is an engine option and refused.
const CLIENT_SETTINGS: [&str; 8] = [
    "statement_timeout",
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
    "search_path",
    "client_encoding",
];

/// Refuses every statement the HTTP API would refuse, but for session chatter.
#[derive(Debug)]
pub struct ReadOnly;

fn allowed(statement: &Statement) -> bool {
    match statement {
        Statement::Set(Set::SingleAssignment { variable, .. }) => {
            let name = variable.to_string().to_lowercase();
            CLIENT_SETTINGS.contains(&name.as_str())
        }
        Statement::Set(Set::SetTimeZone { .. })
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Declare { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowCatalogs { .. } => true,
        other => allowed_statement(other),
    }
}

fn refusal(statement: &Statement) -> PgWireError {
    let first = statement.to_string();
    let first = first
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        "42501".to_owned(),
        format!(
            "{first}: only SELECT, WITH, EXPLAIN, SHOW and DESCRIBE statements run here (the lake is read-only)"
        ),
    )))
}

#[async_trait]
impl QueryHook for ReadOnly {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        (!allowed(statement)).then(|| Err(refusal(statement)))
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        (!allowed(statement)).then(|| Err(refusal(statement)))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        (!allowed(statement)).then(|| Err(refusal(statement)))
    }
}

/// The bearer token as the Postgres password.
#[derive(Debug)]
struct TokenPassword(Arc<str>);

#[async_trait]
impl AuthSource for TokenPassword {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Ok(Password::new(None, self.0.as_bytes().to_vec()))
    }
}

/// Loopback without a token: no password asked.
struct Open;

impl NoopStartupHandler for Open {}

/// The handlers of one server: the session service and a startup (authentication) handler.
struct Handlers<S> {
    service: Arc<DfSessionService>,
    startup: Arc<S>,
}

impl<S: StartupHandler + 'static> PgWireServerHandlers for Handlers<S> {
    fn simple_query_handler(
        &self,
    ) -> Arc<impl datafusion_postgres::pgwire::api::query::SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(
        &self,
    ) -> Arc<impl datafusion_postgres::pgwire::api::query::ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
}

/// Serves `engine` over the Postgres protocol on `listener` until `stop`; `token`, when set, is
/// the password every client must give (any user name).
pub async fn serve(
    listener: TcpListener,
    engine: &QueryEngine,
    token: Option<Arc<str>>,
    stop: CancellationToken,
) {
    let hooks: Vec<Arc<dyn QueryHook>> = vec![
        Arc::new(ReadOnly),
        Arc::new(CursorStatementHook),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
    ];
    let service = Arc::new(DfSessionService::new_with_hooks(
        Arc::new(engine.session()),
        hooks,
    ));
    match token {
        Some(token) => {
            let startup = CleartextPasswordAuthStartupHandler::new(
                TokenPassword(token),
                DefaultServerParameterProvider::default(),
            );
            accept(
                listener,
                Arc::new(Handlers {
                    service,
                    startup: Arc::new(startup),
                }),
                stop,
            )
            .await;
        }
        None => {
            accept(
                listener,
                Arc::new(Handlers {
                    service,
                    startup: Arc::new(Open),
                }),
                stop,
            )
            .await;
        }
    }
}

async fn accept<S: StartupHandler + 'static>(
    listener: TcpListener,
    handlers: Arc<Handlers<S>>,
    stop: CancellationToken,
) {
    loop {
        let socket = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a Postgres connection");
                    continue;
                }
            },
        };
        let handlers = handlers.clone();
        tokio::spawn(async move {
            if let Err(e) =
                datafusion_postgres::pgwire::tokio::process_socket(socket, None, handlers).await
            {
                tracing::debug!(error = %e, "Postgres connection ended with an error");
            }
        });
    }
}
