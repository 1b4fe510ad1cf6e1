//! Decoder behaviour on hand-written inputs, one property per test.

use std::io::Write;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;

use super::*;

fn ctx() -> ObjectContext<'static> {
    ObjectContext {
        source_uri: "mem://test",
        ingested_at_micros: 1,
        atlas: Some(AtlasContext {
            project: None,
            cluster: "c".into(),
            hostname: "h".into(),
            log_type: "mongod-audit".into(),
        }),
    }
}

fn decode(format: Format, bytes: &[u8]) -> Decoded {
    decode_object(format, bytes, &ctx(), DecodeLimits::default()).expect("decode")
}

fn text(batch: &RecordBatch, column: &str, row: usize) -> Option<String> {
    let array = batch
        .column_by_name(column)
        .expect(column)
        .as_string::<i32>();
    array.is_valid(row).then(|| array.value(row).to_owned())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

const ASSUME_ROLE: &str = r#"{"eventVersion":"1.08","userIdentity":{"type":"AWSAccount","principalId":"AROAX:ci","accountId":"444455556666","newField":1},"eventTime":"2026-11-01T06:00:00Z","eventSource":"sts.amazonaws.com","eventName":"AssumeRole","awsRegion":"us-east-1","sourceIPAddress":"52.94.76.10","requestParameters":{"roleArn":"arn:aws:iam::111122223333:role/db","roleSessionName":"ci","externalId":"x-1"},"responseElements":{"credentials":{"accessKeyId":"ASIAEXAMPLE","sessionToken":"SECRET-TOKEN","expiration":"Jul 18, 2014 4:07:39 PM"},"assumedRoleUser":{"arn":"arn:aws:sts::111122223333:assumed-role/db/ci"}},"eventID":"e-1","sharedEventID":"s-1","readOnly":"True","eventType":"AwsApiCall","recipientAccountId":"111122223333","vpcEndpointId":"vpce-1"}"#;

#[test]
fn cloudwatch_message_form_is_one_record_with_sts_columns_and_no_token() {
    let decoded = decode(Format::CloudTrail, ASSUME_ROLE.as_bytes());
    let rows = decoded.cloudtrail.expect("row");
    assert_eq!(rows.num_rows(), 1);
    assert!(decoded.rejected.is_none());
    assert_eq!(
        text(&rows, "role_arn", 0).as_deref(),
        Some("arn:aws:iam::111122223333:role/db")
    );
    assert_eq!(text(&rows, "role_session_name", 0).as_deref(), Some("ci"));
    assert_eq!(text(&rows, "external_id", 0).as_deref(), Some("x-1"));
    assert_eq!(
        text(&rows, "assumed_role_arn", 0).as_deref(),
        Some("arn:aws:sts::111122223333:assumed-role/db/ci")
    );
    assert_eq!(
        text(&rows, "assumed_access_key_id", 0).as_deref(),
        Some("ASIAEXAMPLE")
    );
    assert_eq!(text(&rows, "shared_event_id", 0).as_deref(), Some("s-1"));
    assert_eq!(text(&rows, "user_type", 0).as_deref(), Some("AWSAccount"));
    let read_only = rows
        .column_by_name("read_only")
        .expect("read_only")
        .as_boolean();
    assert!(read_only.value(0), "\"True\" reads as true");
    let response = text(&rows, "response_elements", 0).expect("response");
    assert!(
        !response.contains("SECRET-TOKEN") && !response.contains("sessionToken"),
        "{response}"
    );
    assert!(
        response.contains("Jul 18, 2014 4:07:39 PM"),
        "non-ISO expiration kept as written"
    );
    assert!(
        text(&rows, "user_identity", 0)
            .expect("identity")
            .contains("newField"),
        "unknown identity fields kept"
    );
    assert_eq!(
        text(&rows, "unmapped", 0).as_deref(),
        Some(r#"{"vpcEndpointId":"vpce-1"}"#)
    );
    let time = rows
        .column_by_name("event_time")
        .expect("time")
        .as_primitive::<TimestampMicrosecondType>();
    assert_eq!(time.value(0), 1_793_512_800_000_000);
}

#[test]
fn s3_log_file_form_keeps_record_positions() {
    let file = format!(r#"{{"Records":[{ASSUME_ROLE},42,{ASSUME_ROLE}]}}"#);
    let decoded = decode(Format::CloudTrail, &gzip(file.as_bytes()));
    assert_eq!(decoded.row_counts(), (2, 0, 1));
    let rows = decoded.cloudtrail.expect("rows");
    let index = rows
        .column_by_name("source_index")
        .expect("index")
        .as_primitive::<Int64Type>();
    assert_eq!((index.value(0), index.value(1)), (0, 2));
    let rejected = decoded.rejected.expect("reject");
    assert_eq!(
        rejected
            .column_by_name("source_index")
            .expect("i")
            .as_primitive::<Int64Type>()
            .value(0),
        1
    );
    assert_eq!(
        text(&rejected, "target_table", 0).as_deref(),
        Some("cloudtrail")
    );
}

#[test]
fn digest_documents_are_routed_away_from_the_record_decoder() {
    let digest = r#"{"awsAccountId":"1","digestStartTime":"2026-11-01T00:00:00Z","digestEndTime":"2026-11-01T01:00:00Z","logFiles":[]}"#;
    let decoded = decode(Format::CloudTrail, digest.as_bytes());
    assert!(decoded.digest);
    assert_eq!(decoded.row_counts(), (0, 0, 0));
}

#[test]
fn mongo_schema_number_long_ts_and_legacy_binary_uuid() {
    let line = r#"{"atype":"authenticate","ts":{"$date":{"$numberLong":"1761976800123"}},"uuid":{"$binary":"KXMtAMh9TOOSl9aQBW1Zkg==","$type":"04"},"local":{"isSystemUser":true},"remote":{"ip":"2001:db8::1","port":5},"users":[],"roles":[],"param":{"user":"arn:aws:iam::1:role/r","db":"$external","mechanism":"MONGODB-AWS"},"result":18,"extra":true}"#;
    let decoded = decode(Format::MongoAudit, line.as_bytes());
    let rows = decoded.mongodb_audit.expect("row");
    let ts = rows
        .column_by_name("ts")
        .expect("ts")
        .as_primitive::<TimestampMicrosecondType>();
    assert_eq!(ts.value(0), 1_761_976_800_123_000);
    assert_eq!(
        text(&rows, "conn_uuid", 0).as_deref(),
        Some("29732d00-c87d-4ce3-9297-d690056d5992")
    );
    assert_eq!(
        text(&rows, "user", 0).as_deref(),
        Some("arn:aws:iam::1:role/r"),
        "failed auth names the user tried"
    );
    assert_eq!(text(&rows, "user_db", 0).as_deref(), Some("$external"));
    assert_eq!(text(&rows, "mechanism", 0).as_deref(), Some("MONGODB-AWS"));
    assert_eq!(text(&rows, "remote_ip", 0).as_deref(), Some("2001:db8::1"));
    assert_eq!(
        rows.column_by_name("result")
            .expect("r")
            .as_primitive::<Int32Type>()
            .value(0),
        18
    );
    assert!(
        rows.column_by_name("is_system_user")
            .expect("s")
            .as_boolean()
            .value(0)
    );
    assert_eq!(text(&rows, "cluster", 0).as_deref(), Some("c"));
    assert_eq!(text(&rows, "audit_schema", 0).as_deref(), Some("mongo"));
    assert_eq!(
        text(&rows, "unmapped", 0).as_deref(),
        Some(r#"{"extra":true}"#)
    );
}

#[test]
fn ocsf_schema_lands_in_the_same_table() {
    let line = r#"{"activity_id":1,"category_uid":3,"class_uid":3002,"time":1761976800000,"severity_id":1,"type_uid":300201,"metadata":{"version":"1.1.0"},"actor":{"user":{"type_id":1,"name":"admin.dba","groups":[{"name":"root","db":"admin"}]}},"src_endpoint":{"ip":"10.1.2.3","port":51000},"dst_endpoint":{"ip":"10.0.0.5","port":27017},"auth_protocol":"SCRAM-SHA-256","unmapped":{"atype":"authenticate","result":0}}"#;
    let decoded = decode(Format::MongoAudit, line.as_bytes());
    let rows = decoded.mongodb_audit.expect("row");
    assert_eq!(text(&rows, "audit_schema", 0).as_deref(), Some("ocsf"));
    assert_eq!(text(&rows, "atype", 0).as_deref(), Some("authenticate"));
    assert_eq!(text(&rows, "user", 0).as_deref(), Some("dba"));
    assert_eq!(text(&rows, "user_db", 0).as_deref(), Some("admin"));
    assert_eq!(text(&rows, "remote_ip", 0).as_deref(), Some("10.1.2.3"));
    assert_eq!(text(&rows, "local_ip", 0).as_deref(), Some("10.0.0.5"));
    assert_eq!(
        text(&rows, "mechanism", 0).as_deref(),
        Some("SCRAM-SHA-256")
    );
    let ts = rows
        .column_by_name("ts")
        .expect("ts")
        .as_primitive::<TimestampMicrosecondType>();
    assert_eq!(ts.value(0), 1_761_976_800_000_000);
    assert!(
        text(&rows, "unmapped", 0)
            .expect("unmapped")
            .contains(r#""metadata":{"version":"1.1.0"}"#)
    );
}

#[test]
fn gzip_is_detected_by_magic_bytes_and_a_truncation_keeps_whole_lines() {
    let line = r#"{"atype":"logout","ts":{"$date":"2026-11-01T00:00:00.000+00:00"},"param":{},"result":0}"#;
    let body: String = (0..2000).map(|_| format!("{line}\n")).collect();
    let mut packed = gzip(body.as_bytes());
    assert_eq!(
        decode(Format::MongoAudit, &packed).row_counts(),
        (0, 2000, 0)
    );
    packed.truncate(packed.len() / 2);
    let decoded = decode(Format::MongoAudit, &packed);
    let (_, kept, rejected) = decoded.row_counts();
    assert!(kept > 0 && kept < 2000, "{kept}");
    assert_eq!(rejected, 1, "the cut tail is one reject");
    let reason = text(&decoded.rejected.expect("reject"), "reason", 0).expect("reason");
    assert!(reason.contains("gzip"), "{reason}");
}

#[test]
fn every_member_of_a_multi_member_gzip_is_read() {
    let line = |n: usize| {
        format!(
            r#"{{"atype":"logout","ts":{{"$date":"2026-11-01T00:00:00.000+00:00"}},"param":{{"n":{n}}},"result":0}}"#
        )
    };
    let first: String = (0..300).map(|n| line(n) + "\n").collect();
    let second: String = (300..400).map(|n| line(n) + "\n").collect();
    let mut packed = gzip(first.as_bytes());
    packed.extend(gzip(second.as_bytes()));
    assert_eq!(
        decode(Format::MongoAudit, &packed).row_counts(),
        (0, 400, 0)
    );
    // Two members of the same size and content: both are read, not only the first.
    let mut twice = gzip(second.as_bytes());
    twice.extend(gzip(second.as_bytes()));
    assert_eq!(decode(Format::MongoAudit, &twice).row_counts(), (0, 200, 0));
}

#[test]
fn long_rejected_input_is_truncated_and_marked() {
    let long = format!("not json {}\n", "x".repeat(schema::REJECTED_RAW_LIMIT * 2));
    let decoded = decode(Format::MongoAudit, long.as_bytes());
    let rejected = decoded.rejected.expect("reject");
    assert!(
        rejected
            .column_by_name("raw_truncated")
            .expect("t")
            .as_boolean()
            .value(0)
    );
    let raw = rejected
        .column_by_name("raw")
        .expect("raw")
        .as_binary::<i32>();
    assert_eq!(raw.value(0).len(), schema::REJECTED_RAW_LIMIT);
    let size = rejected
        .column_by_name("raw_size")
        .expect("size")
        .as_primitive::<Int64Type>();
    assert_eq!(size.value(0) as usize, long.len() - 1);
}

#[test]
fn a_rejected_line_keeps_its_bytes_as_read_with_or_without_escapes() {
    // The first line parses until its end, after simd-json has unescaped its strings in place;
    // the second has no escape; the third is a valid message between them.
    let escaped = r#"{"atype":"a\"b\u0041","param":{"x":"\\n"},"#;
    let plain = r#"{"atype":"authenticate","ts":"#;
    let valid = r#"{"atype":"logout","ts":{"$date":"2026-11-01T00:00:00Z"}}"#;
    let input = format!("{escaped}\n{valid}\n{plain}\n");
    let decoded = decode(Format::MongoAudit, input.as_bytes());
    assert_eq!(decoded.row_counts(), (0, 1, 2));
    let rejected = decoded.rejected.expect("rejects");
    let raw = rejected
        .column_by_name("raw")
        .expect("raw")
        .as_binary::<i32>();
    assert_eq!(raw.value(0), escaped.as_bytes());
    assert_eq!(raw.value(1), plain.as_bytes());
    let index = rejected
        .column_by_name("source_index")
        .expect("index")
        .as_primitive::<Int64Type>();
    assert_eq!((index.value(0), index.value(1)), (1, 3));
}

#[test]
fn users_and_roles_are_qualified_by_database() {
    let line = r#"{"atype":"authCheck","ts":{"$date":"2026-11-01T00:00:00Z"},"users":[{"user":"ann","db":"admin"},{"user":"bob"}],"roles":[{"role":"readWrite","db":"orders"}],"uuid":{"$binary":"ixTUHABoCdY3iVDEDxlbpg==","$type":"04"}}"#;
    let decoded = decode(Format::MongoAudit, line.as_bytes());
    let batch = decoded.mongodb_audit.expect("row");
    let list = |column: &str| -> Vec<String> {
        let values = batch
            .column_by_name(column)
            .expect(column)
            .as_list::<i32>()
            .value(0);
        let values = values.as_string::<i32>();
        (0..values.len())
            .map(|i| values.value(i).to_owned())
            .collect()
    };
    assert_eq!(list("users"), ["ann@admin", "bob"]);
    assert_eq!(list("roles"), ["readWrite@orders"]);
    assert_eq!(text(&batch, "user", 0).as_deref(), Some("ann"));
    assert_eq!(
        text(&batch, "conn_uuid", 0).as_deref(),
        Some("8b14d41c-0068-09d6-3789-50c40f195ba6")
    );
    assert_eq!(text(&batch, "unmapped", 0), None);
}

#[test]
fn param_is_kept_as_written_when_the_line_is_compact_and_written_out_otherwise() {
    let lines = [
        // Compact, another key after `param`: taken as written (the number keeps its form).
        r#"{"atype":"authCheck","param":{"n":1.50,"s":"a b","o":{"k":[1,2]}},"result":0}"#,
        // Compact, `param` last.
        r#"{"atype":"authCheck","result":0,"param":{"n":1.50}}"#,
        // Spaces around `param`: written out again.
        r#"{"atype":"authCheck", "param" : {"n": 1.50} , "result":0}"#,
        // An escape anywhere in the line: written out again, escapes as JSON needs them.
        r#"{"atype":"authCheck","param":{"s":"say \"hi\"\/"},"result":0}"#,
        // Not an object.
        r#"{"atype":"authCheck","param":"text","result":0}"#,
        // An empty object.
        r#"{"atype":"authCheck","param":{},"result":0}"#,
    ];
    let decoded = decode(Format::MongoAudit, lines.join("\n").as_bytes());
    let rows = decoded.mongodb_audit.expect("rows");
    assert!(decoded.rejected.is_none());
    let params: Vec<Option<String>> = (0..rows.num_rows())
        .map(|row| text(&rows, "param", row))
        .collect();
    assert_eq!(
        params,
        [
            Some(r#"{"n":1.50,"s":"a b","o":{"k":[1,2]}}"#.to_owned()),
            Some(r#"{"n":1.50}"#.to_owned()),
            Some(r#"{"n":1.5}"#.to_owned()),
            Some(r#"{"s":"say \"hi\"/"}"#.to_owned()),
            Some(r#""text""#.to_owned()),
            Some("{}".to_owned()),
        ]
    );
    // The other columns of rows finished after the parse are those of their own line.
    for row in 0..rows.num_rows() {
        assert_eq!(text(&rows, "atype", row).as_deref(), Some("authCheck"));
    }
    let results = rows
        .column_by_name("result")
        .expect("result")
        .as_primitive::<Int32Type>();
    assert_eq!(results.null_count(), 0);
}

#[test]
fn coerced_and_dropped_values_are_noted_and_basic_times_read() {
    let record = |read_only: &str, management: &str, created: &str| {
        format!(
            r#"{{"eventVersion":"1.08","eventTime":"2026-11-01T10:00:00Z","eventID":"e","eventName":"GetCallerIdentity","readOnly":{read_only},"managementEvent":{management},"userIdentity":{{"type":"AssumedRole","sessionContext":{{"attributes":{{"creationDate":"{created}","mfaAuthenticated":"false"}}}}}}}}"#
        )
    };
    let created_at = |rows: &RecordBatch| {
        let column = rows.column_by_name("session_created_at").expect("column");
        let column = column.as_primitive::<TimestampMicrosecondType>();
        (!column.is_null(0)).then(|| column.value(0))
    };

    // Canonical values: no note.
    let decoded = decode(
        Format::CloudTrail,
        record("true", "true", "2013-11-02T01:06:28Z").as_bytes(),
    );
    let rows = decoded.cloudtrail.expect("row");
    assert_eq!(text(&rows, "decode_note", 0), None);
    assert_eq!(created_at(&rows), Some(1_383_354_388_000_000));

    // The ISO-8601 basic form is a time, read exactly.
    let decoded = decode(
        Format::CloudTrail,
        record("true", "true", "20131102T010628Z").as_bytes(),
    );
    let rows = decoded.cloudtrail.expect("row");
    assert_eq!(created_at(&rows), Some(1_383_354_388_000_000));
    assert_eq!(text(&rows, "decode_note", 0), None);

    // Text read as a boolean, a boolean that is none, a time that is none: each noted.
    let decoded = decode(
        Format::CloudTrail,
        record(r#""True""#, r#""maybe""#, "yesterday").as_bytes(),
    );
    let rows = decoded.cloudtrail.expect("row");
    let note = text(&rows, "decode_note", 0).expect("a note");
    assert!(
        note.contains(r#"readOnly "True" is text; read as true"#),
        "{note}"
    );
    assert!(
        note.contains(r#"managementEvent "maybe" is not a boolean; left null"#),
        "{note}"
    );
    assert!(
        note.contains("creationDate") && note.contains("left null"),
        "{note}"
    );
    assert_eq!(created_at(&rows), None);
    assert!(
        rows.column_by_name("management_event")
            .expect("column")
            .is_null(0)
    );
}

#[test]
fn a_gzip_member_that_fails_its_checksum_becomes_rejects_not_rows() {
    let line = |n: usize| {
        format!(
            r#"{{"atype":"authenticate","ts":{{"$date":"2026-11-01T00:00:0{n}.000+00:00"}},"param":{{"user":"u{n}","db":"admin","mechanism":"SCRAM-SHA-256"}},"result":0}}"#
        )
    };
    let first = gzip(format!("{}\n{}\n", line(1), line(2)).as_bytes());
    let mut second = gzip(format!("{}\n{}\n{}\n", line(3), line(4), line(5)).as_bytes());
    // The CRC-32 is the trailer's first four bytes: one flipped bit there, and the member's
    // content no longer matches what it says of itself.
    let crc_at = second.len() - 8;
    second[crc_at] ^= 0x01;
    let third = gzip(format!("{}\n", line(6)).as_bytes());
    for object in [
        [first.clone(), second.clone(), third.clone()].concat(),
        second.clone(),
    ] {
        let decoded = decode(Format::MongoAudit, &object);
        let rows = decoded.mongodb_audit.as_ref().map_or(0, |b| b.num_rows());
        let rejected = decoded.rejected.as_ref().expect("rejects");
        let whole = object.len() > second.len();
        assert_eq!(
            rows,
            if whole { 3 } else { 0 },
            "lines of the intact members only"
        );
        assert_eq!(rejected.num_rows(), 3, "each line of the failed member");
        for row in 0..rejected.num_rows() {
            let reason = text(rejected, "reason", row).expect("reason");
            assert!(reason.contains("does not match its checksum"), "{reason}");
        }
        if whole {
            let users: Vec<_> = (0..3)
                .map(|r| text(decoded.mongodb_audit.as_ref().expect("rows"), "user", r))
                .collect();
            assert_eq!(
                users,
                [Some("u1".into()), Some("u2".into()), Some("u6".into())]
            );
        }
    }
}

#[test]
fn a_byte_order_mark_before_the_text_is_not_part_of_the_first_record() {
    let bom = [0xEF, 0xBB, 0xBF];
    let document = format!(r#"{{"Records":[{ASSUME_ROLE}]}}"#);
    for bytes in [
        [&bom[..], document.as_bytes()].concat(),
        gzip(&[&bom[..], document.as_bytes()].concat()),
    ] {
        let decoded = decode(Format::CloudTrail, &bytes);
        assert_eq!(decoded.cloudtrail.map(|b| b.num_rows()), Some(1));
        assert!(decoded.rejected.is_none());
    }
    let lines = r#"{"atype":"logout","ts":{"$date":"2026-11-01T00:00:00.000+00:00"},"param":{},"result":0}"#;
    let decoded = decode(Format::MongoAudit, &[&bom[..], lines.as_bytes()].concat());
    assert_eq!(decoded.row_counts(), (0, 1, 0));
}

#[test]
fn a_rejected_cloudtrail_document_reports_its_real_size() {
    let document = format!(
        r#"{{"Records":[{ASSUME_ROLE}],"padding":"{}"#,
        "x".repeat(schema::REJECTED_RAW_LIMIT * 2)
    );
    let decoded = decode(Format::CloudTrail, document.as_bytes());
    let rejected = decoded
        .rejected
        .expect("the unfinished document is rejected");
    let size = rejected
        .column_by_name("raw_size")
        .expect("size")
        .as_primitive::<Int64Type>();
    assert_eq!(size.value(0) as usize, document.len());
    let truncated = rejected.column_by_name("raw_truncated").expect("t");
    assert!(truncated.as_boolean().value(0));
}

#[test]
fn bytes_after_an_intact_gzip_member_are_rejected_and_the_member_kept() {
    let document = format!(r#"{{"Records":[{ASSUME_ROLE}]}}"#);
    let object = [
        gzip(document.as_bytes()),
        b"\x00\x00trailing garbage".to_vec(),
    ]
    .concat();
    let decoded = decode(Format::CloudTrail, &object);
    assert_eq!(decoded.row_counts(), (1, 0, 1), "the document stands whole");
    let rejected = decoded.rejected.expect("the trailing bytes");
    let reason = text(&rejected, "reason", 0).expect("reason");
    assert!(reason.contains("after the last gzip member"), "{reason}");

    let lines = r#"{"atype":"logout","ts":{"$date":"2026-11-01T00:00:00.000+00:00"},"param":{},"result":0}"#;
    let object = [gzip(lines.as_bytes()), b"junk".to_vec()].concat();
    assert_eq!(decode(Format::MongoAudit, &object).row_counts(), (0, 1, 1));
}

#[test]
fn a_damaged_first_line_of_one_record_per_line_rejects_that_line_only() {
    let record = |n: usize| ASSUME_ROLE.replace("\"e-1\"", &format!("\"e-{n}\""));
    let first = record(0);
    let damaged = &first[..first.len() / 2];
    let mut object = format!("{damaged}\n");
    for n in 1..=46 {
        object.push_str(&record(n));
        object.push('\n');
    }
    let decoded = decode(Format::CloudTrail, object.as_bytes());
    assert_eq!(decoded.cloudtrail.expect("rows").num_rows(), 46);
    let rejected = decoded.rejected.expect("rejected");
    assert_eq!(rejected.num_rows(), 1);
    let size = rejected
        .column_by_name("raw_size")
        .expect("raw_size")
        .as_primitive::<Int64Type>()
        .value(0);
    assert_eq!(size as usize, damaged.len());

    // A document spread over lines is still one document, rejected whole when damaged.
    let pretty = serde_json::to_string_pretty(&serde_json::json!({
        "Records": [serde_json::from_str::<serde_json::Value>(ASSUME_ROLE).expect("json")]
    }))
    .expect("pretty");
    let cut = &pretty[..pretty.len() - 3];
    let decoded = decode(Format::CloudTrail, cut.as_bytes());
    assert!(decoded.cloudtrail.is_none_or(|r| r.num_rows() == 0));
    assert_eq!(decoded.rejected.expect("rejected").num_rows(), 1);
}

#[test]
fn a_stream_that_inflates_past_the_limit_is_one_rejected_row_with_a_sample() {
    let member = gzip(&vec![b'x'; 1 << 20]);
    let bomb = member.repeat(64);
    let limits = DecodeLimits {
        max_object_bytes: 8 << 20,
        ..DecodeLimits::default()
    };
    let decoded = decode_object(Format::MongoAudit, &bomb, &ctx(), limits).expect("decode");
    assert!(decoded.mongodb_audit.is_none());
    let rejected = decoded.rejected.expect("rejected");
    assert_eq!(rejected.num_rows(), 1);
    assert!(
        text(&rejected, "reason", 0).is_some_and(|r| r.contains("ingest.max_object_bytes")),
        "{:?}",
        text(&rejected, "reason", 0)
    );
    let raw = rejected
        .column_by_name("raw")
        .expect("raw")
        .as_binary::<i32>();
    assert_eq!(raw.value(0).len(), schema::REJECTED_RAW_LIMIT);
    assert!(raw.value(0).iter().all(|&b| b == b'x'));
    let gunzipped = gunzip(&bomb, 8 << 20);
    assert!(gunzipped.oversized);
    assert!(gunzipped.content.capacity() <= schema::REJECTED_RAW_LIMIT);
}
