"""DuckDB's side of ingest/benches/ingest.sh: converts the same files to Parquet with a flattened
schema comparable to auditlake's (typed columns for the fields audits filter on, the free-form
parts kept as JSON text), zstd-compressed, on two threads.

Usage: duckdb_convert.py cloudtrail|atlas_audit INPUT_FOLDER OUTPUT_FILE
Prints the number of rows written.
"""

import os
import sys

import duckdb

CLOUDTRAIL = """
COPY (
  SELECT
    TRY_CAST(r->>'eventTime' AS TIMESTAMPTZ) AS event_time,
    r->>'eventID' AS event_id,
    r->>'eventVersion' AS event_version,
    r->>'eventSource' AS event_source,
    r->>'eventName' AS event_name,
    r->>'awsRegion' AS aws_region,
    r->>'sourceIPAddress' AS source_ip,
    r->>'userAgent' AS user_agent,
    r->>'errorCode' AS error_code,
    r->>'errorMessage' AS error_message,
    TRY_CAST(r->>'readOnly' AS BOOLEAN) AS read_only,
    TRY_CAST(r->>'managementEvent' AS BOOLEAN) AS management_event,
    r->>'eventType' AS event_type,
    r->>'eventCategory' AS event_category,
    r->>'requestID' AS request_id,
    r->>'recipientAccountId' AS recipient_account_id,
    r->>'sharedEventID' AS shared_event_id,
    r->'userIdentity'->>'type' AS user_type,
    r->'userIdentity'->>'arn' AS user_arn,
    r->'userIdentity'->>'principalId' AS user_principal_id,
    r->'userIdentity'->>'accountId' AS user_account_id,
    r->'userIdentity'->>'accessKeyId' AS user_access_key_id,
    coalesce(r->'userIdentity'->>'userName',
             r->'userIdentity'->'sessionContext'->'sessionIssuer'->>'userName') AS user_name,
    r->'userIdentity'->'sessionContext'->'sessionIssuer'->>'arn' AS session_issuer_arn,
    r->'userIdentity'->'sessionContext'->'sessionIssuer'->>'type' AS session_issuer_type,
    r->'userIdentity'->'sessionContext'->'sessionIssuer'->>'accountId' AS session_issuer_account_id,
    r->'userIdentity'->>'invokedBy' AS invoked_by,
    TRY_CAST(r->'userIdentity'->'sessionContext'->'attributes'->>'mfaAuthenticated' AS BOOLEAN)
      AS mfa_authenticated,
    TRY_CAST(r->'userIdentity'->'sessionContext'->'attributes'->>'creationDate' AS TIMESTAMPTZ)
      AS session_created_at,
    coalesce(r->'userIdentity'->'sessionContext'->>'sourceIdentity',
             r->'requestParameters'->>'sourceIdentity') AS source_identity,
    r->'requestParameters'->>'roleArn' AS role_arn,
    r->'requestParameters'->>'roleSessionName' AS role_session_name,
    r->'responseElements'->'assumedRoleUser'->>'arn' AS assumed_role_arn,
    r->'responseElements'->'credentials'->>'accessKeyId' AS assumed_access_key_id,
    r->'requestParameters'->>'externalId' AS external_id,
    CAST(r->'userIdentity' AS VARCHAR) AS user_identity,
    CAST(r->'requestParameters' AS VARCHAR) AS request_parameters,
    CAST(json_merge_patch(r->'responseElements', '{{"credentials":{{"sessionToken":null}}}}') AS VARCHAR)
      AS response_elements,
    CAST(r->'additionalEventData' AS VARCHAR) AS additional_event_data,
    CAST(r->'resources' AS VARCHAR) AS resources,
    CAST(r->'tlsDetails' AS VARCHAR) AS tls_details,
    filename AS source_uri
  FROM (
    SELECT unnest(Records) AS r, filename
    FROM read_json('{input}/**/*.json.gz', columns = {{Records: 'JSON[]'}},
                   format = 'auto', filename = true, maximum_object_size = 67108864)
  )
) TO '{output}' (FORMAT parquet, COMPRESSION zstd)
"""

ATLAS_AUDIT = """
COPY (
  SELECT
    TRY_CAST(ts->>'$."$date"' AS TIMESTAMPTZ) AS ts,
    atype,
    result,
    users->0->>'user' AS "user",
    users->0->>'db' AS user_db,
    CAST(users AS VARCHAR) AS users,
    CAST(roles AS VARCHAR) AS roles,
    param->>'mechanism' AS mechanism,
    remote->>'ip' AS remote_ip,
    TRY_CAST(remote->>'port' AS INTEGER) AS remote_port,
    "local"->>'ip' AS local_ip,
    TRY_CAST("local"->>'port' AS INTEGER) AS local_port,
    TRY_CAST(coalesce(remote->>'isSystemUser', "local"->>'isSystemUser') AS BOOLEAN) AS is_system_user,
    coalesce(uuid->>'$."$uuid"', uuid->>'$."$binary"') AS conn_uuid,
    param->>'ns' AS ns,
    param->>'command' AS command,
    CAST(param AS VARCHAR) AS param,
    param->'clientMetadata'->'application'->>'name' AS app_name,
    concat_ws(' ', param->'clientMetadata'->'driver'->>'name',
                   param->'clientMetadata'->'driver'->>'version') AS driver,
    filename AS source_uri
  FROM read_json('{input}/**/*.log*', format = 'newline_delimited', filename = true,
                 columns = {{atype: 'VARCHAR', ts: 'JSON', uuid: 'JSON', "local": 'JSON',
                            remote: 'JSON', users: 'JSON', roles: 'JSON', param: 'JSON',
                            result: 'INTEGER'}},
                 ignore_errors = true, maximum_object_size = 16777216)
) TO '{output}' (FORMAT parquet, COMPRESSION zstd)
"""


def main():
    kind, folder, output = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    sql = CLOUDTRAIL if kind == "cloudtrail" else ATLAS_AUDIT
    con.execute(sql.format(input=folder, output=output))
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{output}')").fetchone()[0]
    print(rows)


if __name__ == "__main__":
    main()
