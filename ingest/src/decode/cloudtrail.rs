//! CloudTrail records into `cloudtrail` rows.
//!
//! Input is a parsed record (from a `{"Records":[...]}` log file or one CloudWatch Logs message).
//! Every documented field the rules and audits filter on becomes a typed column; the free-form
//! parts (`userIdentity`, `requestParameters`, `responseElements`, ...) stay as JSON text, and
//! top-level fields this version does not know go to `unmapped`, so nothing is lost. The STS
//! session token in `responseElements.credentials` is removed before anything is written.

use simd_json::BorrowedValue;
use simd_json::prelude::*;

use auditlake_schema as schema;

use super::ObjectContext;
use super::columns::{TableBuilder, table_columns};
use super::json::{boolean, get, json_text, path, text};
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

/// A new builder for the `cloudtrail` table.
pub fn builder() -> TableBuilder {
    let schema = schema::file_schema(schema::CLOUDTRAIL).expect("cloudtrail schema");
    TableBuilder::new(schema, Col::NAMES)
}

/// Why a JSON value is not a CloudTrail record.
pub fn not_a_record(record: &BorrowedValue<'_>) -> Option<&'static str> {
    let object = match record.as_object() {
        Some(o) => o,
        None => return Some("a CloudTrail record must be a JSON object"),
    };
    // A record without any of these is some other document (a digest, an Insights event, ...).
    let known = [
        "eventID",
        "eventName",
        "eventSource",
        "eventTime",
        "userIdentity",
    ];
    if known.iter().any(|k| object.contains_key(*k)) {
        None
    } else {
        Some(
            "not a CloudTrail record: none of eventID, eventName, eventSource, eventTime, userIdentity",
        )
    }
}

/// Appends one record (checked with [`not_a_record`] first) as a row.
pub fn append(
    rows: &mut TableBuilder,
    record: &mut BorrowedValue<'_>,
    index: i64,
    ctx: &ObjectContext<'_>,
) {
    strip_secrets(record);
    let record = &*record;
    let r = Some(record);
    let identity = get(r, "userIdentity");
    let session = get(identity, "sessionContext");
    let issuer = get(session, "sessionIssuer");
    let attributes = get(session, "attributes");
    let request = get(r, "requestParameters");
    let response = get(r, "responseElements");

    let mut notes: Vec<String> = Vec::new();
    let event_time = match get(r, "eventTime") {
        None | Some(BorrowedValue::Static(simd_json::StaticNode::Null)) => {
            notes.push("eventTime missing; left null".to_owned());
            None
        }
        Some(BorrowedValue::String(s)) => {
            let t = parse_text("eventTime", s);
            notes.extend(t.note);
            t.micros
        }
        Some(v) => match v.as_f64() {
            Some(n) => {
                let t = from_epoch_number("eventTime", n);
                notes.extend(t.note);
                t.micros
            }
            None => {
                notes.push("eventTime is not a time; left null".to_owned());
                None
            }
        },
    };
    let session_created = text(get(attributes, "creationDate")).and_then(|s| {
        let t = parse_text("sessionContext.attributes.creationDate", &s);
        t.micros
    });

    rows.timestamp(Col::event_time, event_time);
    rows.str(Col::event_id, text(get(r, "eventID")).as_deref());
    rows.str(Col::event_version, text(get(r, "eventVersion")).as_deref());
    rows.str(Col::event_source, text(get(r, "eventSource")).as_deref());
    rows.str(Col::event_name, text(get(r, "eventName")).as_deref());
    rows.str(Col::aws_region, text(get(r, "awsRegion")).as_deref());
    rows.str(Col::source_ip, text(get(r, "sourceIPAddress")).as_deref());
    rows.str(Col::user_agent, text(get(r, "userAgent")).as_deref());
    rows.str(Col::error_code, text(get(r, "errorCode")).as_deref());
    rows.str(Col::error_message, text(get(r, "errorMessage")).as_deref());
    rows.bool(Col::read_only, boolean(get(r, "readOnly")));
    rows.bool(Col::management_event, boolean(get(r, "managementEvent")));
    rows.str(Col::event_type, text(get(r, "eventType")).as_deref());
    rows.str(
        Col::event_category,
        text(get(r, "eventCategory")).as_deref(),
    );
    rows.str(Col::request_id, text(get(r, "requestID")).as_deref());
    rows.str(
        Col::recipient_account_id,
        text(get(r, "recipientAccountId")).as_deref(),
    );
    rows.str(
        Col::shared_event_id,
        text(get(r, "sharedEventID")).as_deref(),
    );
    rows.str(Col::user_type, text(get(identity, "type")).as_deref());
    rows.str(Col::user_arn, text(get(identity, "arn")).as_deref());
    rows.str(
        Col::user_principal_id,
        text(get(identity, "principalId")).as_deref(),
    );
    rows.str(
        Col::user_account_id,
        text(get(identity, "accountId")).as_deref(),
    );
    rows.str(
        Col::user_access_key_id,
        text(get(identity, "accessKeyId")).as_deref(),
    );
    rows.str(
        Col::user_name,
        text(get(identity, "userName"))
            .or_else(|| text(get(issuer, "userName")))
            .as_deref(),
    );
    rows.str(Col::session_issuer_arn, text(get(issuer, "arn")).as_deref());
    rows.str(
        Col::session_issuer_type,
        text(get(issuer, "type")).as_deref(),
    );
    rows.str(
        Col::session_issuer_account_id,
        text(get(issuer, "accountId")).as_deref(),
    );
    rows.str(Col::invoked_by, text(get(identity, "invokedBy")).as_deref());
    rows.bool(
        Col::mfa_authenticated,
        boolean(get(attributes, "mfaAuthenticated")),
    );
    rows.timestamp(Col::session_created_at, session_created);
    rows.str(
        Col::source_identity,
        text(get(session, "sourceIdentity"))
            .or_else(|| text(get(request, "sourceIdentity")))
            .as_deref(),
    );
    rows.str(Col::role_arn, text(get(request, "roleArn")).as_deref());
    rows.str(
        Col::role_session_name,
        text(get(request, "roleSessionName")).as_deref(),
    );
    rows.str(
        Col::assumed_role_arn,
        text(get(get(response, "assumedRoleUser"), "arn")).as_deref(),
    );
    rows.str(
        Col::assumed_access_key_id,
        text(get(get(response, "credentials"), "accessKeyId")).as_deref(),
    );
    rows.str(
        Col::external_id,
        text(get(request, "externalId")).as_deref(),
    );
    rows.str(Col::user_identity, json_text(identity).as_deref());
    rows.str(Col::request_parameters, json_text(request).as_deref());
    rows.str(Col::response_elements, json_text(response).as_deref());
    rows.str(
        Col::additional_event_data,
        json_text(get(r, "additionalEventData")).as_deref(),
    );
    rows.str(Col::resources, json_text(get(r, "resources")).as_deref());
    rows.str(Col::tls_details, json_text(get(r, "tlsDetails")).as_deref());
    rows.str(Col::unmapped, unmapped_fields(record).as_deref());
    rows.str(Col::source_uri, Some(ctx.source_uri));
    rows.i64(Col::source_index, Some(index));
    rows.timestamp(Col::ingested_at, Some(ctx.ingested_at_micros));
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    rows.str(Col::decode_note, note.as_deref());
    rows.end_row();
}

/// Removes the STS session token wherever CloudTrail puts issued credentials.
fn strip_secrets(record: &mut BorrowedValue<'_>) {
    if let Some(credentials) = record
        .get_mut("responseElements")
        .and_then(|r| r.get_mut("credentials"))
        .and_then(|c| c.as_object_mut())
    {
        credentials.remove("sessionToken");
    }
}

/// The top-level fields without a column of their own, as a JSON object; `None` if there are none.
fn unmapped_fields(record: &BorrowedValue<'_>) -> Option<String> {
    let object = record.as_object()?;
    let mut rest = simd_json::borrowed::Object::default();
    for (key, value) in object.iter() {
        if !MAPPED_FIELDS.contains(&key.as_ref()) {
            rest.insert(key.clone(), value.clone());
        }
    }
    (!rest.is_empty()).then(|| BorrowedValue::Object(Box::new(rest)).encode())
}

/// Whether a parsed document is a CloudTrail digest file (no records; hashes of log files).
pub fn is_digest(document: &BorrowedValue<'_>) -> bool {
    path(document, &["digestStartTime"]).is_some() && path(document, &["logFiles"]).is_some()
}
