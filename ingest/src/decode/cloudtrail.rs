//! CloudTrail records into `cloudtrail` rows.
//!
//! Input is a parsed record (from a `{"Records":[...]}` log file or one CloudWatch Logs message).
//! Every documented field the rules and audits filter on becomes a typed column; the free-form
//! parts (`userIdentity`, `requestParameters`, `responseElements`, ...) stay as JSON text, and
//! top-level fields this version does not know go to `unmapped`, so nothing is lost. The STS
//! session token in `responseElements.credentials` is left out of everything written. Each
//! record is read straight from simd-json's tape: no value tree, no copy of a field's text.

use simd_json::prelude::*;
use simd_json::tape::Value;

use auditlake_schema as schema;

use super::ObjectContext;
use super::columns::{SameInEveryRow, TableBuilder, table_columns};
use super::tape::{
    boolean, boolean_noted, fields, get, text, utf8, write_json, write_key, write_object,
    write_value,
};
use super::time::{from_epoch_number, parse_text};

table_columns! {
    pub enum Col {
        event_time, event_id, event_version, event_source, event_name, aws_region, source_ip,
        user_agent, error_code, error_message, read_only, management_event, event_type,
        event_category, request_id, recipient_account_id, shared_event_id, user_type, user_arn,
        user_principal_id, user_account_id, user_access_key_id, user_name, session_issuer_arn,
        session_issuer_type, session_issuer_account_id, invoked_by, mfa_authenticated,
        session_created_at, source_identity, role_arn, role_session_name, assumed_role_arn,
        assumed_access_key_id, external_id, user_identity, request_parameters,
        response_elements, additional_event_data, resources, tls_details, unmapped,
        source_uri, source_index, ingested_at, decode_note,
    }
}

/// Top-level record fields that have a column of their own.
const MAPPED_FIELDS: &[&str] = &[
    "eventTime",
    "eventID",
    "eventVersion",
    "eventSource",
    "eventName",
    "awsRegion",
    "sourceIPAddress",
    "userAgent",
    "errorCode",
    "errorMessage",
    "readOnly",
    "managementEvent",
    "eventType",
    "eventCategory",
    "requestID",
    "recipientAccountId",
    "sharedEventID",
    "userIdentity",
    "requestParameters",
    "responseElements",
    "additionalEventData",
    "resources",
    "tlsDetails",
];

/// A new builder for the `cloudtrail` rows of the object `ctx` describes.
pub fn builder(ctx: &ObjectContext<'_>) -> TableBuilder {
    let schema = schema::file_schema(schema::CLOUDTRAIL).expect("cloudtrail schema");
    let mut rows = TableBuilder::new(schema::CLOUDTRAIL, schema, Col::NAMES);
    rows.same_in_every_row(Col::source_uri, SameInEveryRow::Text(Some(ctx.source_uri)));
    rows.same_in_every_row(
        Col::ingested_at,
        SameInEveryRow::Timestamp(Some(ctx.ingested_at_micros)),
    );
    rows
}

/// Why a JSON value is not a CloudTrail record.
pub fn not_a_record(record: Value<'_, '_>) -> Option<&'static str> {
    if record.as_object().is_none() {
        return Some("a CloudTrail record must be a JSON object");
    }
    // A record without any of these is some other document (a digest, an Insights event, ...).
    let known = [
        "eventID",
        "eventName",
        "eventSource",
        "eventTime",
        "userIdentity",
    ];
    if known.iter().any(|k| record.contains_key(k)) {
        None
    } else {
        Some(
            "not a CloudTrail record: none of eventID, eventName, eventSource, eventTime, userIdentity",
        )
    }
}

/// The top-level fields of one record, found in one pass over its keys.
#[derive(Default, Clone, Copy)]
struct Fields<'t, 'i> {
    event_time: Option<Value<'t, 'i>>,
    event_id: Option<Value<'t, 'i>>,
    event_version: Option<Value<'t, 'i>>,
    event_source: Option<Value<'t, 'i>>,
    event_name: Option<Value<'t, 'i>>,
    aws_region: Option<Value<'t, 'i>>,
    source_ip: Option<Value<'t, 'i>>,
    user_agent: Option<Value<'t, 'i>>,
    error_code: Option<Value<'t, 'i>>,
    error_message: Option<Value<'t, 'i>>,
    read_only: Option<Value<'t, 'i>>,
    management_event: Option<Value<'t, 'i>>,
    event_type: Option<Value<'t, 'i>>,
    event_category: Option<Value<'t, 'i>>,
    request_id: Option<Value<'t, 'i>>,
    recipient_account_id: Option<Value<'t, 'i>>,
    shared_event_id: Option<Value<'t, 'i>>,
    user_identity: Option<Value<'t, 'i>>,
    request_parameters: Option<Value<'t, 'i>>,
    response_elements: Option<Value<'t, 'i>>,
    additional_event_data: Option<Value<'t, 'i>>,
    resources: Option<Value<'t, 'i>>,
    tls_details: Option<Value<'t, 'i>>,
    /// Whether some top-level key has no column of its own.
    has_unmapped: bool,
}

