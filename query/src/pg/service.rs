//! The statements of one Postgres connection: reads and cursors through the gate onto the
//! engine, session chatter to the library, everything else refused.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{DeclareType, Set, Statement};
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use datafusion_postgres::pgwire::api::stmt::{QueryParser, StoredStatement};
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{ClientInfo, ClientPortalStore, Type};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::types::format::FormatOptions;
use datafusion_postgres::{DfSessionService, Parser};
use futures::{Sink, StreamExt};

use crate::engine::{QueryEngine, QueryError};
use crate::gate;
use crate::run::QueryStream;

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

fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

fn refused(refusal: gate::Refused) -> PgWireError {
    user_error("42501", refusal.0)
}

/// An engine error with the SQLSTATE a Postgres client expects for it.
fn engine_error(e: QueryError) -> PgWireError {
    let code = match &e {
        QueryError::Rejected(m) if m == gate::READ_ONLY => "42501",
        QueryError::Rejected(_) => "42000",
        QueryError::Timeout(_) => "57014",
        QueryError::Memory { .. } => "53200",
        QueryError::ResultTooLarge { .. } => "54000",
        QueryError::Busy(_) => "53300",
        QueryError::Execution(_) | QueryError::Open { .. } => "XX000",
    };
    user_error(code, e.to_string())
}

/// Statements that are session chatter, handled by the library's hooks: they read nothing.
fn chatter(statement: &Statement) -> bool {
    match statement {
        Statement::Set(Set::SingleAssignment { variable, .. }) => {
            let name = variable.to_string().to_lowercase();
            CLIENT_SETTINGS.contains(&name.as_str())
        }
        Statement::Set(Set::SetTimeZone { .. })
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. } => true,
        _ => false,
    }
}

/// Statements we run on the query threads ourselves.
fn reads(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Query(_)
            | Statement::Explain { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
            | Statement::ExplainTable { .. }
    )
}

/// Refuses, inside the library, every statement that is not session chatter or a `SHOW` of a
/// client setting: nothing but those may reach the library's own execution.
#[derive(Debug)]
pub struct Refuse;

fn refuse_unless_chatter(statement: &Statement) -> Option<PgWireError> {
    let allowed = chatter(statement)
        || matches!(statement, Statement::ShowVariable { .. })
            && gate::check_statement(statement).is_ok();
    (!allowed).then(|| refused(gate::Refused(gate::READ_ONLY.into())))
}

#[async_trait]
impl QueryHook for Refuse {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        refuse_unless_chatter(statement).map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        refuse_unless_chatter(statement).map(Err)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        refuse_unless_chatter(statement).map(Err)
    }
}

/// The statement stored for the extended protocol: the text, and the parsed statement with its
/// plan (the library's own type, so its `FETCH`/`CLOSE` hooks find our cursors).
pub(super) type Stored = (String, Option<(Statement, LogicalPlan)>);

/// Parses one statement with the library's Postgres-compatible parser; several are refused.
fn parse_one(sql: &str, max_bytes: usize) -> PgWireResult<Statement> {
    if sql.len() > max_bytes {
        return Err(user_error(
            "54000",
            format!(
                "the statement is {} bytes, more than the {max_bytes} allowed",
                sql.len()
            ),
        ));
    }
    let statements = PostgresCompatibilityParser::new()
        .parse(sql)
        .map_err(|e| user_error("42601", e.to_string()))?;
    gate::single(statements).map_err(|r| user_error("42601", r.0))
}

/// Runs every read and cursor on the engine; the rest goes to the library (see the module
/// documentation).
pub(super) struct Service {
    inner: Arc<DfSessionService>,
    parser: Arc<GateParser>,
    engine: QueryEngine,
    max_statement_bytes: usize,
}

impl Service {
    pub(super) fn new(engine: &QueryEngine, max_statement_bytes: usize) -> Self {
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(Refuse),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let inner = Arc::new(DfSessionService::new_with_hooks(
            Arc::new(engine.session()),
            hooks,
        ));
        let parser = Arc::new(GateParser {
            inner: ExtendedQueryHandler::query_parser(inner.as_ref()),
            engine: engine.clone(),
            max_statement_bytes,
        });
        Service {
            inner,
            parser,
            engine: engine.clone(),
            max_statement_bytes,
        }
    }

