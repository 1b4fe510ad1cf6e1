//! Benchmark: what each stage of an ingest costs per record, on one core.
//!
//!     cargo bench -p auditlake-ingest --bench stages [-- RECORDS]
//!
//! Generates RECORDS CloudTrail records and RECORDS Atlas audit lines (default 500,000 each) with
//! the sample generator, reads every object into memory, then times each stage over all of
//! them on one core (rayon's pool has one thread), best of three rounds:
//! - `inflate`: gzip objects to their content;
//! - `parse`: simd-json's tape of every document (a CloudTrail file whole, an audit line each),
//!   read by nothing;
//! - `decode`: `decode_object` (inflate, parse, fields into Arrow columns), as an ingest does;
//! - `encode`: the decoded batches into the lake's Parquet files (its writer settings:
//!   dictionaries, statistics, zstd, bloom filters), in a temporary folder.
//!
//! What `ingest.sh` measures per record beyond `decode` + `encode` is the rest of a real ingest:
//! reading files, detection, de-duplication, the ledger, and handing work between threads.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use auditlake_ingest::decode::{self, DecodeLimits, Format, ObjectContext, tape};
use auditlake_ingest::lake::LakeWriter;
use auditlake_ingest::sample::{self, SampleOptions};
use auditlake_ingest::source::layout::{self, ObjectKind};
use auditlake_schema::LakeRoot;

/// One object read into memory, with what decoding it needs.
struct Object {
    bytes: Vec<u8>,
    format: Format,
    kind: ObjectKind,
    uri: String,
}

fn read_objects(root: &Path) -> Vec<Object> {
    let mut objects = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.expect("walk");
        if !entry.file_type().is_file() {
            continue;
        }
        let key = entry
            .path()
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        let kind = layout::classify(&key, None);
        if let Some(format) = kind.format() {
            objects.push(Object {
                bytes: std::fs::read(entry.path()).expect("read"),
                format,
                kind,
                uri: format!("file:///{key}"),
            });
        }
    }
    objects
}

fn context(object: &Object) -> ObjectContext<'_> {
    ObjectContext {
        source_uri: &object.uri,
        ingested_at_micros: 1_800_000_000_000_000,
        atlas: match &object.kind {
            ObjectKind::AtlasAudit(atlas) => Some(atlas.clone()),
            _ => None,
        },
    }
}

fn inflated(object: &Object) -> Vec<u8> {
    if decode::is_gzip(&object.bytes) {
        decode::gunzip(&object.bytes, usize::MAX).content
    } else {
        object.bytes.clone()
    }
}

/// The best of three rounds of `stage`.
fn best_of_three(mut stage: impl FnMut() -> Duration) -> Duration {
    (0..3).map(|_| stage()).min().unwrap_or_default()
}

fn time_inflate(objects: &[&Object]) -> Duration {
    best_of_three(|| {
        let start = Instant::now();
        for object in objects {
            if decode::is_gzip(&object.bytes) {
                std::hint::black_box(decode::gunzip(&object.bytes, usize::MAX));
            }
        }
        start.elapsed()
    })
}

fn time_parse(contents: &[(Format, Vec<u8>)]) -> Duration {
    best_of_three(|| {
        let mut copies = contents.to_vec();
        let start = Instant::now();
        for (format, content) in &mut copies {
            match format {
                Format::CloudTrail => {
                    let _ = std::hint::black_box(tape::with_parsed(content, |_| ()));
                }
                Format::MongoAudit => {
                    for line in content.split_mut(|b| *b == b'\n') {
                        if !line.is_empty() {
                            let _ = std::hint::black_box(tape::with_parsed(line, |_| ()));
                        }
                    }
                }
            }
        }
        start.elapsed()
    })
}

fn decode_all(objects: &[&Object]) -> Vec<(&'static str, RecordBatch)> {
    let mut batches = Vec::new();
    for object in objects {
        let decoded = decode::decode_object(
            object.format,
            &object.bytes,
            &context(object),
            DecodeLimits::default(),
        )
        .expect("decode");
        for (table, batch) in [
            (auditlake_schema::CLOUDTRAIL, decoded.cloudtrail),
            (auditlake_schema::MONGODB_AUDIT, decoded.mongodb_audit),
            (auditlake_schema::REJECTED, decoded.rejected),
        ] {
            if let Some(batch) = batch {
                batches.push((table, batch));
            }
        }
    }
    batches
}

fn time_decode(objects: &[&Object]) -> Duration {
    best_of_three(|| {
        let start = Instant::now();
        std::hint::black_box(decode_all(objects));
        start.elapsed()
    })
}

fn time_encode(batches: &[(&'static str, RecordBatch)], dir: &Path) -> Duration {
    best_of_three(|| {
        let _ = std::fs::remove_dir_all(dir);
        let writer = LakeWriter::create(LakeRoot::Local(dir.to_path_buf())).expect("writer");
        let start = Instant::now();
        // Commit groups of the pipeline's size: a file per table and hour for each.
        let mut rows = 0;
        let mut group = writer.open_group("g0".into());
        // Rows without a time would go to the partition of time 0 (an ingest uses the object's
        // modification time); the cost of writing is the same.
        for (i, (table, batch)) in batches.iter().enumerate() {
            group.append(table, batch, 0).expect("append");
            rows += batch.num_rows();
            if rows >= auditlake_ingest::pipeline::GROUP_MAX_ROWS {
                group.finish().expect("finish").publish().expect("publish");
                group = writer.open_group(format!("g{i}"));
                rows = 0;
            }
        }
        group.finish().expect("finish").publish().expect("publish");
        start.elapsed()
    })
}

fn per_record(d: Duration, records: usize) -> f64 {
    d.as_secs_f64() * 1e6 / records as f64
}

fn main() {
    let records: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500_000);
    // One core: the lake writer's encoder threads too.
    auditlake_ingest::lake::start_encoders(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let data: PathBuf = dir.path().join("data");
    sample::generate(
        &data,
        &SampleOptions {
            seed: 5,
            cloudtrail_records: records,
            audit_lines: records,
            ..SampleOptions::default()
        },
    )
    .expect("sample");
    let objects = read_objects(&data);

    println!("µs per record on one core, best of 3 ({records} records of each kind)");
    println!(
        "{:<12} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "data", "inflate", "parse", "decode", "encode", "d+e"
    );
    for (name, format) in [
        ("cloudtrail", Format::CloudTrail),
        ("atlas audit", Format::MongoAudit),
    ] {
        let ours: Vec<&Object> = objects.iter().filter(|o| o.format == format).collect();
        let contents: Vec<(Format, Vec<u8>)> =
            ours.iter().map(|o| (o.format, inflated(o))).collect();
        let batches = decode_all(&ours);
        let rows: usize = batches.iter().map(|(_, b)| b.num_rows()).sum();
        let inflate = per_record(time_inflate(&ours), rows);
        let parse = per_record(time_parse(&contents), rows);
        let decode = per_record(time_decode(&ours), rows);
        let encode = per_record(time_encode(&batches, &dir.path().join("lake")), rows);
        println!(
            "{name:<12} {inflate:>8.3} {parse:>8.3} {decode:>8.3} {encode:>8.3} {:>8.3}",
            decode + encode
        );
    }
}