impl<'t, 'i> Fields<'t, 'i> {
    fn read(record: Value<'t, 'i>) -> Self {
        let mut f = Fields::default();
        let Some(object) = record.as_object() else {
            return f;
        };
        for (key, value) in object.iter() {
            let slot = match key {
                "eventTime" => &mut f.event_time,
                "eventID" => &mut f.event_id,
                "eventVersion" => &mut f.event_version,
                "eventSource" => &mut f.event_source,
                "eventName" => &mut f.event_name,
                "awsRegion" => &mut f.aws_region,
                "sourceIPAddress" => &mut f.source_ip,
                "userAgent" => &mut f.user_agent,
                "errorCode" => &mut f.error_code,
                "errorMessage" => &mut f.error_message,
                "readOnly" => &mut f.read_only,
                "managementEvent" => &mut f.management_event,
                "eventType" => &mut f.event_type,
                "eventCategory" => &mut f.event_category,
                "requestID" => &mut f.request_id,
                "recipientAccountId" => &mut f.recipient_account_id,
                "sharedEventID" => &mut f.shared_event_id,
                "userIdentity" => &mut f.user_identity,
                "requestParameters" => &mut f.request_parameters,
                "responseElements" => &mut f.response_elements,
                "additionalEventData" => &mut f.additional_event_data,
                "resources" => &mut f.resources,
                "tlsDetails" => &mut f.tls_details,
                _ => {
                    f.has_unmapped = true;
                    continue;
                }
            };
            // A repeated key: the last one wins, as in every JSON object reader.
            *slot = Some(value);
        }
        f
    }
}

/// The keys of `userIdentity` that have columns of their own (or lead to them).
const IDENTITY_FIELDS: [&str; 8] = [
    "type",
    "arn",
    "principalId",
    "accountId",
    "accessKeyId",
    "userName",
    "invokedBy",
    "sessionContext",
];

