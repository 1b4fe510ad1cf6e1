//! Views over the lake tables for the questions auditors ask, registered in every session.
//!
//! - `assume_role_events`: the `AssumeRole` family, one row per role assumption: the caller's
//!   record joined to the role owner's copy of a cross-account call (same `sharedEventID`,
//!   `userIdentity.type = AWSAccount`); an owner copy whose caller record is not in the lake
//!   stands alone. The caller is the session's issuer, the user, its principal id, or the AWS
//!   service that called; `cross_account` compares the accounts the record knows (NULL where it
//!   knows none, as for web identity and SAML callers); `key_expires_at` is when the key it
//!   issued stops working.
//! - `db_sessions`: one row per MongoDB connection (`conn_uuid` on one host): who, how, from
//!   where, with which app and driver, when it started and ended, and what it did.
//! - `identity_activity`: one timeline across both sources.
//! - `access_chain` (defined in [`crate::access`], after these): each `MONGODB-AWS` database
//!   session linked to the assumption whose key opened it.
//!
//! Each keeps the `date` and `hour` partition columns of its driving table, so filters on them
//! still prune files.

/// `(name, SQL)` of each view, in registration order.
pub const VIEWS: [(&str, &str); 3] = [
    ("assume_role_events", ASSUME_ROLE_EVENTS),
    ("db_sessions", DB_SESSIONS),
    ("identity_activity", IDENTITY_ACTIVITY),
];

pub(crate) const ASSUME_ROLE_EVENTS: &str = r#"
WITH assumptions AS (
    SELECT * FROM cloudtrail
    WHERE event_source = 'sts.amazonaws.com'
      AND event_name IN ('AssumeRole', 'AssumeRoleWithWebIdentity', 'AssumeRoleWithSAML')
),
callers AS (SELECT * FROM assumptions WHERE user_type IS DISTINCT FROM 'AWSAccount'),
owners AS (SELECT * FROM assumptions WHERE user_type = 'AWSAccount')
SELECT
    c.event_time,
    c.event_name,
    c.event_id,
    o.event_id AS owner_event_id,
    c.shared_event_id,
    c.user_type AS caller_type,
    COALESCE(c.session_issuer_arn, c.user_arn, c.user_principal_id, c.invoked_by) AS caller_principal,
    c.user_arn AS caller_arn,
    c.user_account_id AS caller_account_id,
    c.role_arn,
    split_part(c.role_arn, ':', 5) AS role_account_id,
    c.role_session_name AS session_name,
    c.source_identity,
    c.external_id,
    c.source_ip,
    c.user_agent,
    c.assumed_access_key_id AS access_key_issued,
    CASE WHEN c.assumed_access_key_id IS NOT NULL
        THEN cloudtrail_key_expiry(c.event_time, c.request_parameters, c.response_elements) END AS key_expires_at,
    c.assumed_role_arn,
    CASE WHEN c.error_code IS NULL THEN 'success' ELSE c.error_code END AS outcome,
    c.error_message,
    -- The caller's account, where the record tells it: its own, its session issuer's, or for an
    -- AWS service acting for an account, the account the record was delivered to. Unknown
    -- (web identity, SAML) or no role account: NULL, not a guess.
    COALESCE(
        c.user_account_id,
        c.session_issuer_account_id,
        CASE WHEN c.user_type = 'AWSService' THEN c.recipient_account_id END
    ) <> NULLIF(split_part(c.role_arn, ':', 5), '') AS cross_account,
    c.aws_region,
    c.date,
    c.hour
FROM callers c
LEFT JOIN owners o ON o.shared_event_id = c.shared_event_id
UNION ALL
SELECT
    o.event_time,
    o.event_name,
    o.event_id,
    o.event_id AS owner_event_id,
    o.shared_event_id,
    o.user_type AS caller_type,
    o.user_principal_id AS caller_principal,
    o.user_arn AS caller_arn,
    o.user_account_id AS caller_account_id,
    o.role_arn,
    split_part(o.role_arn, ':', 5) AS role_account_id,
    o.role_session_name AS session_name,
    o.source_identity,
    o.external_id,
    o.source_ip,
    o.user_agent,
    o.assumed_access_key_id AS access_key_issued,
    CASE WHEN o.assumed_access_key_id IS NOT NULL
        THEN cloudtrail_key_expiry(o.event_time, o.request_parameters, o.response_elements) END AS key_expires_at,
    o.assumed_role_arn,
    CASE WHEN o.error_code IS NULL THEN 'success' ELSE o.error_code END AS outcome,
    o.error_message,
    -- The owner's copy names the caller's account: a copy of a call from the role's own
    -- account is not cross-account.
    o.user_account_id <> NULLIF(split_part(o.role_arn, ':', 5), '') AS cross_account,
    o.aws_region,
    o.date,
    o.hour
FROM owners o
WHERE o.shared_event_id IS NULL
   OR o.shared_event_id NOT IN (SELECT shared_event_id FROM callers WHERE shared_event_id IS NOT NULL)
"#;

const DB_SESSIONS: &str = r#"
SELECT
    conn_uuid AS session_id,
    "project",
    "cluster",
    hostname,
    max("user") FILTER (WHERE atype = 'authenticate' AND result = 0) AS "user",
    max(user_db) FILTER (WHERE atype = 'authenticate' AND result = 0) AS user_db,
    max(mechanism) FILTER (WHERE atype = 'authenticate') AS mechanism,
    max(remote_ip) AS remote_ip,
    max(remote_port) AS remote_port,
    max(app_name) AS app_name,
    max(driver) AS driver,
    min(ts) AS started,
    max(ts) FILTER (WHERE atype = 'logout') AS ended,
    max(ts) AS last_seen,
    CAST(date_part('epoch', max(ts)) - date_part('epoch', min(ts)) AS DOUBLE) AS duration_seconds,
    count(*) FILTER (WHERE atype = 'authCheck') AS commands,
    count(*) FILTER (WHERE atype = 'authCheck' AND result <> 0) AS failed_auth_checks,
    count(*) FILTER (WHERE atype = 'authenticate' AND result <> 0) AS failed_authentications,
    count(*) AS events,
    min(date) AS date
FROM mongodb_audit
WHERE conn_uuid IS NOT NULL
GROUP BY conn_uuid, "project", "cluster", hostname
"#;

const IDENTITY_ACTIVITY: &str = r#"
SELECT
    event_time AS time,
    'cloudtrail' AS source,
    COALESCE(user_arn, user_principal_id, user_type) AS actor,
    event_source || ':' || event_name AS action,
    role_arn AS target,
    CASE WHEN error_code IS NULL THEN 'success' ELSE error_code END AS outcome,
    source_ip,
    event_id AS reference,
    date,
    hour
FROM cloudtrail
UNION ALL
SELECT
    ts AS time,
    'mongodb_audit' AS source,
    CASE WHEN "user" IS NULL THEN NULL ELSE "user" || '@' || COALESCE(user_db, '') END AS actor,
    atype AS action,
    COALESCE(ns, "cluster") AS target,
    CASE WHEN result = 0 THEN 'success' ELSE 'error ' || CAST(result AS VARCHAR) END AS outcome,
    COALESCE(remote_ip, remote_ip_text) AS source_ip,
    conn_uuid AS reference,
    date,
    hour
FROM mongodb_audit
"#;
