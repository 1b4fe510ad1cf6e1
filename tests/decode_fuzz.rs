//! Property tests: no input makes a decoder panic, and every input is accounted for.

use std::io::Write;

use proptest::prelude::*;

use auditlake_ingest::decode::{DecodeLimits, Format, ObjectContext, decode_object};

const SEEDS: &[&str] = &[
    r#"{"Records":[{"eventVersion":"1.08","eventTime":"2026-11-01T00:00:00Z","eventID":"a","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::1:user/x"},"responseElements":{"credentials":{"sessionToken":"t"}}}]}"#,
    r#"{"eventID":"b","eventTime":1666275403000.0,"readOnly":"True","userIdentity":null}"#,
    r#"{ "atype" : "authenticate", "ts" : { "$date" : "2022-09-16T01:38:20.034+0000" }, "uuid" : { "$binary" : "KXMtAMh9TOOSl9aQBW1Zkg==", "$type" : "04" }, "local" : { "ip" : "1.2.3.4", "port" : 27017 }, "remote" : { "ip" : "x", "port" : 1 }, "users" : [], "roles" : [], "param" : { "user" : "u", "db" : "admin", "mechanism" : "SCRAM-SHA-1" }, "result" : 18 }"#,
    r#"{"class_uid":3002,"time":1700000000000,"actor":{"user":{"name":"admin.root"}},"src_endpoint":{"ip":"10.0.0.1","port":5},"unmapped":{"atype":"authenticate"}}"#,
];

fn limits() -> DecodeLimits {
    DecodeLimits {
        max_object_bytes: 1 << 20,
        max_line_bytes: 4096,
    }
}

fn decode_both(bytes: &[u8]) {
    let ctx = ObjectContext {
        source_uri: "mem://fuzz",
        ingested_at_micros: 0,
        atlas: None,
    };
    for format in [Format::CloudTrail, Format::MongoAudit] {
        let decoded = decode_object(format, bytes, &ctx, limits()).expect("batches build");
        let (ct, mongo, rejected) = decoded.row_counts();
        // Non-blank input always yields a row, a reject, or a routed digest.
        let blank = bytes.iter().all(u8::is_ascii_whitespace);
        assert!(
            blank || ct + mongo + rejected > 0 || decoded.digest,
            "input vanished: {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        decode_both(&bytes);
    }

    #[test]
    fn mutated_records_never_panic(seed in 0..SEEDS.len(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut bytes = SEEDS[seed].as_bytes().to_vec();
        for (at, byte) in flips {
            let i = at % bytes.len();
            bytes[i] = byte;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        decode_both(&bytes);
        let mut lines = bytes.clone();
        lines.push(b'\n');
        lines.extend_from_slice(SEEDS[seed].as_bytes());
        decode_both(&lines);
    }

    #[test]
    fn truncated_gzip_never_panics(seed in 0..SEEDS.len(), cut in any::<usize>()) {
        let text = format!("{}\n{}\n", SEEDS[seed], SEEDS[(seed + 1) % SEEDS.len()]);
        let mut packed = gzip(text.as_bytes());
        let keep = 2 + cut % (packed.len() - 1);
        packed.truncate(keep);
        decode_both(&packed);
    }
}

#[test]
fn deep_nesting_and_huge_lines_are_rejected_not_fatal() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    decode_both(deep.as_bytes());
    let huge = format!(
        "{{\"atype\":\"x\",\"pad\":\"{}\"}}\n{}\n",
        "a".repeat(10 << 20),
        SEEDS[2]
    );
    let ctx = ObjectContext {
        source_uri: "mem://huge",
        ingested_at_micros: 0,
        atlas: None,
    };
    let decoded = decode_object(
        Format::MongoAudit,
        huge.as_bytes(),
        &ctx,
        DecodeLimits::default(),
    )
    .expect("decode");
    assert_eq!(
        decoded.row_counts(),
        (0, 1, 1),
        "the 10 MB line is rejected, the next one kept"
    );
}