/// Appends one record (checked with [`not_a_record`] first) as a row; `scratch` is reused for
/// the JSON text columns.
pub fn append(rows: &mut TableBuilder, record: Value<'_, '_>, index: i64, scratch: &mut Vec<u8>) {
    let f = Fields::read(record);
    let identity = f.user_identity;
    let [
        user_type,
        arn,
        principal_id,
        account_id,
        access_key_id,
        user_name,
        invoked_by,
        session,
    ] = fields(identity, IDENTITY_FIELDS);
    let [issuer, attributes, session_source_identity] =
        fields(session, ["sessionIssuer", "attributes", "sourceIdentity"]);
    let [issuer_user_name, issuer_arn, issuer_type, issuer_account_id] =
        fields(issuer, ["userName", "arn", "type", "accountId"]);
    let [creation_date, mfa_authenticated] =
        fields(attributes, ["creationDate", "mfaAuthenticated"]);
    let request = f.request_parameters;
    let [
        request_source_identity,
        role_arn,
        role_session_name,
        external_id,
    ] = fields(
        request,
        ["sourceIdentity", "roleArn", "roleSessionName", "externalId"],
    );
    let response = f.response_elements;

    let mut notes: Vec<String> = Vec::new();
    let event_time = match f.event_time {
        None => {
            notes.push("eventTime missing; left null".to_owned());
            None
        }
        Some(v) if v.is_null() => {
            notes.push("eventTime missing; left null".to_owned());
            None
        }
        Some(v) => match (v.as_str(), v.cast_f64()) {
            (Some(s), _) => {
                let t = parse_text("eventTime", s);
                notes.extend(t.note);
                t.micros
            }
            (None, Some(n)) => {
                let t = from_epoch_number("eventTime", n);
                notes.extend(t.note);
                t.micros
            }
            (None, None) => {
                notes.push("eventTime is not a time; left null".to_owned());
                None
            }
        },
    };
    let session_created = text(creation_date).and_then(|s| {
        let parsed = parse_text("userIdentity.sessionContext.attributes.creationDate", &s);
        notes.extend(parsed.note);
        parsed.micros
    });

    rows.timestamp(Col::event_time, event_time);
    rows.str(Col::event_id, text(f.event_id).as_deref());
    rows.str(Col::event_version, text(f.event_version).as_deref());
    rows.str(Col::event_source, text(f.event_source).as_deref());
    rows.str(Col::event_name, text(f.event_name).as_deref());
    rows.str(Col::aws_region, text(f.aws_region).as_deref());
    rows.str(Col::source_ip, text(f.source_ip).as_deref());
    rows.str(Col::user_agent, text(f.user_agent).as_deref());
    rows.str(Col::error_code, text(f.error_code).as_deref());
    rows.str(Col::error_message, text(f.error_message).as_deref());
    rows.bool(
        Col::read_only,
        boolean_noted("readOnly", f.read_only, &mut notes),
    );
    rows.bool(
        Col::management_event,
        boolean_noted("managementEvent", f.management_event, &mut notes),
    );
    rows.str(Col::event_type, text(f.event_type).as_deref());
    rows.str(Col::event_category, text(f.event_category).as_deref());
    rows.str(Col::request_id, text(f.request_id).as_deref());
    rows.str(
        Col::recipient_account_id,
        text(f.recipient_account_id).as_deref(),
    );
    rows.str(Col::shared_event_id, text(f.shared_event_id).as_deref());
    rows.str(Col::user_type, text(user_type).as_deref());
    rows.str(Col::user_arn, text(arn).as_deref());
    rows.str(Col::user_principal_id, text(principal_id).as_deref());
    rows.str(Col::user_account_id, text(account_id).as_deref());
    rows.str(Col::user_access_key_id, text(access_key_id).as_deref());
    rows.str(
        Col::user_name,
        text(user_name)
            .or_else(|| text(issuer_user_name))
            .as_deref(),
    );
    rows.str(Col::session_issuer_arn, text(issuer_arn).as_deref());
    rows.str(Col::session_issuer_type, text(issuer_type).as_deref());
    rows.str(
        Col::session_issuer_account_id,
        text(issuer_account_id).as_deref(),
    );
    rows.str(Col::invoked_by, text(invoked_by).as_deref());
    rows.bool(Col::mfa_authenticated, boolean(mfa_authenticated));
    rows.timestamp(Col::session_created_at, session_created);
    rows.str(
        Col::source_identity,
        text(session_source_identity)
            .or_else(|| text(request_source_identity))
            .as_deref(),
    );
    rows.str(Col::role_arn, text(role_arn).as_deref());
    rows.str(Col::role_session_name, text(role_session_name).as_deref());
    rows.str(
        Col::assumed_role_arn,
        text(get(get(response, "assumedRoleUser"), "arn")).as_deref(),
    );
    rows.str(
        Col::assumed_access_key_id,
        text(get(get(response, "credentials"), "accessKeyId")).as_deref(),
    );
    rows.str(Col::external_id, text(external_id).as_deref());
    json_column(rows, Col::user_identity, identity, scratch);
    json_column(rows, Col::request_parameters, request, scratch);
    if write_response_elements(response, scratch) {
        rows.str(Col::response_elements, utf8(scratch));
    }
    json_column(
        rows,
        Col::additional_event_data,
        f.additional_event_data,
        scratch,
    );
    json_column(rows, Col::resources, f.resources, scratch);
    json_column(rows, Col::tls_details, f.tls_details, scratch);
    if f.has_unmapped
        && let Some(object) = record.as_object()
        && write_object(
            object.iter().filter(|(k, _)| !MAPPED_FIELDS.contains(k)),
            scratch,
        )
    {
        rows.str(Col::unmapped, utf8(scratch));
    }
    rows.i64(Col::source_index, Some(index));
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    rows.str(Col::decode_note, note.as_deref());
    rows.end_row();
}

fn json_column(
    rows: &mut TableBuilder,
    col: Col,
    value: Option<Value<'_, '_>>,
    scratch: &mut Vec<u8>,
) {
    if write_json(value, scratch) {
        rows.str(col, utf8(scratch));
    }
}

/// Writes `responseElements` without the STS session token, wherever CloudTrail puts issued
/// credentials; `false` when it is missing or null.
fn write_response_elements(response: Option<Value<'_, '_>>, out: &mut Vec<u8>) -> bool {
    let Some(credentials) = get(response, "credentials") else {
        return write_json(response, out);
    };
    if !credentials.contains_key("sessionToken") {
        return write_json(response, out);
    }
    let (Some(response), Some(credentials)) = (
        response.and_then(|r| r.as_object()),
        credentials.as_object(),
    ) else {
        return write_json(response, out);
    };
    let mut kept_credentials = Vec::new();
    write_object(
        credentials.iter().filter(|(k, _)| *k != "sessionToken"),
        &mut kept_credentials,
    );
    out.clear();
    out.push(b'{');
    for (i, (key, value)) in response.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_key(key, out);
        if key == "credentials" {
            if kept_credentials.is_empty() {
                out.extend_from_slice(b"{}");
            } else {
                out.extend_from_slice(&kept_credentials);
            }
        } else {
            write_value(value, out);
        }
    }
    out.push(b'}');
    true
}

/// Whether a parsed document is a CloudTrail digest file (no records; hashes of log files).
pub fn is_digest(document: Value<'_, '_>) -> bool {
    document.contains_key("digestStartTime") && document.contains_key("logFiles")
}
