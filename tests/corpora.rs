//! Every record of the public corpora decodes; exactly the broken lines are rejected.

use crate::common;

use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMicrosecondType;
use arrow::record_batch::RecordBatch;

use auditlake_ingest::decode::{DecodeLimits, Decoded, Format, ObjectContext, decode_object};

fn decode_file(format: Format, relative: &str) -> (Decoded, Vec<u8>) {
    let path = common::corpora().join(relative);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    // Relative, so that rows (and their snapshots) do not depend on where the corpora are.
    let uri = format!("file://corpora/{relative}");
    let ctx = ObjectContext {
        source_uri: &uri,
        ingested_at_micros: 0,
        atlas: None,
    };
    let decoded = decode_object(format, &bytes, &ctx, DecodeLimits::default()).expect("decode");
    (decoded, bytes)
}

/// The rows of `batch` as JSON objects, nulls written out, for snapshots.
fn rows_json(batch: &RecordBatch) -> serde_json::Value {
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::JsonArray>(Vec::new());
    writer.write(batch).expect("rows to JSON");
    writer.finish().expect("rows to JSON");
    serde_json::from_slice(&writer.into_inner()).expect("JSON")
}

fn strings<'a>(batch: &'a RecordBatch, column: &str) -> Vec<Option<&'a str>> {
    batch
        .column_by_name(column)
        .expect(column)
        .as_string::<i32>()
        .iter()
        .collect()
}

#[test]
fn panther_cloudtrail_records_all_decode_and_odd_times_are_noted() {
    let (decoded, bytes) = decode_file(
        Format::CloudTrail,
        "cloudtrail/panther/panther_cloudtrail.ndjson",
    );
    let text = String::from_utf8(bytes).expect("utf-8");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("corpus line"))
        .collect();
    assert_eq!(lines.len(), 453);
    assert!(
        decoded.rejected.is_none(),
        "no corpus record may be rejected"
    );
    let batch = decoded.cloudtrail.expect("rows");
    assert_eq!(batch.num_rows(), 453);

    // Independently: which records have an eventTime that is not RFC 3339 (or none)?
    let odd: Vec<bool> = lines
        .iter()
        .map(|r| match r.get("eventTime").and_then(|t| t.as_str()) {
            Some(t) => chrono::DateTime::parse_from_rfc3339(t).is_err(),
            None => true,
        })
        .collect();
    assert!(odd.iter().filter(|o| **o).count() >= 130);
    let notes = strings(&batch, "decode_note");
    let times = batch
        .column_by_name("event_time")
        .expect("event_time")
        .as_primitive::<TimestampMicrosecondType>();
    for (row, is_odd) in odd.iter().enumerate() {
        let note = notes[row];
        assert_eq!(
            note.is_some_and(|n| n.contains("eventTime")),
            *is_odd,
            "row {row}: note {note:?}"
        );
        if !is_odd {
            assert!(times.is_valid(row), "row {row}: ISO time must parse");
        }
    }
    // Event ids and names come through; session tokens never do.
    let ids = strings(&batch, "event_id");
    assert_eq!(
        ids.iter().filter(|i| i.is_some()).count(),
        lines.iter().filter(|r| r.get("eventID").is_some()).count()
    );
    for response in strings(&batch, "response_elements").into_iter().flatten() {
        assert!(!response.contains("sessionToken"), "{response}");
    }
    let assume = strings(&batch, "event_name")
        .iter()
        .filter(|n| n.is_some_and(|n| n.starts_with("AssumeRole")))
        .count();
    assert_eq!(assume, 9);
}

