//! The pipeline's scheduling and commit-group lifecycle, through the in-memory source: real
//! ledger and lake files in a temporary folder, no servers.

use std::collections::HashSet;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{MAX_ATTEMPTS, Pipeline};
use crate::decode::DecodeLimits;
use crate::lake::LakeWriter;
use crate::ledger::{Ledger, ObjectStatus};
use crate::source::memory::MemorySource;
use crate::source::{Listing, Positions, SourceObject};
use auditlake_schema::{LakeFile, LakeRoot};

struct Fixture {
    _dir: tempfile::TempDir,
    pipeline: Pipeline,
    source: MemorySource,
}

fn fixture(group_rows: Option<usize>) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Arc::new(Ledger::open(&dir.path().join("ledger.redb")).expect("ledger"));
    let writer = LakeWriter::create(LakeRoot::Local(dir.path().join("lake"))).expect("lake");
    let mut pipeline = Pipeline::new(ledger, writer, DecodeLimits::default(), 2);
    if let Some(rows) = group_rows {
        pipeline = pipeline.with_group_rows(rows);
    }
    Fixture {
        _dir: dir,
        pipeline,
        source: MemorySource::new("mem"),
    }
}

/// A CloudTrail log object of `events` records with ids `<name>-<n>`, under a CloudTrail key.
fn trail(source: &MemorySource, name: &str, events: usize) -> SourceObject {
    let records: Vec<String> = (0..events)
        .map(|n| {
            serde_json::json!({
                "eventVersion": "1.08",
                "eventTime": "2026-11-01T06:00:00Z",
                "eventSource": "sts.amazonaws.com",
                "eventName": "AssumeRole",
                "awsRegion": "us-east-1",
                "eventID": format!("{name}-{n}"),
                "recipientAccountId": "111122223333",
            })
            .to_string()
        })
        .collect();
    let content = format!(r#"{{"Records":[{}]}}"#, records.join(","));
    let key = format!(
        "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/01/111122223333_CloudTrail_us-east-1_20261101T0600Z_{name}.json"
    );
    source.object(&key, "v1", content.as_bytes())
}

fn status(pipeline: &Pipeline, object: &SourceObject) -> Option<ObjectStatus> {
    pipeline
        .ledger()
        .entry(&object.uri)
        .expect("entry")
        .map(|e| e.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_position_is_saved_only_once_every_object_is_recorded() {
    let f = fixture(None);
    let (a, b) = (trail(&f.source, "a", 3), trail(&f.source, "b", 2));
    f.source.fail_fetches(&b.uri, 1);
    f.source
        .push_objects(vec![a.clone(), b.clone()], Some(("mem/position", b"p1")));
    let stop = CancellationToken::new();

    let first = f.pipeline.scan(&f.source, &stop).await.expect("scan");
    assert_eq!((first.fresh, first.processed, first.failed), (2, 2, 1));
    assert_eq!(status(&f.pipeline, &a), Some(ObjectStatus::Ingested));
    assert_eq!(status(&f.pipeline, &b), None, "a failed fetch is retried");
    assert_eq!(
        f.pipeline.ledger().cursor("mem/position").expect("cursor"),
        None
    );

    let second = f.pipeline.scan(&f.source, &stop).await.expect("scan");
    assert_eq!((second.listed, second.fresh, second.failed), (2, 1, 0));
    assert_eq!(status(&f.pipeline, &b), Some(ObjectStatus::Ingested));
    assert_eq!(
        f.pipeline.ledger().cursor("mem/position").expect("cursor"),
        Some(b"p1".to_vec())
    );
    assert_eq!(f.pipeline.stats().snapshot().cloudtrail_rows, 5);

    let third = f.pipeline.scan(&f.source, &stop).await.expect("scan");
    assert_eq!(
        (third.fresh, third.processed),
        (0, 0),
        "nothing is ingested twice"
    );
    assert_eq!(
        f.source.fetched(),
        [a.uri.clone(), b.uri.clone(), b.uri.clone()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_keeps_failing_is_recorded_as_failed_after_the_last_attempt() {
    let f = fixture(None);
    let bad = trail(&f.source, "bad", 1);
    f.source.fail_fetches(&bad.uri, usize::MAX);
    f.source.push_objects(vec![bad.clone()], None);
    let stop = CancellationToken::new();
    for attempt in 1..=MAX_ATTEMPTS {
        assert_eq!(status(&f.pipeline, &bad), None, "before attempt {attempt}");
        f.pipeline.scan(&f.source, &stop).await.expect("scan");
    }
    assert_eq!(status(&f.pipeline, &bad), Some(ObjectStatus::Failed));
    assert_eq!(f.pipeline.stats().snapshot().objects_failed, 1);
}

/// The distinct sets of lake files that `objects` were committed with.
fn files_of(f: &Fixture, objects: &[SourceObject]) -> HashSet<Vec<LakeFile>> {
    objects
        .iter()
        .map(|o| {
            f.pipeline
                .ledger()
                .entry(&o.uri)
                .expect("entry")
                .expect("recorded")
                .files
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_one_group_share_its_files_and_a_full_group_commits_apart() {
    // One group for the whole listing.
    let f = fixture(None);
    let objects: Vec<SourceObject> = (0..4)
        .map(|i| trail(&f.source, &format!("g{i}"), 2))
        .collect();
    f.source.push_objects(objects.clone(), None);
    let stop = CancellationToken::new();
    f.pipeline.scan(&f.source, &stop).await.expect("scan");
    let files = files_of(&f, &objects);
    assert_eq!(files.len(), 1, "one group, one set of files: {files:?}");

    // A group full after each object's rows: every object commits with files of its own.
    let f = fixture(Some(1));
    let objects: Vec<SourceObject> = (0..4)
        .map(|i| trail(&f.source, &format!("h{i}"), 2))
        .collect();
    f.source.push_objects(objects.clone(), None);
    let report = f.pipeline.scan(&f.source, &stop).await.expect("scan");
    assert_eq!(report.processed, 4);
    let files = files_of(&f, &objects);
    assert_eq!(files.len(), 4, "{files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_read_commits_its_position_with_it_and_is_retried_rather_than_failed() {
    let f = fixture(None);
    let read = trail(&f.source, "read-1", 2);
    f.source.fail_fetches(&read.uri, MAX_ATTEMPTS as usize + 1);
    let listing = Listing {
        objects: vec![read.clone()],
        positions: Positions::WithObject(vec![("mem/stream".to_owned(), b"after-1".to_vec())]),
        more: true,
        acknowledge: true,
        ..Listing::default()
    };
    // Read again after each failure, then once more, then the stream has nothing new.
    for _ in 0..=MAX_ATTEMPTS + 1 {
        f.source.push(listing.clone());
    }
    f.source.push(Listing::default());
    let stop = CancellationToken::new();
    for _ in 0..=MAX_ATTEMPTS {
        let report = f.pipeline.scan(&f.source, &stop).await.expect("scan");
        assert_eq!(report.failed, 1);
    }
    assert_eq!(status(&f.pipeline, &read), None, "never recorded as failed");
    assert_eq!(
        f.pipeline.ledger().cursor("mem/stream").expect("cursor"),
        None
    );
    assert!(f.source.acknowledged().iter().all(HashSet::is_empty));

    // Readable now: drained, the read and the position past it are committed together.
    let drained = f
        .pipeline
        .drain(&f.source, &stop, None)
        .await
        .expect("drain");
    assert_eq!(
        (drained.processed, drained.failed, drained.more),
        (1, 0, false)
    );
    assert_eq!(status(&f.pipeline, &read), Some(ObjectStatus::Ingested));
    assert_eq!(
        f.pipeline.ledger().cursor("mem/stream").expect("cursor"),
        Some(b"after-1".to_vec())
    );
    let last = f
        .source
        .acknowledged()
        .last()
        .cloned()
        .expect("acknowledged");
    assert_eq!(last, HashSet::from([read.uri.clone()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_in_two_objects_is_kept_once() {
    let f = fixture(None);
    let first = trail(&f.source, "same", 3);
    let key = first.key.replace("_same.json", "_copy.json");
    let content = f.source.fetch_now(&first);
    let copy = f.source.object(&key, "v1", &content);
    f.source.push_objects(vec![first, copy], None);
    let stop = CancellationToken::new();
    f.pipeline.scan(&f.source, &stop).await.expect("scan");
    let s = f.pipeline.stats().snapshot();
    assert_eq!((s.cloudtrail_rows, s.duplicate_events), (3, 3));
}