    /// The rows of a started query as a Postgres response in `format`, the result cap counted
    /// in the bytes of the rows sent.
    fn respond(
        &self,
        stream: QueryStream,
        format: &Format,
        options: Arc<FormatOptions>,
    ) -> PgWireResult<QueryResponse> {
        let fields: Arc<Vec<FieldInfo>> = Arc::new(arrow_schema_to_pg_fields(
            &stream.schema(),
            format,
            Some(options),
        )?);
        let limits = self.engine.limits();
        let too_large = move || {
            engine_error(QueryError::ResultTooLarge {
                max_rows: limits.max_result_rows,
                max_bytes: limits.max_result_bytes,
            })
        };
        let encode_fields = fields.clone();
        let mut sent = 0usize;
        let mut over = false;
        let rows = stream
            .into_stream()
            .flat_map(move |batch| {
                let rows: Box<dyn Iterator<Item = PgWireResult<_>> + Send + Sync> = match batch {
                    Ok(batch) => Box::new(encode_recordbatch(encode_fields.clone(), batch)),
                    Err(e) => Box::new(std::iter::once(Err(engine_error(e)))),
                };
                futures::stream::iter(rows)
            })
            .map(move |row| {
                let row = row?;
                sent += row.data.len();
                if sent > limits.max_result_bytes {
                    return Err(too_large());
                }
                Ok(row)
            })
            .take_while(move |row| {
                // Nothing after the first error: the query is over.
                let keep = !over;
                over |= row.is_err();
                futures::future::ready(keep)
            });
        Ok(QueryResponse::new(fields, rows))
    }

    /// `DECLARE name CURSOR FOR query`: the query started on the engine, its rows kept in a
    /// portal the library's `FETCH` and `CLOSE` find.
    async fn declare(
        &self,
        client: &mut dyn HookClient,
        declares: &[datafusion::sql::sqlparser::ast::Declare],
    ) -> PgWireResult<Response> {
        for declare in declares {
            if declare.declare_type != Some(DeclareType::Cursor) {
                return Err(refused(gate::Refused(gate::READ_ONLY.into())));
            }
            let name = declare
                .names
                .first()
                .map(|n| n.value.clone())
                .ok_or_else(|| user_error("42601", "cursor name is required"))?;
            let query = declare
                .for_query
                .as_ref()
                .ok_or_else(|| user_error("42601", "DECLARE CURSOR requires a FOR query"))?;
            let plan = self
                .engine
                .plan(Statement::Query(query.clone()))
                .await
                .map_err(engine_error)?;
            let stream = self.engine.execute_plan(plan).await.map_err(engine_error)?;
            let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            let response = self.respond(stream, &Format::UnifiedText, options)?;
            let stored = Arc::new(StoredStatement::new(
                name.clone(),
                (query.to_string(), None),
                vec![],
            ));
            let portal = Portal::new_cursor(name, stored);
            portal.start(response).await;
            client.portal_store().put_portal(Arc::new(portal));
        }
        Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
    }
}

#[async_trait]
impl SimpleQueryHandler for Service {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = parse_one(query, self.max_statement_bytes)?;
        if reads(&statement) {
            let plan = self.engine.plan(statement).await.map_err(engine_error)?;
            let stream = self.engine.execute_plan(plan).await.map_err(engine_error)?;
            let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            let response = self.respond(stream, &Format::UnifiedText, options)?;
            return Ok(vec![Response::Query(response)]);
        }
        if let Statement::Declare { stmts } = &statement {
            return Ok(vec![self.declare(client, stmts).await?]);
        }
        if let Some(refusal) = refuse_unless_chatter(&statement) {
            return Err(refusal);
        }
        SimpleQueryHandler::do_query(self.inner.as_ref(), client, query).await
    }
}