#[test]
fn otel_atlas_audit_lines_decode_and_only_line_two_is_rejected() {
    for (file, broken) in [
        ("mongodb_audit/otel/4.2_audit.log", false),
        ("mongodb_audit/otel/5.0_audit.log", false),
        ("mongodb_audit/otel/4.2_audit_invalid_log.log", true),
        ("mongodb_audit/otel/5.0_audit_invalid_log.log", true),
    ] {
        let (decoded, _) = decode_file(Format::MongoAudit, file);
        let rows = decoded.mongodb_audit.expect("rows");
        assert_eq!(rows.num_rows(), if broken { 2 } else { 3 }, "{file}");
        let times = rows
            .column_by_name("ts")
            .expect("ts")
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(times.null_count(), 0, "{file}: every ts form parses");
        match decoded.rejected {
            None => assert!(!broken, "{file} must reject line 2"),
            Some(rejected) => {
                assert!(broken, "{file} must reject nothing");
                assert_eq!(rejected.num_rows(), 1, "{file}");
                let index = rejected
                    .column_by_name("source_index")
                    .expect("index")
                    .as_primitive::<arrow::datatypes::Int64Type>();
                assert_eq!(index.value(0), 2, "{file}: the rejected line is line 2");
                assert!(
                    strings(&rejected, "reason")[0].is_some_and(|r| r.contains("invalid JSON"))
                );
                let raw = rejected
                    .column_by_name("raw")
                    .expect("raw")
                    .as_binary::<i32>();
                assert!(raw.value(0).starts_with(b"\"atype\""), "raw bytes are kept");
            }
        }
    }
    let (decoded, _) = decode_file(Format::MongoAudit, "mongodb_audit/otel/5.0_audit.log");
    let rows = decoded.mongodb_audit.expect("rows");
    assert_eq!(
        strings(&rows, "conn_uuid")[0],
        Some("29732d00-c87d-4ce3-9297-d690056d5992")
    );
    assert_eq!(
        strings(&rows, "driver")[0],
        Some("mongo-go-driver v1.7.2+prerelease")
    );
}

#[test]
fn ibm_guardium_messages_keep_non_ip_text_and_every_atype() {
    let (decoded, bytes) = decode_file(Format::MongoAudit, "mongodb_audit/ibm/ibm-guardium.ndjson");
    let text = String::from_utf8(bytes).expect("utf-8");
    assert!(decoded.rejected.is_none());
    let rows = decoded.mongodb_audit.expect("rows");
    assert_eq!(rows.num_rows(), 24);
    let placeholder_lines = text
        .lines()
        .filter(|l| l.contains("\"remote\":{\"ip\":\"db-server-ip-removed\""))
        .count();
    let remote_ip = strings(&rows, "remote_ip");
    let remote_text = strings(&rows, "remote_ip_text");
    let kept = remote_text
        .iter()
        .zip(&remote_ip)
        .filter(|(t, ip)| *t == &Some("db-server-ip-removed") && ip.is_none())
        .count();
    assert!(placeholder_lines > 0);
    assert_eq!(kept, placeholder_lines);
    let atypes = strings(&rows, "atype");
    for expected in [
        "dropDatabase",
        "createUser",
        "grantRolesToUser",
        "dropAllUsersFromDatabase",
        "renameCollection",
    ] {
        assert!(atypes.contains(&Some(expected)), "{expected}");
    }
    let times = rows
        .column_by_name("ts")
        .expect("ts")
        .as_primitive::<TimestampMicrosecondType>();
    assert_eq!(times.null_count(), 0, "-05:00 offsets parse");
}

/// Every column of the decoded rows, for each audit shape the corpora hold: the 4.2 and 5.0
/// `mongo` schema lines (field by field, including the parsed `ts` forms, `param` and users),
/// the line each broken file rejects with its reason and raw bytes, and the first CloudTrail
/// records. `ingested_at` is the context's (0).
#[test]
fn decoded_rows_match_their_snapshots() {
    for (name, file) in [
        ("otel_4_2", "mongodb_audit/otel/4.2_audit.log"),
        ("otel_5_0", "mongodb_audit/otel/5.0_audit.log"),
        ("ibm_guardium", "mongodb_audit/ibm/ibm-guardium.ndjson"),
    ] {
        let (decoded, _) = decode_file(Format::MongoAudit, file);
        let rows = rows_json(&decoded.mongodb_audit.expect("rows"));
        let first: Vec<_> = rows.as_array().expect("rows").iter().take(3).collect();
        insta::assert_json_snapshot!(format!("mongodb_audit_{name}"), first);
    }
    let (decoded, _) = decode_file(
        Format::MongoAudit,
        "mongodb_audit/otel/5.0_audit_invalid_log.log",
    );
    // The raw bytes are checked against the file above; here they would be 1,350 hex digits.
    insta::assert_json_snapshot!(
        "rejected_otel_5_0",
        rows_json(&decoded.rejected.expect("rejected")),
        { "[].raw" => "[the line's bytes]" }
    );
    let (decoded, _) = decode_file(
        Format::CloudTrail,
        "cloudtrail/panther/panther_cloudtrail.ndjson",
    );
    let rows = rows_json(&decoded.cloudtrail.expect("rows"));
    let first: Vec<_> = rows.as_array().expect("rows").iter().take(2).collect();
    insta::assert_json_snapshot!("cloudtrail_panther", first);
}
