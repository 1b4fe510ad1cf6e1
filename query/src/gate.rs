//! The read-only gate every caller's SQL passes, whatever surface brought it (HTTP, the Postgres
//! protocol's simple and extended queries and cursors, the command line, replays).
//!
//! A statement is checked twice: its parsed form ([`check_statement`]: one statement, of a kind
//! that only reads, no `SELECT … INTO`, no `SHOW` of engine settings), then its logical plan
//! ([`check_plan`]: DataFusion's read-only [`SQLOptions`] and a walk that refuses anything that
//! writes or creates, in subqueries too). The plan check is what holds when a parser or a
//! statement form is new: whatever the text looked like, a plan that would create a table or
//! write a file does not run.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{self, Statement};

/// Why a statement was refused; the text is for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// What a refused statement is told, whatever it was.
pub const READ_ONLY: &str =
    "only SELECT, WITH, EXPLAIN, SHOW and DESCRIBE statements run here (the lake is read-only)";

/// DataFusion's own read-only options: no DDL, no DML, no statements (`SET`, transactions).
pub fn sql_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Exactly one statement: several at once are refused on every surface, so that a surface that
/// runs only the first (or all) never differs from one that checks only the first.
pub fn single<T>(mut statements: Vec<T>) -> Result<T, Refused> {
    match statements.len() {
        0 => Err(Refused("empty SQL".into())),
        1 => Ok(statements.remove(0)),
        n => Err(Refused(format!("send one statement at a time, not {n}"))),
    }
}

/// Whether a parsed statement only reads: a query without `INTO`, `EXPLAIN` of one, `SHOW` of
/// tables, columns or a session variable, `DESCRIBE`.
pub fn check_statement(statement: &Statement) -> Result<(), Refused> {
    let allowed = match statement {
        Statement::Query(query) => !query_writes(query),
        Statement::Explain { statement, .. } => return check_statement(statement),
        Statement::ShowVariable { variable } => !shows_engine_settings(variable),
        Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ExplainTable { .. } => true,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Refused(READ_ONLY.into()))
    }
}

/// `SHOW ALL` and `SHOW datafusion.…` list the engine's settings, among them local paths.
fn shows_engine_settings(variable: &[ast::Ident]) -> bool {
    let name = variable
        .iter()
        .map(|i| i.value.to_lowercase())
        .collect::<Vec<_>>()
        .join(".");
    name == "all" || name.starts_with("datafusion")
}

/// Whether a query, or any query nested in it, selects `INTO` a table.
fn query_writes(query: &ast::Query) -> bool {
    let mut writes = false;
    set_expr_writes(&query.body, &mut writes);
    if let Some(with) = &query.with {
        for cte in &with.cte_tables {
            writes |= query_writes(&cte.query);
        }
    }
    writes
}

fn set_expr_writes(body: &ast::SetExpr, writes: &mut bool) {
    match body {
        ast::SetExpr::Select(select) => *writes |= select.into.is_some(),
        ast::SetExpr::Query(query) => *writes |= query_writes(query),
        ast::SetExpr::SetOperation { left, right, .. } => {
            set_expr_writes(left, writes);
            set_expr_writes(right, writes);
        }
        ast::SetExpr::Values(_) | ast::SetExpr::Table(_) => {}
        // INSERT, UPDATE, DELETE, MERGE as a query body.
        _ => *writes = true,
    }
}

/// Whether a logical plan only reads: DataFusion's read-only options, and no node anywhere
/// (subqueries included) that creates, writes, copies, sets or is an extension we do not know.
pub fn check_plan(plan: &LogicalPlan) -> Result<(), Refused> {
    sql_options()
        .verify_plan(plan)
        .map_err(|_| Refused(READ_ONLY.into()))?;
    let mut refused = false;
    let _ = plan.apply_with_subqueries(|node| {
        if matches!(
            node,
            LogicalPlan::Ddl(_)
                | LogicalPlan::Dml(_)
                | LogicalPlan::Copy(_)
                | LogicalPlan::Statement(_)
                | LogicalPlan::Extension(_)
        ) {
            refused = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if refused {
        Err(Refused(READ_ONLY.into()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::{GenericDialect, PostgreSqlDialect};
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn parsed(sql: &str) -> Vec<Statement> {
        let mut all = Parser::parse_sql(&GenericDialect {}, sql).expect("generic");
        all.extend(Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("postgres"));
        all
    }

    #[test]
    fn select_into_in_every_form_is_refused_but_reads_pass() {
        for sql in [
            "SELECT 1 INTO t",
            "SELECT * INTO TEMPORARY t FROM cloudtrail",
            "SELECT * INTO UNLOGGED t FROM cloudtrail",
            "SELECT * INTO lake.cloudtrail_reviewed FROM cloudtrail",
            "WITH a AS (SELECT 1) SELECT * INTO t FROM a",
            "SELECT 1 UNION SELECT 2 INTO t",
            "WITH a AS (SELECT 1 INTO t) SELECT * FROM a",
            "EXPLAIN SELECT 1 INTO t",
            "SHOW ALL",
            "SHOW datafusion.runtime.temp_directory",
            "INSERT INTO t VALUES (1)",
            "SET datafusion.execution.batch_size = 1",
        ] {
            for statement in parsed(sql) {
                assert!(check_statement(&statement).is_err(), "{sql} passed");
            }
        }
        for sql in [
            "SELECT 1",
            "WITH a AS (SELECT 1) SELECT * FROM a",
            "EXPLAIN SELECT count(*) FROM cloudtrail",
            "SHOW TABLES",
            "SHOW timezone",
            "SELECT 1 UNION ALL SELECT 2",
        ] {
            for statement in parsed(sql) {
                assert_eq!(check_statement(&statement), Ok(()), "{sql}");
            }
        }
    }

    #[test]
    fn more_than_one_statement_is_refused() {
        assert!(single(parsed("SELECT 1; SELECT 2")).is_err());
        assert!(single(Vec::<Statement>::new()).is_err());
        assert!(single(vec![1]).is_ok());
    }

    #[tokio::test]
    async fn plans_that_create_or_write_are_refused_wherever_they_sit() {
        let ctx = datafusion::prelude::SessionContext::new();
        let state = ctx.state();
        for sql in [
            "SELECT 1 AS a INTO t",
            "CREATE TABLE t AS SELECT 1",
            "CREATE VIEW v AS SELECT 1",
            "COPY (SELECT 1) TO '/tmp/x.csv'",
        ] {
            let plan = state.create_logical_plan(sql).await.expect(sql);
            assert!(check_plan(&plan).is_err(), "{sql} passed");
        }
        let plan = state
            .create_logical_plan("SELECT * FROM (SELECT 1 AS a) WHERE a IN (SELECT 1)")
            .await
            .expect("plan");
        assert_eq!(check_plan(&plan), Ok(()));
    }
}
