//! The access chain: from an `AssumeRole` into a role to the database sessions its key opened.
//!
//! A MongoDB Atlas login with `MONGODB-AWS` works like this: the role is assumed (CloudTrail's
//! `AssumeRole`, which issues a temporary key), the driver signs an `sts:GetCallerIdentity`
//! request with that key, and Atlas sends it to STS — CloudTrail records that call under the
//! key, a moment before Atlas audits the `authenticate` of a user named after the role
//! (`arn:aws:iam::<account>:role/<name>` in `$external`, the session name dropped). The view
//! `access_chain` follows that path for every such connection:
//!
//! 1. each successful `MONGODB-AWS` authentication (one per `conn_uuid` and host) is paired
//!    with the `GetCallerIdentity` calls of the same role (account and role name) within
//!    `link_window` of it. When every candidate carries one key, or the nearest call's key is
//!    the only one within [`TIE_SECONDS`] of it and no other login's nearest call is that one,
//!    the login is linked to that key (`caller_identity`); otherwise it is `ambiguous`, with
//!    the number of keys in contention, and no key is named.
//! 2. A login with no such call falls back to the assumptions of the role whose key was valid
//!    at the login (`time_window` when exactly one was, `ambiguous` with their number when
//!    several were).
//! 3. The key leads to the assumption that issued it (`assume_role_events`); a key no
//!    assumption in the lake issued leaves the login `none`: nothing in the trail explains it.
//! 4. The connection's own audit events give what it did: commands, failures, namespaces, end.
//!
//! Successful assumptions of a watched role (or of a role used for `MONGODB-AWS` logins) whose
//! key opened no session are rows too, with no database columns and link `none`; a key in
//! contention for an ambiguous login is not listed so, since it may have opened it.
//! Watched roles come from the configuration, in the table `watched_roles` (`like_pattern`).
//!
//! It is a table, not a view: the links refer to the logins, the calls and the assumptions
//! many times over, and a view inlines each reference into another scan of the lake. Each scan
//! of [`AccessChainTable`] runs the four scans once ([`stages`]), holds them in memory, and
//! links them ([`links_sql`]).

use std::sync::Arc;
use std::time::Duration;

use arrow::array::StringArray;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use auditlake_schema as schema;

/// Two calls whose distances from a login differ by less than this are equally near: the
/// audit log and CloudTrail are separate clocks, and "the same second" is as close as they
/// can be told apart.
pub const TIE_SECONDS: f64 = 1.0;

pub use auditlake_schema::credentials::DEFAULT_LINK_WINDOW;

/// What the access chain needs from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessSettings {
    /// How far from a login its `GetCallerIdentity` may be.
    pub link_window: Duration,
    /// Watched role ARNs, with `*` and `?` wildcards.
    pub watched_roles: Vec<String>,
}

impl Default for AccessSettings {
    fn default() -> Self {
        AccessSettings {
            link_window: DEFAULT_LINK_WINDOW,
            watched_roles: Vec::new(),
        }
    }
}

/// A role pattern (`*`, `?`) as a SQL `LIKE` pattern, other characters taken literally.
pub fn like_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// The `watched_roles` table of `settings`.
pub fn watched_roles_table(settings: &AccessSettings) -> Result<MemTable> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("role_pattern", DataType::Utf8, false),
        Field::new("like_pattern", DataType::Utf8, false),
    ]));
    let patterns: Vec<String> = settings
        .watched_roles
        .iter()
        .map(|p| like_pattern(p))
        .collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(settings.watched_roles.clone())),
            Arc::new(StringArray::from(patterns)),
        ],
    )?;
    MemTable::try_new(schema, vec![vec![batch]])
}

/// The role a role ARN names, as account and role name (paths dropped: a `MONGODB-AWS` user
/// and an assumed-role session carry none).
fn role_key(arn: &str) -> String {
    format!("split_part({arn}, ':', 5) || ':' || regexp_replace({arn}, '^.*/', '')")
}