#[async_trait]
impl ExtendedQueryHandler for Service {
    type Statement = Stored;
    type QueryParser = GateParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match &portal.statement.statement {
            (_, Some((statement, plan))) if reads(statement) => {
                let params = bound_parameters(portal, plan)?;
                let plan = plan
                    .clone()
                    .replace_params_with_values(&params)
                    .map_err(|e| user_error("22023", e.to_string()))?;
                let stream = self.engine.execute_plan(plan).await.map_err(engine_error)?;
                let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
                let response = self.respond(stream, &portal.result_column_format, options)?;
                Ok(Response::Query(response))
            }
            (_, Some((Statement::Declare { stmts }, _))) => self.declare(client, stmts).await,
            _ => {
                ExtendedQueryHandler::do_query(self.inner.as_ref(), client, portal, max_rows).await
            }
        }
    }
}

/// The values a client bound to a portal's parameters, typed from its plan.
fn bound_parameters(portal: &Portal<Stored>, plan: &LogicalPlan) -> PgWireResult<ParamValues> {
    let types = plan
        .get_parameter_types()
        .map_err(|e| user_error("42P18", e.to_string()))?;
    let mut ordered: Vec<(usize, Option<arrow::datatypes::DataType>)> = types
        .into_iter()
        .filter_map(|(id, t)| {
            id.trim_start_matches('$')
                .parse::<usize>()
                .ok()
                .map(|n| (n, t))
        })
        .collect();
    ordered.sort_by_key(|(n, _)| *n);
    let refs: Vec<Option<&arrow::datatypes::DataType>> =
        ordered.iter().map(|(_, t)| t.as_ref()).collect();
    deserialize_parameters(portal, &refs)
}

/// Parses for the extended protocol: one statement, through the gate, planned by the engine;
/// chatter is planned by the library.
pub(super) struct GateParser {
    inner: Arc<Parser>,
    engine: QueryEngine,
    max_statement_bytes: usize,
}

#[async_trait]
impl QueryParser for GateParser {
    type Statement = Stored;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if sql.trim().trim_matches(';').trim().is_empty() {
            return Ok(None);
        }
        let statement = parse_one(sql, self.max_statement_bytes)?;
        if reads(&statement) {
            let plan = self
                .engine
                .plan(statement.clone())
                .await
                .map_err(engine_error)?;
            return Ok(Some((statement.to_string(), Some((statement, plan)))));
        }
        if let Statement::Declare { stmts } = &statement {
            for declare in stmts {
                if let Some(query) = &declare.for_query {
                    gate::check_statement(&Statement::Query(query.clone())).map_err(refused)?;
                }
            }
            let empty = LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
                produce_one_row: false,
                schema: Arc::new(datafusion::common::DFSchema::empty()),
            });
            return Ok(Some((statement.to_string(), Some((statement, empty)))));
        }
        if let Some(refusal) = refuse_unless_chatter(&statement) {
            return Err(refusal);
        }
        self.inner.parse_sql(client, sql, types).await
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.inner.get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.inner.get_result_schema(stmt, column_format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_and_session_chatter_pass_and_never_two_statements() {
        fn parse(sql: &str) -> PgWireResult<Statement> {
            parse_one(sql, 1 << 20)
        }
        assert!(parse("SELECT 1; SELECT 2").is_err());
        assert!(parse(&format!("SELECT '{}'", "x".repeat(2 << 20))).is_err());
        for sql in ["SELECT 1", "EXPLAIN SELECT 1", "SHOW TABLES"] {
            let statement = parse(sql).expect(sql);
            assert!(
                reads(&statement) && gate::check_statement(&statement).is_ok(),
                "{sql}"
            );
        }
        for sql in [
            "SET application_name = 'x'",
            "BEGIN",
            "COMMIT",
            "SHOW search_path",
        ] {
            assert!(
                refuse_unless_chatter(&parse(sql).expect(sql)).is_none(),
                "{sql}"
            );
        }
        for sql in [
            "SELECT 1 INTO t",
            "SET datafusion.execution.batch_size = 1",
            "CREATE TABLE t AS SELECT 1",
            "SHOW ALL",
            "COPY (SELECT 1) TO '/tmp/x'",
        ] {
            let statement = parse(sql).expect(sql);
            let passes_gate = reads(&statement) && gate::check_statement(&statement).is_ok();
            assert!(
                !passes_gate && refuse_unless_chatter(&statement).is_some(),
                "{sql}"
            );
        }
    }
}