/// The scans of the chain, each run once and held (a view would inline each of them at every
/// reference: dozens of scans of the lake), in order: `sessions` reads only the connections of
/// `auths`.
fn stages() -> [(&'static str, String); 4] {
    let auth_role = role_key("\"user\"");
    let check_role = role_key("session_issuer_arn");
    let assumed_role = role_key("role_arn");
    [
        (
            "auths",
            format!(
                r#"
    SELECT conn_uuid, "project", "cluster", hostname, "user" AS db_user,
        min(ts) AS authenticated_at,
        min(COALESCE(remote_ip, remote_ip_text)) AS remote_ip,
        {auth_role} AS role_key,
        CAST(date_part('epoch', min(ts)) AS DOUBLE) AS t
    FROM mongodb_audit
    WHERE atype = 'authenticate' AND mechanism = 'MONGODB-AWS' AND result = 0
      AND conn_uuid IS NOT NULL AND ts IS NOT NULL AND "user" LIKE 'arn:aws:iam::%:role/%'
    GROUP BY conn_uuid, "project", "cluster", hostname, "user"
"#
            ),
        ),
        (
            "checks",
            format!(
                r#"
    SELECT event_id, user_access_key_id AS access_key_id, {check_role} AS role_key,
        CAST(date_part('epoch', event_time) AS DOUBLE) AS t
    FROM cloudtrail
    WHERE event_source = 'sts.amazonaws.com' AND event_name = 'GetCallerIdentity'
      AND error_code IS NULL AND user_access_key_id IS NOT NULL
      AND session_issuer_arn IS NOT NULL AND event_time IS NOT NULL
"#
            ),
        ),
        (
            "assumptions",
            format!(
                r#"
    SELECT role_arn, event_id, event_time, caller_principal, caller_account_id, source_ip,
        session_name, access_key_issued, key_expires_at, {assumed_role} AS role_key
    FROM (
        SELECT *, row_number() OVER (
            PARTITION BY access_key_issued ORDER BY event_time, event_id
        ) AS copy
        FROM assume_role_events
        WHERE outcome = 'success' AND access_key_issued IS NOT NULL AND role_arn IS NOT NULL
    ) AS numbered
    WHERE copy = 1
"#
            ),
        ),
        (
            "sessions",
            r#"
    SELECT conn_uuid, hostname,
        max(app_name) AS app_name,
        max(ts) FILTER (WHERE atype = 'logout') AS ended_at,
        count(*) FILTER (WHERE atype = 'authCheck') AS commands,
        count(*) FILTER (WHERE atype = 'authCheck' AND result <> 0) AS failed_commands,
        array_sort(array_agg(DISTINCT ns) FILTER (
            WHERE ns IS NOT NULL AND atype NOT IN ('authenticate', 'logout', 'clientMetadata')
        )) AS namespaces
    FROM mongodb_audit
    WHERE conn_uuid IN (SELECT conn_uuid FROM auths)
    GROUP BY conn_uuid, hostname
"#
            .to_owned(),
        ),
    ]
}

/// The links over the held scans (see the module documentation).
fn links_sql(settings: &AccessSettings) -> String {
    let window = settings.link_window.as_secs_f64().max(0.001);
    format!(
        r#"
WITH
check_buckets AS (
    SELECT c.event_id, c.access_key_id, c.role_key, c.t,
        CAST(floor(c.t / {window}) AS BIGINT) + o.shift AS bucket
    FROM checks c CROSS JOIN (VALUES (-1), (0), (1)) AS o(shift)
),
pairs AS (
    SELECT a.conn_uuid, a.hostname, c.event_id, c.access_key_id, abs(a.t - c.t) AS distance
    FROM auths a
    JOIN check_buckets c
      ON c.role_key = a.role_key AND c.bucket = CAST(floor(a.t / {window}) AS BIGINT)
    WHERE abs(a.t - c.t) <= {window}
),
nearest AS (
    SELECT conn_uuid, hostname, min(distance) AS distance
    FROM pairs GROUP BY conn_uuid, hostname
),
nearest_check AS (
    SELECT p.conn_uuid, p.hostname, min(p.event_id) AS event_id
    FROM pairs p
    JOIN nearest n ON n.conn_uuid = p.conn_uuid AND n.hostname = p.hostname AND p.distance = n.distance
    GROUP BY p.conn_uuid, p.hostname
),
contention AS (
    SELECT p.conn_uuid, p.hostname,
        count(DISTINCT p.access_key_id) AS all_keys,
        count(DISTINCT p.access_key_id) FILTER (WHERE p.distance <= n.distance + {TIE_SECONDS}) AS near_keys
    FROM pairs p
    JOIN nearest n ON n.conn_uuid = p.conn_uuid AND n.hostname = p.hostname
    GROUP BY p.conn_uuid, p.hostname
),
claims AS (
    SELECT event_id, count(*) AS claimants FROM nearest_check GROUP BY event_id
),
checked AS (
    SELECT k.conn_uuid, k.hostname, k.event_id, c.access_key_id,
        (x.all_keys = 1 OR (x.near_keys = 1 AND cl.claimants = 1)) AS linked,
        CASE WHEN x.near_keys > 1 THEN x.near_keys ELSE x.all_keys END AS keys
    FROM nearest_check k
    JOIN contention x ON x.conn_uuid = k.conn_uuid AND x.hostname = k.hostname
    JOIN claims cl ON cl.event_id = k.event_id
    JOIN checks c ON c.event_id = k.event_id
),
unchecked AS (
    SELECT a.conn_uuid, a.hostname, a.role_key, a.authenticated_at
    FROM auths a
    LEFT JOIN nearest n ON n.conn_uuid = a.conn_uuid AND n.hostname = a.hostname
    WHERE n.conn_uuid IS NULL
),
windowed AS (
    SELECT u.conn_uuid, u.hostname, count(s.event_id) AS keys, min(s.access_key_issued) AS access_key_id
    FROM unchecked u
    LEFT JOIN assumptions s
      ON s.role_key = u.role_key
     AND u.authenticated_at >= s.event_time AND u.authenticated_at <= s.key_expires_at
    GROUP BY u.conn_uuid, u.hostname
),
links AS (
    SELECT conn_uuid, hostname,
        CASE WHEN linked THEN event_id END AS caller_identity_event_id,
        CASE WHEN linked THEN access_key_id END AS access_key_id,
        CASE WHEN linked THEN 'caller_identity' ELSE 'ambiguous' END AS link,
        CASE WHEN linked THEN 1 ELSE keys END AS link_candidates
    FROM checked
    UNION ALL
    SELECT conn_uuid, hostname, CAST(NULL AS VARCHAR),
        CASE WHEN keys = 1 THEN access_key_id END,
        CASE WHEN keys = 0 THEN 'none' WHEN keys = 1 THEN 'time_window' ELSE 'ambiguous' END,
        keys
    FROM windowed
),
chain_roles AS (
    SELECT s.event_id FROM assumptions s JOIN watched_roles w ON s.role_arn LIKE w.like_pattern
    UNION
    SELECT s.event_id FROM assumptions s JOIN (SELECT DISTINCT role_key FROM auths) r ON r.role_key = s.role_key
),
used_keys AS (
    SELECT access_key_id FROM links
    WHERE access_key_id IS NOT NULL AND link IN ('caller_identity', 'time_window')
    UNION
    SELECT p.access_key_id FROM pairs p
    JOIN checked c ON c.conn_uuid = p.conn_uuid AND c.hostname = p.hostname
    WHERE NOT c.linked
    UNION
    SELECT s.access_key_issued FROM unchecked u
    JOIN assumptions s
      ON s.role_key = u.role_key
     AND u.authenticated_at >= s.event_time AND u.authenticated_at <= s.key_expires_at
)
SELECT
    COALESCE(s.role_arn, a.db_user) AS role_arn,
    s.event_id AS assume_event_id,
    s.event_time AS assumed_at,
    s.caller_principal,
    s.caller_account_id,
    s.source_ip AS caller_ip,
    s.session_name,
    l.access_key_id,
    s.key_expires_at,
    l.caller_identity_event_id,
    a."project" AS db_project,
    a."cluster" AS db_cluster,
    a.hostname AS db_host,
    a.conn_uuid AS db_session_id,
    a.db_user,
    a.authenticated_at AS db_authenticated_at,
    a.remote_ip AS db_remote_ip,
    x.app_name AS db_app_name,
    x.ended_at AS db_ended_at,
    x.commands AS db_commands,
    x.failed_commands AS db_failed_commands,
    x.namespaces AS db_namespaces,
    CASE WHEN l.access_key_id IS NOT NULL AND s.event_id IS NULL THEN 'none' ELSE l.link END AS link,
    CASE WHEN l.access_key_id IS NOT NULL AND s.event_id IS NULL THEN 0 ELSE l.link_candidates END AS link_candidates
FROM auths a
JOIN links l ON l.conn_uuid = a.conn_uuid AND l.hostname = a.hostname
LEFT JOIN assumptions s ON s.access_key_issued = l.access_key_id
LEFT JOIN sessions x ON x.conn_uuid = a.conn_uuid AND x.hostname = a.hostname
UNION ALL
SELECT
    s.role_arn, s.event_id, s.event_time, s.caller_principal, s.caller_account_id, s.source_ip,
    s.session_name, s.access_key_issued, s.key_expires_at,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    'none', 0
FROM assumptions s
WHERE s.event_id IN (SELECT event_id FROM chain_roles)
  AND s.access_key_issued NOT IN (SELECT access_key_id FROM used_keys)
"#
    )
}

/// The `access_chain` table: on each scan, the [`stages`] run once each against the lake
/// tables and are held in memory, then [`links_sql`] runs over them. The lake tables are the
/// session's own providers, so a scan reads the files a query of them would, within the same
/// memory pool and time limit.
#[derive(Debug)]
pub struct AccessChainTable {
    settings: AccessSettings,
    /// `cloudtrail` and `mongodb_audit`.
    lake: Vec<(String, Arc<dyn TableProvider>)>,
    schema: SchemaRef,
}

impl AccessChainTable {
    /// The table over the lake tables of `ctx`, its schema planned once.
    pub async fn new(ctx: &SessionContext, settings: &AccessSettings) -> Result<Self> {
        let mut lake = Vec::new();
        for table in [schema::CLOUDTRAIL, schema::MONGODB_AUDIT] {
            lake.push((table.to_owned(), ctx.table_provider(table).await?));
        }
        let mut table = AccessChainTable {
            settings: settings.clone(),
            lake,
            schema: Arc::new(Schema::empty()),
        };
        let (ctx, _) = table.context(&ctx.state(), false).await?;
        table.schema = Arc::new(
            ctx.sql(&links_sql(settings))
                .await?
                .schema()
                .as_arrow()
                .clone(),
        );
        Ok(table)
    }

    /// A context of the lake tables, the watched roles and the stages: run and held when `run`,
    /// else empty with their planned schemas. Returns the final rows' batches when run.
    async fn context(
        &self,
        session: &dyn Session,
        run: bool,
    ) -> Result<(SessionContext, Vec<RecordBatch>)> {
        let ctx = SessionContext::new_with_config_rt(
            session.config().clone(),
            Arc::clone(session.runtime_env()),
        );
        ctx.register_udf(crate::key_expiry::KeyExpiry::udf());
        for (name, provider) in &self.lake {
            ctx.register_table(name.as_str(), Arc::clone(provider))?;
        }
        ctx.register_table(
            "watched_roles",
            Arc::new(watched_roles_table(&self.settings)?),
        )?;
        let assume_role_events = crate::views::ASSUME_ROLE_EVENTS;
        ctx.sql(&format!(
            "CREATE VIEW assume_role_events AS {assume_role_events}"
        ))
        .await?
        .collect()
        .await?;
        for (name, sql) in stages() {
            let frame = ctx.sql(&sql).await?;
            let schema = Arc::new(frame.schema().as_arrow().clone());
            let batches = if run {
                frame.collect().await?
            } else {
                Vec::new()
            };
            ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
        }
        let rows = if run {
            ctx.sql(&links_sql(&self.settings)).await?.collect().await?
        } else {
            Vec::new()
        };
        Ok((ctx, rows))
    }
}

#[async_trait::async_trait]
impl TableProvider for AccessChainTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (_, rows) = self.context(state, true).await?;
        MemTable::try_new(Arc::clone(&self.schema), vec![rows])?
            .scan(state, projection, filters, limit)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_patterns_become_like_patterns_with_the_rest_literal() {
        assert_eq!(
            like_pattern("arn:aws:iam::*:role/db_?"),
            "arn:aws:iam::%:role/db\\__"
        );
        assert_eq!(like_pattern("a%b\\c"), "a\\%b\\\\c");
    }
}
