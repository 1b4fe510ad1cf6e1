//! The AWS sources against real local servers (moto for S3, SQS and CloudWatch Logs; SeaweedFS
//! for a stricter S3), started by `tests/servers.sh`: listing backfill and cursors, SQS
//! notifications (test event, encoded keys), reconciliation of a lost notification, CloudWatch
//! Logs paging, dedupe across CloudWatch and S3, a vanished object, and an endpoint that
//! answers 503/SlowDown or stalls.

use crate::common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auditlake_ingest::aws::AwsSettings;
use auditlake_ingest::config::{Config, ConfigFile, LakeSpec, SourceSpec};
use auditlake_ingest::sample::{self, SampleOptions};
use auditlake_ingest::service;
use auditlake_ingest::source::cloudwatch::CloudWatchSpec;
use auditlake_ingest::source::layout::ExpectedKind;
use auditlake_ingest::source::s3::{S3Source, S3Spec};
use common::aws;
use common::service::Running;
use tokio_util::sync::CancellationToken;

fn settings(endpoint: &str) -> AwsSettings {
    AwsSettings {
        endpoint_url: Some(endpoint.to_owned()),
        region: Some("us-east-1".into()),
        attempt_timeout: Duration::from_secs(5),
        max_attempts: 4,
        ..AwsSettings::new()
    }
}

fn s3_spec(bucket: &str, aws: AwsSettings) -> S3Spec {
    S3Spec {
        bucket: bucket.to_owned(),
        prefix: String::new(),
        expected: ExpectedKind::Auto,
        aws,
        queue_url: None,
        reconcile_interval: Duration::from_secs(3600),
        look_back: Duration::from_secs(3600),
        atlas_project: None,
        since_micros: None,
        until_micros: None,
    }
}

fn s3_source(spec: S3Spec) -> SourceSpec {
    SourceSpec::S3 {
        spec,
        queue_wait: Duration::from_secs(1),
    }
}

/// A new bucket on `endpoint` holding the sample day, with its manifest; `dir` is kept by the
/// caller (the sample's folder is `dir/data`).
async fn bucket_with_sample(
    endpoint: &str,
    name: &str,
    dir: &std::path::Path,
) -> (aws_sdk_s3::Client, String, sample::Manifest) {
    let s3 = aws::s3(&aws::sdk(endpoint).await);
    let bucket = aws::unique(name);
    aws::create_bucket(&s3, &bucket).await;
    let manifest = sample::generate(&dir.join("data"), &SampleOptions::default()).expect("sample");
    aws::upload_dir(&s3, &bucket, "", &dir.join("data")).await;
    (s3, bucket, manifest)
}

/// Opens the pipeline of `config` and scans its first listed source once.
async fn open_and_scan(
    config: &Config,
) -> (service::Ingestion, auditlake_ingest::pipeline::ScanReport) {
    // Boxed: both futures are large in debug builds, and test threads have small stacks.
    let ingestion = Box::pin(service::open_pipeline(config))
        .await
        .expect("pipeline");
    let report = Box::pin(ingestion.pipeline.scan(
        ingestion.sources[0].source.as_ref(),
        &CancellationToken::new(),
    ))
    .await
    .expect("scan");
    (ingestion, report)
}

fn config(lake: &std::path::Path, sources: Vec<SourceSpec>) -> Config {
    let mut config = Config::from_file(ConfigFile::default(), &|_| None).expect("config");
    config.lake = LakeSpec::Local(lake.to_path_buf());
    config.state_dir = lake.join("_state");
    config.http_listen = "127.0.0.1:0".parse().expect("addr");
    config.poll_interval = Duration::from_millis(200);
    config.sources = sources;
    config
}

/// The sample day generated under `dir/data`, and a service reading it from there; the lake
/// is for the caller to set.
fn sample_folder_config(dir: &std::path::Path) -> (sample::Manifest, Config) {
    let data = dir.join("data");
    let manifest = sample::generate(&data, &SampleOptions::default()).expect("sample");
    let config = config(
        &dir.join("unused"),
        vec![SourceSpec::Folder {
            path: data,
            atlas_project: None,
        }],
    );
    (manifest, config)
}

/// One gzip CloudTrail file holding a record per id.
fn cloudtrail_object(ids: &[String], time: &str) -> Vec<u8> {
    let records: Vec<serde_json::Value> = ids.iter().map(|id| record(id, time)).collect();
    let body = serde_json::json!({ "Records": records }).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body.as_bytes()).expect("gzip");
    gz.finish().expect("gzip")
}

fn record(id: &str, time: &str) -> serde_json::Value {
    serde_json::json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": "arn:aws:iam::111122223333:user/ops", "accountId": "111122223333", "userName": "ops"},
        "eventTime": time,
        "eventSource": "s3.amazonaws.com",
        "eventName": "ListBuckets",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-cli/2",
        "requestID": format!("req-{id}"),
        "eventID": id,
        "eventType": "AwsApiCall",
        "readOnly": true,
        "recipientAccountId": "111122223333"
    })
}

const TRAIL: &str = "AWSLogs/111122223333/CloudTrail/us-east-1";

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_backfills_then_lists_only_the_recent_end() {
    let Some(moto) = aws::moto() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let (s3, bucket, manifest) = bucket_with_sample(&moto, "backfill", dir.path()).await;
    let data = dir.path().join("data");

    let lake = dir.path().join("lake");
    let spec = s3_spec(&bucket, settings(&moto));
    let config = config(&lake, vec![s3_source(spec)]);
    let ingestion = service::open_pipeline(&config).await.expect("pipeline");
    let source = ingestion.sources[0].source.clone();
    let stop = CancellationToken::new();
    let first = ingestion
        .pipeline
        .scan(source.as_ref(), &stop)
        .await
        .expect("scan");
    assert_eq!(first.failed, 0, "{first:?}");
    let s = ingestion.pipeline.stats().snapshot();
    assert_eq!(s.cloudtrail_rows as usize, manifest.cloudtrail_rows);
    assert_eq!(s.duplicate_events as usize, manifest.cloudtrail_duplicates);
    assert_eq!(s.mongodb_audit_rows as usize, manifest.mongodb_audit_rows);
    assert_eq!(s.rejected_rows as usize, manifest.rejected_rows);
    // Digest folders are not walked; everything else is listed.
    assert_eq!(
        first.listed,
        manifest.cloudtrail_objects + manifest.atlas_audit_objects + manifest.unrecognized_objects
    );

    // The cursors now skip history: the next listing reads the newest day of CloudTrail (and of
    // Atlas's legacy date folders) and the last hour of Atlas's epoch-named files only.
    let again = ingestion
        .pipeline
        .scan(source.as_ref(), &stop)
        .await
        .expect("scan");
    assert!(again.listed < first.listed, "{again:?} vs {first:?}");
    assert_eq!(again.fresh, 0);
    let relisted: Vec<String> = source
        .list()
        .await
        .expect("list")
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    let epoch_files: Vec<String> = walkdir::WalkDir::new(data.join("atlas"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let key = e
                .path()
                .strip_prefix(&data)
                .ok()?
                .to_string_lossy()
                .replace('\\', "/");
            let parent = e
                .path()
                .parent()?
                .file_name()?
                .to_string_lossy()
                .into_owned();
            // Files directly in the log type folder (the current layout).
            parent.contains("audit").then_some(key)
        })
        .collect();
    let oldest = epoch_files.iter().min().expect("epoch-named Atlas files");
    let newest = epoch_files.iter().max().expect("epoch-named Atlas files");
    assert!(!relisted.contains(oldest), "{oldest} listed again");
    assert!(relisted.contains(newest), "{newest} not listed again");

    // An object delivered late into the newest day is still found.
    let day = "2026/11/01";
    let newest_ct = walkdir::WalkDir::new(data.join("cloudtrail"))
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && !e.path().to_string_lossy().contains("Digest"))
        .last()
        .expect("a cloudtrail file");
    let newest_day = newest_ct
        .path()
        .parent()
        .expect("day folder")
        .strip_prefix(data.join("cloudtrail"))
        .expect("below")
        .to_string_lossy()
        .replace('\\', "/");
    assert!(newest_day.contains('/'), "{newest_day} ({day})");
    let late_ids = ids("late", 3);
    let late_key = format!(
        "cloudtrail/{newest_day}/111122223333_CloudTrail_us-east-1_20000101T0000Z_late.json.gz"
    );
    aws::put(
        &s3,
        &bucket,
        &late_key,
        cloudtrail_object(&late_ids, "2026-11-01T00:00:00Z"),
    )
    .await;
    let late = ingestion
        .pipeline
        .scan(source.as_ref(), &stop)
        .await
        .expect("scan");
    assert_eq!((late.fresh, late.failed), (1, 0), "{late:?}");
    assert_eq!(
        ingestion.pipeline.stats().snapshot().cloudtrail_rows as usize,
        manifest.cloudtrail_rows + 3
    );
}

async fn create_queue(config: &aws_config::SdkConfig, name: &str) -> (String, String) {
    let sqs = aws_sdk_sqs::Client::new(config);
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes");
    let arn = attributes
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("queue arn");
    (url, arn)
}

async fn notify_queue(s3: &aws_sdk_s3::Client, bucket: &str, queue_arn: &str) {
    use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(queue_arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .build()
                        .expect("queue configuration"),
                )
                .build(),
        )
        .send()
        .await
        .expect("bucket notification");
}

/// A new bucket and queue on moto; with `notify`, the bucket sends `ObjectCreated` events to
/// the queue (preceded, as on AWS, by an `s3:TestEvent` message).
async fn bucket_and_queue(
    moto: &str,
    name: &str,
    notify: bool,
) -> (aws_sdk_s3::Client, String, String) {
    let sdk = aws::sdk(moto).await;
    let s3 = aws::s3(&sdk);
    let bucket = aws::unique(name);
    aws::create_bucket(&s3, &bucket).await;
    let (queue_url, queue_arn) = create_queue(&sdk, &aws::unique(name)).await;
    if notify {
        notify_queue(&s3, &bucket, &queue_arn).await;
    }
    (s3, bucket, queue_url)
}

/// The service with one S3 source notified through `queue_url`, started and idle.
async fn start_notified(
    moto: &str,
    bucket: &str,
    queue_url: String,
    reconcile_interval: Duration,
    lake: &std::path::Path,
) -> Running {
    let mut spec = s3_spec(bucket, settings(moto));
    spec.queue_url = Some(queue_url);
    spec.reconcile_interval = reconcile_interval;
    let service = Running::start(config(lake, vec![s3_source(spec)])).await;
    service.wait_idle().await;
    service
}

async fn wait_for_count(service: &Running, sql: &str, expected: i64, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if service.scalar(sql).await == expected {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{sql} did not reach {expected} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_notifications_bring_new_objects_in_within_seconds() {
    let Some(moto) = aws::moto() else { return };
    let (s3, bucket, queue_url) = bucket_and_queue(&moto, "notified", true).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let service = start_notified(
        &moto,
        &bucket,
        queue_url,
        Duration::from_secs(3600),
        &dir.path().join("lake"),
    )
    .await;

    // Keys with a space, a plus and a comma arrive form-urlencoded in notifications.
    let mut delays = Vec::new();
    for n in 0..5 {
        let batch = ids(&format!("sqs{n}"), 10);
        let key = format!(
            "{TRAIL}/2026/11/22/111122223333_CloudTrail_us-east-1_20261122T09{n:02}Z_a+b c,{n}.json.gz"
        );
        let started = Instant::now();
        aws::put(
            &s3,
            &bucket,
            &key,
            cloudtrail_object(&batch, "2026-11-22T09:00:00Z"),
        )
        .await;
        wait_for_count(
            &service,
            &format!("SELECT count(*) FROM cloudtrail WHERE event_id LIKE 'sqs{n}-%'"),
            10,
            Duration::from_secs(30),
        )
        .await;
        delays.push(started.elapsed());
    }
    let status = service.get("/v1/status").await;
    let process = &status["process"];
    assert!(process["notifications"].as_u64() >= Some(6), "{status}");
    assert!(
        process["notifications_ignored"].as_u64() >= Some(1),
        "{status}"
    );
    assert_eq!(process["objects_failed"].as_u64(), Some(0), "{status}");
    // Only one listing ran (at start, on the empty bucket): the objects came by notification.
    assert_eq!(process["scans"].as_u64(), Some(1), "{status}");
    let uris = service
        .sql("SELECT DISTINCT source_uri FROM cloudtrail ORDER BY source_uri")
        .await;
    assert!(
        uris[0]["source_uri"]
            .as_str()
            .is_some_and(|u| u.ends_with("_a+b c,0.json.gz")),
        "{uris:?}"
    );
    delays.sort();
    eprintln!(
        "upload → queryable through SQS: min {:?}, median {:?}, max {:?}",
        delays[0],
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_listing_finds_an_object_whose_notification_was_lost() {
    let Some(moto) = aws::moto() else { return };
    // The queue exists but the bucket never notifies it: every notification is "lost".
    let (s3, bucket, queue_url) = bucket_and_queue(&moto, "lost", false).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let service = start_notified(
        &moto,
        &bucket,
        queue_url,
        Duration::from_millis(500),
        &dir.path().join("lake"),
    )
    .await;
    let key =
        format!("{TRAIL}/2026/11/22/111122223333_CloudTrail_us-east-1_20261122T1000Z_lost.json.gz");
    aws::put(
        &s3,
        &bucket,
        &key,
        cloudtrail_object(&ids("lost", 4), "2026-11-22T10:00:00Z"),
    )
    .await;
    wait_for_count(
        &service,
        "SELECT count(*) FROM cloudtrail WHERE event_id LIKE 'lost-%'",
        4,
        Duration::from_secs(30),
    )
    .await;
    let status = service.get("/v1/status").await;
    assert_eq!(
        status["process"]["notifications"].as_u64(),
        Some(0),
        "{status}"
    );
    service.stop().await;
}

async fn put_log_events(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    stream: &str,
    events: &[(i64, String)],
) {
    for chunk in events.chunks(500) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|(t, m)| {
                aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                    .timestamp(*t)
                    .message(m)
                    .build()
                    .expect("log event")
            })
            .collect();
        logs.put_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .set_log_events(Some(batch))
            .send()
            .await
            .expect("put log events");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_pages_are_followed_and_records_seen_in_s3_are_not_doubled() {
    let Some(moto) = aws::moto() else { return };
    let sdk = aws::sdk(&moto).await;
    let s3 = aws::s3(&sdk);
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    let group = aws::unique("trail-group");
    let stream = "111122223333_CloudTrail_us-east-1";
    logs.create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .expect("group");
    logs.create_log_stream()
        .log_group_name(&group)
        .log_stream_name(stream)
        .send()
        .await
        .expect("stream");
    let now = chrono::Utc::now();
    let base = now.timestamp_millis() - 600_000;
    let time = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let all = ids("cw", 1200);
    let events: Vec<(i64, String)> = all
        .iter()
        .enumerate()
        .map(|(i, id)| (base + i as i64 * 10, record(id, &time).to_string()))
        .collect();
    put_log_events(&logs, &group, stream, &events).await;
    // The first 300 also reached S3.
    let bucket = aws::unique("cw-s3");
    aws::create_bucket(&s3, &bucket).await;
    let key =
        format!("{TRAIL}/2026/11/22/111122223333_CloudTrail_us-east-1_20261122T0900Z_cw.json.gz");
    aws::put(&s3, &bucket, &key, cloudtrail_object(&all[..300], &time)).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let cw = CloudWatchSpec {
        log_groups: vec![group.clone()],
        aws: settings(&moto),
        overlap: Duration::from_secs(60),
        initial_look_back: Duration::from_secs(3600),
        max_events: 10_000,
        page_size: Some(100),
        since_micros: None,
        until_micros: None,
    };
    let config = config(
        &dir.path().join("lake"),
        vec![
            s3_source(s3_spec(&bucket, settings(&moto))),
            SourceSpec::Cloudwatch(cw),
        ],
    );
    let ingestion = service::open_pipeline(&config).await.expect("pipeline");
    let stop = CancellationToken::new();
    ingestion
        .pipeline
        .scan(ingestion.sources[0].source.as_ref(), &stop)
        .await
        .expect("scan");
    let stream_source = ingestion.sources[1].source.as_ref();
    let poll = async |pipeline: &auditlake_ingest::pipeline::Pipeline| {
        pipeline
            .drain(stream_source, &stop, None)
            .await
            .expect("poll")
            .log_events
    };
    // Twelve pages of 100 in one read.
    assert_eq!(poll(&ingestion.pipeline).await, 1200);
    let s = ingestion.pipeline.stats().snapshot();
    assert_eq!(s.cloudtrail_rows, 1200);
    assert_eq!(s.duplicate_events, 300);
    assert_eq!(s.cloudwatch_events, 1200);

    // Nothing new: the overlap is read again and left out.
    assert_eq!(poll(&ingestion.pipeline).await, 0);
    // New events, some at the cursor's timestamp, are read once.
    let last = base + 1199 * 10;
    let more: Vec<(i64, String)> = ids("cw-more", 5)
        .iter()
        .enumerate()
        .map(|(i, id)| (last + i as i64, record(id, &time).to_string()))
        .collect();
    put_log_events(&logs, &group, stream, &more).await;
    assert_eq!(poll(&ingestion.pipeline).await, 5);
    assert_eq!(ingestion.pipeline.stats().snapshot().cloudtrail_rows, 1205);

    // A restarted process (new in-memory state) reads the overlap again, and the ledger's event
    // id claims keep the lake free of duplicates.
    drop(ingestion);
    let again = service::open_pipeline(&config).await.expect("pipeline");
    again
        .pipeline
        .drain(again.sources[1].source.as_ref(), &stop, None)
        .await
        .expect("poll");
    let s = again.pipeline.stats().snapshot();
    assert_eq!(s.cloudtrail_rows, 0, "{s:?}");
    let engine = auditlake_query::QueryEngine::open(&dir.path().join("lake"))
        .await
        .expect("engine");
    let batches = engine
        .query("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM cloudtrail")
        .await
        .expect("query");
    let text = arrow::util::pretty::pretty_format_batches(&batches.batches)
        .expect("format")
        .to_string();
    assert!(text.contains("| 1205 | 1205 |"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_object_is_recorded_once_and_skipped() {
    let Some(moto) = aws::moto() else { return };
    let s3 = aws::s3(&aws::sdk(&moto).await);
    let bucket = aws::unique("vanished");
    aws::create_bucket(&s3, &bucket).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(&dir.path().join("lake"), Vec::new());
    let ingestion = service::open_pipeline(&config).await.expect("pipeline");
    let source = S3Source::connect(
        s3_spec(&bucket, settings(&moto)),
        ingestion.pipeline.ledger().clone(),
    )
    .await;
    let key =
        format!("{TRAIL}/2026/11/22/111122223333_CloudTrail_us-east-1_20261122T1100Z_gone.json.gz");
    let object = source.object(&key, "\"etag\"", 10, 0);
    let stop = CancellationToken::new();
    let report = ingestion
        .pipeline
        .ingest_objects(&source, std::slice::from_ref(&object), &stop, None)
        .await
        .expect("ingest");
    assert_eq!(report.failed, 1);
    let s = ingestion.pipeline.stats();
    assert_eq!(s.snapshot().objects_failed, 1);
    assert_eq!(s.errors().get("gone"), Some(&1));
    // Recorded: not tried again.
    let again = ingestion
        .pipeline
        .ingest_objects(&source, &[object], &stop, None)
        .await
        .expect("ingest");
    assert_eq!(again.fresh, 0);
}

/// Forwards to `upstream`, failing some object reads: every `slow_down`-th answers 503
/// SlowDown, every `stall`-th waits `stall_for` before answering; and, until `brownout_until`,
/// a random `brownout_share` of every request (listings too) answers 503.
struct FaultProxy {
    brownout_until: Option<Instant>,
    brownout_share: f64,
    upstream: String,
    slow_down: u64,
    stall: u64,
    stall_for: Duration,
    reads: AtomicU64,
    faults: AtomicU64,
    /// Object writes (PUT) refused with a 500, by their number from 1.
    refused_puts: std::ops::Range<u64>,
    puts: AtomicU64,
}

async fn start_proxy(proxy: Arc<FaultProxy>) -> SocketAddr {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::response::{IntoResponse, Response};
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |request: Request| {
        let (proxy, client) = (proxy.clone(), client.clone());
        async move {
            let (parts, body) = request.into_parts();
            let path = parts.uri.path().to_owned();
            let query = parts.uri.query().unwrap_or_default().to_owned();
            // GET /bucket/key (path style), not a listing.
            let object_read = parts.method == axum::http::Method::GET
                && path.trim_start_matches('/').contains('/')
                && !query.contains("list-type");
            let slow_down = || {
                proxy.faults.fetch_add(1, Ordering::Relaxed);
                Response::builder()
                    .status(503)
                    .header("content-type", "application/xml")
                    .body(Body::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"))
                    .expect("response")
            };
            if proxy.brownout_until.is_some_and(|until| Instant::now() < until)
                && rand::random_bool(proxy.brownout_share)
            {
                return slow_down();
            }
            if parts.method == axum::http::Method::PUT {
                let n = proxy.puts.fetch_add(1, Ordering::Relaxed) + 1;
                if proxy.refused_puts.contains(&n) {
                    proxy.faults.fetch_add(1, Ordering::Relaxed);
                    return Response::builder()
                        .status(500)
                        .header("content-type", "application/xml")
                        .body(Body::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>"))
                        .expect("response");
                }
            }
            if object_read {
                let n = proxy.reads.fetch_add(1, Ordering::Relaxed) + 1;
                if n % proxy.slow_down == 0 {
                    return slow_down();
                }
                if n % proxy.stall == 0 {
                    proxy.faults.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(proxy.stall_for).await;
                }
            }
            let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("body");
            let url = format!("{}{}", proxy.upstream, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
            let mut forward = client.request(parts.method.clone(), url).body(bytes);
            // Every header as sent, `Host` too: a signature-checking server verifies it.
            for (name, value) in &parts.headers {
                forward = forward.header(name, value);
            }
            match forward.send().await {
                Ok(answer) => {
                    let status = answer.status();
                    let headers = answer.headers().clone();
                    let body = answer.bytes().await.unwrap_or_default();
                    let mut response = Response::builder().status(status);
                    for (name, value) in &headers {
                        if name != "transfer-encoding" && name != "connection" {
                            response = response.header(name, value);
                        }
                    }
                    response.body(Body::from(body)).expect("response")
                }
                Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_stalls_slow_ingest_but_lose_nothing() {
    let Some(moto) = aws::moto() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, bucket, manifest) = bucket_with_sample(&moto, "faulty", dir.path()).await;
    let proxy = Arc::new(FaultProxy {
        brownout_until: None,
        brownout_share: 0.0,
        upstream: moto.clone(),
        slow_down: 4,
        stall: 29,
        stall_for: Duration::from_secs(3),
        reads: AtomicU64::new(0),
        faults: AtomicU64::new(0),
        refused_puts: 0..0,
        puts: AtomicU64::new(0),
    });
    let addr = start_proxy(proxy.clone()).await;
    let mut aws_settings = settings(&format!("http://{addr}"));
    aws_settings.attempt_timeout = Duration::from_secs(1);
    let config = config(
        &dir.path().join("lake"),
        vec![s3_source(s3_spec(&bucket, aws_settings))],
    );
    let ingestion = service::open_pipeline(&config).await.expect("pipeline");
    let source = ingestion.sources[0].source.clone();
    let stop = CancellationToken::new();
    // Like the service: scan again while objects are left (a failed attempt is retried later).
    for _ in 0..5 {
        let report = ingestion
            .pipeline
            .scan(source.as_ref(), &stop)
            .await
            .expect("scan");
        if report.fresh == 0 {
            break;
        }
    }
    let s = ingestion.pipeline.stats().snapshot();
    assert_eq!(s.objects_failed, 0, "{s:?}");
    assert_eq!(s.cloudtrail_rows as usize, manifest.cloudtrail_rows);
    assert_eq!(s.mongodb_audit_rows as usize, manifest.mongodb_audit_rows);
    assert_eq!(s.rejected_rows as usize, manifest.rejected_rows);
    assert!(
        proxy.faults.load(Ordering::Relaxed) > 100,
        "faults were injected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_of_503_on_three_requests_in_ten_fails_no_object() {
    let Some(moto) = aws::moto() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let (s3, bucket, first) = bucket_with_sample(&moto, "brownout", dir.path()).await;
    let brownout = Duration::from_secs(60);
    let proxy = Arc::new(FaultProxy {
        brownout_until: Some(Instant::now() + brownout),
        brownout_share: 0.3,
        upstream: moto.clone(),
        slow_down: u64::MAX,
        stall: u64::MAX,
        stall_for: Duration::ZERO,
        reads: AtomicU64::new(0),
        faults: AtomicU64::new(0),
        refused_puts: 0..0,
        puts: AtomicU64::new(0),
    });
    let addr = start_proxy(proxy.clone()).await;
    let started = Instant::now();
    // Ten attempts: one GET of the ~1,900 fails all ten with odds of 1 in 100, so an object
    // that fails an attempt means the SDK gave up before its ten.
    let mut aws_settings = settings(&format!("http://{addr}"));
    aws_settings.max_attempts = 10;
    let config = config(
        &dir.path().join("lake"),
        vec![s3_source(s3_spec(&bucket, aws_settings))],
    );
    let service = Running::start(config).await;
    // More days arrive during the brownout, so that ingestion runs through it.
    let mut expected = first.cloudtrail_rows;
    for (n, day) in [(1, "2026-11-02"), (2, "2026-11-03")] {
        tokio::time::sleep(brownout / 3).await;
        let data = dir.path().join(format!("data{n}"));
        let options = SampleOptions {
            day: day.parse().expect("day"),
            seed: 7 + n,
            ..SampleOptions::default()
        };
        expected += sample::generate(&data, &options)
            .expect("sample")
            .cloudtrail_rows;
        aws::upload_dir(&s3, &bucket, "", &data).await;
    }
    let left = brownout.saturating_sub(started.elapsed());
    tokio::time::sleep(left).await;
    wait_for_count(
        &service,
        "SELECT count(*) FROM cloudtrail",
        expected as i64,
        Duration::from_secs(120),
    )
    .await;
    let status = service.wait_idle().await;
    assert_eq!(status["lake"]["objects_failed"], 0, "{status}");
    assert_eq!(status["process"]["objects_failed"], 0, "{status}");
    assert_eq!(
        status["process"]["object_errors"], 0,
        "every read was retried up to max_attempts: {status}"
    );
    let faults = proxy.faults.load(Ordering::Relaxed);
    assert!(faults > 100, "503s were answered: {faults}");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigv4_checking_s3_server_serves_the_listing_source() {
    let Some(endpoint) = aws::seaweed() else {
        return;
    };
    let s3 = aws::s3(&aws::sdk(&endpoint).await);
    let bucket = aws::unique("strict");
    aws::create_bucket(&s3, &bucket).await;
    let key = format!(
        "logs/{TRAIL}/2026/11/22/111122223333_CloudTrail_us-east-1_20261122T1200Z_sw.json.gz"
    );
    aws::put(
        &s3,
        &bucket,
        &key,
        cloudtrail_object(&ids("sw", 7), "2026-11-22T12:00:00Z"),
    )
    .await;
    aws::put(&s3, &bucket, "logs/orders/host-1/mongod-audit/1763812800-mongod-audit.log", b"{\"atype\":\"authenticate\",\"ts\":{\"$date\":\"2025-11-22T12:00:00.000+00:00\"},\"local\":{\"ip\":\"10.0.0.1\",\"port\":27017},\"remote\":{\"ip\":\"10.0.0.9\",\"port\":50000},\"users\":[],\"roles\":[],\"param\":{\"user\":\"app\",\"db\":\"admin\",\"mechanism\":\"SCRAM-SHA-256\"},\"result\":0}\n".to_vec()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = s3_spec(&bucket, settings(&endpoint));
    spec.prefix = "logs/".into();
    let config = config(&dir.path().join("lake"), vec![s3_source(spec)]);
    let (ingestion, report) = open_and_scan(&config).await;
    assert_eq!((report.listed, report.failed), (2, 0), "{report:?}");
    let s = ingestion.pipeline.stats().snapshot();
    assert_eq!((s.cloudtrail_rows, s.mongodb_audit_rows), (7, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_on_s3_is_written_and_queried_through_sql() {
    let Some(endpoint) = aws::seaweed() else {
        return;
    };
    let s3 = aws::s3(&aws::sdk(&endpoint).await);
    let bucket = aws::unique("lake");
    aws::create_bucket(&s3, &bucket).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (manifest, mut config) = sample_folder_config(dir.path());
    // The built-in rules and watched role, for the access chain and its rule.
    let builtin = ConfigFile::parse(auditlake_ingest::config::DEFAULT_CONFIG, "builtin")
        .expect("builtin config");
    let builtin = Config::from_file(builtin, &|_| None).expect("builtin config");
    config.rules = builtin.rules;
    config.access = builtin.access;
    config.lake =
        LakeSpec::parse(&format!("s3://{bucket}/audit"), settings(&endpoint)).expect("lake");
    config.state_dir = dir.path().join("state");
    config.settle = Duration::ZERO;
    let service = Running::start(config).await;
    service.wait_idle().await;
    assert_eq!(
        service.scalar("SELECT count(*) FROM cloudtrail").await as usize,
        manifest.cloudtrail_rows
    );
    assert_eq!(
        service.scalar("SELECT count(*) FROM mongodb_audit").await as usize,
        manifest.mongodb_audit_rows
    );
    assert_eq!(
        service
            .scalar("SELECT count(*) FROM cloudtrail WHERE date IS NOT NULL AND hour IS NOT NULL")
            .await as usize,
        manifest.cloudtrail_rows
    );
    // The access chain over a lake on S3 is the folder lake's: every login linked but one.
    assert_eq!(
        service
            .scalar("SELECT count(*) FROM access_chain WHERE link = 'caller_identity'")
            .await as usize,
        manifest.mongodb_aws_sessions - manifest.unattributed_sessions
    );
    assert_eq!(
        service
            .scalar("SELECT count(*) FROM alerts WHERE rule_id = 'unattributed_db_session'")
            .await as usize,
        manifest.unattributed_sessions
    );
    service.stop().await;
    // The files are plain Hive-partitioned Parquet objects under the prefix.
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("audit/cloudtrail/date=")
        .send()
        .await
        .expect("list");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(!keys.is_empty());
    assert!(
        keys.iter()
            .all(|k| k.contains("/hour=") && k.ends_with(".parquet")),
        "{keys:?}"
    );
    // Nothing was written locally but state.
    assert!(!dir.path().join("unused").exists());
}

/// Lake writes refused for a while: the commits that needed them fail, with the group that
/// filled meanwhile, and later scans redo both; the lake ends with every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_refused_by_the_lake_store_are_redone_without_loss_or_doubling() {
    let Some(endpoint) = aws::seaweed() else {
        return;
    };
    let bucket = aws::unique("refusing");
    aws::create_bucket(&aws::s3(&aws::sdk(&endpoint).await), &bucket).await;
    let proxy = Arc::new(FaultProxy {
        brownout_until: None,
        brownout_share: 0.0,
        upstream: endpoint.clone(),
        slow_down: u64::MAX,
        stall: u64::MAX,
        stall_for: Duration::ZERO,
        reads: AtomicU64::new(0),
        faults: AtomicU64::new(0),
        refused_puts: 3..7,
        puts: AtomicU64::new(0),
    });
    let addr = start_proxy(proxy.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (manifest, mut config) = sample_folder_config(dir.path());
    let mut lake_settings = settings(&format!("http://{addr}"));
    lake_settings.max_attempts = 1;
    config.lake = LakeSpec::parse(&format!("s3://{bucket}/lake"), lake_settings).expect("lake");
    config.state_dir = dir.path().join("state");
    config.settle = Duration::ZERO;
    // Many small groups, each committing while the next one fills.
    config.commit_rows = 500;
    let service = Running::start(config).await;
    let status = service.wait_idle().await;
    assert_eq!(
        proxy.faults.load(Ordering::Relaxed),
        4,
        "four writes were refused"
    );
    assert_eq!(status["lake"]["objects_failed"], 0, "{status}");
    assert!(
        status["process"]["object_errors"].as_u64() > Some(0),
        "commits failed and were redone: {status}"
    );
    for (sql, expected) in common::lake_counts(&manifest) {
        assert_eq!(service.scalar(sql).await as usize, expected, "{sql}");
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_on_one_queue_and_lake_make_the_lake_of_one() {
    let (Some(moto), Some(seaweed)) = (aws::moto(), aws::seaweed()) else {
        return;
    };
    let (s3, bucket, queue_url) = bucket_and_queue(&moto, "workers", true).await;
    let lake_bucket = aws::unique("workers-lake");
    aws::create_bucket(&aws::s3(&aws::sdk(&seaweed).await), &lake_bucket).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let worker = |n: usize| {
        let mut spec = s3_spec(&bucket, settings(&moto));
        spec.queue_url = Some(queue_url.clone());
        spec.reconcile_interval = Duration::from_secs(2);
        let mut config = config(&dir.path().join("unused"), vec![s3_source(spec)]);
        config.lake =
            LakeSpec::parse(&format!("s3://{lake_bucket}/lake"), settings(&seaweed)).expect("lake");
        config.state_dir = dir.path().join(format!("state-{n}"));
        config.shared_lake = true;
        config.concurrency = 2;
        config
    };
    let first = Running::start(worker(1)).await;
    let second = Running::start(worker(2)).await;

    let data = dir.path().join("data");
    let manifest = sample::generate(&data, &SampleOptions::default()).expect("sample");
    aws::upload_dir(&s3, &bucket, "", &data).await;

    let expected = common::lake_counts(&manifest);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let mut all = true;
        for (sql, n) in expected {
            all &= first.scalar(sql).await as usize == n;
        }
        if all {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the two workers never completed the lake"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Both took part, and more reconciliation rounds change nothing.
    let one = first.get("/v1/status").await["process"]["objects_ingested"].as_u64();
    let two = second.get("/v1/status").await["process"]["objects_ingested"].as_u64();
    assert!(one > Some(0) && two > Some(0), "{one:?} {two:?}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (sql, n) in expected {
        assert_eq!(second.scalar(sql).await as usize, n, "{sql}");
    }
    eprintln!("objects ingested by worker 1: {one:?}, worker 2: {two:?}");
    first.stop().await;
    second.stop().await;
}

/// Runs the real binary with the AWS endpoint of the local server in the environment.
async fn auditlake(endpoint: &str, args: Vec<String>) -> (bool, String, String) {
    let endpoint = endpoint.to_owned();
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(common::binary())
            .args(&args)
            .env("RUST_LOG", "warn")
            .env("AWS_ENDPOINT_URL", endpoint)
            .output()
            .expect("run auditlake");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .expect("command task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_ingest_reads_s3_and_cloudwatch_within_a_time_window() {
    let Some(moto) = aws::moto() else { return };
    let sdk = aws::sdk(&moto).await;
    let s3 = aws::s3(&sdk);
    let bucket = aws::unique("oneshot");
    aws::create_bucket(&s3, &bucket).await;
    for (day, tag) in [("20", "a"), ("21", "b"), ("22", "c")] {
        let key = format!(
            "{TRAIL}/2026/11/{day}/111122223333_CloudTrail_us-east-1_202611{day}T1000Z_{tag}.json.gz"
        );
        let time = format!("2026-11-{day}T09:58:00Z");
        aws::put(&s3, &bucket, &key, cloudtrail_object(&ids(tag, 4), &time)).await;
    }
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    let group = aws::unique("oneshot-group");
    logs.create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .expect("group");
    logs.create_log_stream()
        .log_group_name(&group)
        .log_stream_name("s")
        .send()
        .await
        .expect("stream");
    let now = chrono::Utc::now().timestamp_millis();
    let hour = 3_600_000;
    let events: Vec<(i64, String)> = [
        ("cw-old", now - 3 * hour),
        ("cw-mid", now - 2 * hour),
        ("cw-new", now - hour),
    ]
    .iter()
    .map(|(id, t)| (*t, record(id, "2026-11-22T10:00:00Z").to_string()))
    .collect();
    put_log_events(&logs, &group, "s", &events).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake").display().to_string();
    let (ok, stdout, stderr) = auditlake(
        &moto,
        vec![
            "ingest".into(),
            "--lake".into(),
            lake.clone(),
            "--since".into(),
            "2026-11-21".into(),
            "--until".into(),
            "2026-11-22".into(),
            format!("s3://{bucket}"),
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("ingested 1 objects"), "{stdout}");

    let since = chrono::DateTime::from_timestamp_millis(now - 150 * 60_000)
        .expect("time")
        .to_rfc3339();
    let until = chrono::DateTime::from_timestamp_millis(now - 30 * 60_000)
        .expect("time")
        .to_rfc3339();
    let (ok, stdout, stderr) = auditlake(
        &moto,
        vec![
            "ingest".into(),
            "--lake".into(),
            lake.clone(),
            "--since".into(),
            since,
            "--until".into(),
            until,
            format!("cloudwatch://{group}"),
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("and 2 log events"), "{stdout}");

    let (ok, stdout, stderr) = auditlake(
        &moto,
        vec![
            "sql".into(),
            "--lake".into(),
            lake,
            "--format".into(),
            "csv".into(),
            "SELECT event_id FROM cloudtrail ORDER BY event_id".into(),
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        "event_id\nb-00000\nb-00001\nb-00002\nb-00003\ncw-mid\ncw-new\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_role_is_assumed_through_sts_before_reading() {
    let Some(moto) = aws::moto() else { return };
    let s3 = aws::s3(&aws::sdk(&moto).await);
    let bucket = aws::unique("role");
    aws::create_bucket(&s3, &bucket).await;
    let key =
        format!("{TRAIL}/2026/11/22/111122223333_CloudTrail_us-east-1_20261122T1300Z_role.json.gz");
    aws::put(
        &s3,
        &bucket,
        &key,
        cloudtrail_object(&ids("role", 2), "2026-11-22T13:00:00Z"),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut aws_settings = settings(&moto);
    aws_settings.role_arn = Some("arn:aws:iam::123456789012:role/auditlake-reader".into());
    aws_settings.external_id = Some("audit-2026".into());
    let config = config(
        &dir.path().join("lake"),
        vec![s3_source(s3_spec(&bucket, aws_settings.clone()))],
    );
    // The provider chain now ends in STS AssumeRole (moto issues the session).
    let sdk = aws_settings.load().await;
    let credentials = aws_credential_types::provider::ProvideCredentials::provide_credentials(
        &sdk.credentials_provider().expect("provider"),
    )
    .await
    .expect("assumed role credentials");
    assert!(credentials.session_token().is_some());
    assert_ne!(
        credentials.access_key_id(),
        std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default()
    );
    let (ingestion, report) = open_and_scan(&config).await;
    assert_eq!((report.processed, report.failed), (1, 0));
    assert_eq!(ingestion.pipeline.stats().snapshot().cloudtrail_rows, 2);
}

/// The distinct CloudTrail event ids of the log files below `folder`.
fn distinct_events_below(folder: &std::path::Path) -> usize {
    use std::io::Read as _;
    let mut ids = std::collections::HashSet::new();
    for entry in walkdir::WalkDir::new(folder) {
        let path = entry.expect("walk").into_path();
        if !path.to_string_lossy().contains("/CloudTrail/") || !path.is_file() {
            continue;
        }
        let mut json = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&path).expect("open"))
            .read_to_string(&mut json)
            .expect("gunzip");
        let log: serde_json::Value = serde_json::from_str(&json).expect("json");
        for record in log["Records"].as_array().expect("records") {
            ids.insert(record["eventID"].as_str().expect("id").to_owned());
        }
    }
    ids.len()
}

/// `auditlake sql --lake LAKE QUERY` answering one integer.
async fn lake_count(lake: &std::path::Path, sql: &str) -> i64 {
    let (ok, out, err) = auditlake(
        "http://127.0.0.1:9",
        vec![
            "sql".into(),
            "--lake".into(),
            lake.display().to_string(),
            "--format".into(),
            "csv".into(),
            sql.into(),
        ],
    )
    .await;
    assert!(ok, "{sql}: {err}");
    out.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("{sql}: {out}"))
}

/// An S3 source whose prefix lies inside the CloudTrail layout (`AWSLogs/`, an account, a
/// region, a day) ingests what the bucket's root gives for that part; one that recognises
/// nothing says so and fails; and keys once skipped as unrecognised are ingested when a source
/// recognises them later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_prefixes_at_every_depth_of_the_layout_find_the_logs_and_none_found_is_an_error() {
    let Some(moto) = aws::moto() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let (s3, bucket, manifest) = bucket_with_sample(&moto, "prefixes", dir.path()).await;
    aws::put(&s3, &bucket, "junk/readme.txt", b"not a log".to_vec()).await;
    aws::put(&s3, &bucket, "junk/data/x.bin", b"not a log".to_vec()).await;
    let ingest = |lake: std::path::PathBuf, source: String, config: Option<std::path::PathBuf>| {
        let mut args = vec![
            "ingest".to_owned(),
            "--lake".into(),
            lake.display().to_string(),
        ];
        if let Some(config) = config {
            args.extend(["--config".to_owned(), config.display().to_string()]);
        }
        args.push(source);
        auditlake(&moto, args)
    };

    let root = dir.path().join("root-lake");
    let (ok, _, err) = ingest(root.clone(), format!("s3://{bucket}/"), None).await;
    assert!(ok, "{err}");
    assert_eq!(
        lake_count(&root, "SELECT count(*) FROM cloudtrail").await as usize,
        manifest.cloudtrail_rows
    );
    for (n, prefix) in [
        "cloudtrail/",
        "cloudtrail/AWSLogs/",
        "cloudtrail/AWSLogs/111122223333/",
        "cloudtrail/AWSLogs/111122223333/CloudTrail/us-east-1/",
        "cloudtrail/AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/02/",
    ]
    .into_iter()
    .enumerate()
    {
        let expected = distinct_events_below(&dir.path().join("data").join(prefix));
        assert!(expected > 0, "{prefix}");
        let lake = dir.path().join(format!("lake-{n}"));
        let (ok, out, err) = ingest(lake.clone(), format!("s3://{bucket}/{prefix}"), None).await;
        assert!(ok, "{prefix}: {err}");
        assert_eq!(
            lake_count(&lake, "SELECT count(*) FROM cloudtrail").await as usize,
            expected,
            "{prefix}: {out}"
        );
    }

    // A prefix beside the logs: said loudly, and a failure.
    let lake = dir.path().join("junk-lake");
    let (ok, _, err) = ingest(lake, format!("s3://{bucket}/junk/"), None).await;
    assert!(!ok, "a source that recognises nothing fails");
    assert!(
        err.contains("matches a known layout") && err.contains("junk/"),
        "{err}"
    );

    // Keys skipped as unrecognised by one source are ingested when another recognises them.
    let lake = dir.path().join("again-lake");
    let config = dir.path().join("atlas-only.toml");
    std::fs::write(
        &config,
        format!(
            "[[source]]\ntype = \"s3\"\nbucket = \"{bucket}\"\nkind = \"atlas_audit\"\nendpoint_url = \"{moto}\"\nregion = \"us-east-1\"\n"
        ),
    )
    .expect("config");
    let (ok, _, err) = ingest(lake.clone(), format!("s3://{bucket}/"), Some(config)).await;
    assert!(ok, "{err}");
    assert_eq!(
        lake_count(&lake, "SELECT count(*) FROM cloudtrail").await,
        0
    );
    let (ok, _, err) = ingest(lake.clone(), format!("s3://{bucket}/"), None).await;
    assert!(ok, "{err}");
    assert_eq!(
        lake_count(&lake, "SELECT count(*) FROM cloudtrail").await as usize,
        manifest.cloudtrail_rows
    );
}

/// Objects that arrive by notification under a source whose prefix lies inside the CloudTrail
/// layout are ingested, at every depth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notified_objects_under_a_prefix_inside_the_layout_are_ingested() {
    let Some(moto) = aws::moto() else { return };
    for (n, prefix) in [
        "AWSLogs/".to_owned(),
        "AWSLogs/111122223333/".to_owned(),
        format!("{TRAIL}/"),
        format!("{TRAIL}/2026/11/22/"),
    ]
    .into_iter()
    .enumerate()
    {
        let (s3, bucket, queue_url) = bucket_and_queue(&moto, "notified-prefix", true).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = s3_spec(&bucket, settings(&moto));
        spec.prefix = prefix.clone();
        spec.queue_url = Some(queue_url);
        let service = Running::start(config(&dir.path().join("lake"), vec![s3_source(spec)])).await;
        service.wait_idle().await;
        let key = format!(
            "{TRAIL}/2026/11/22/111122223333_CloudTrail_us-east-1_20261122T1000Z_prefix{n}.json.gz"
        );
        aws::put(
            &s3,
            &bucket,
            &key,
            cloudtrail_object(&ids(&format!("pfx{n}"), 5), "2026-11-22T09:59:00Z"),
        )
        .await;
        wait_for_count(
            &service,
            "SELECT count(*) FROM cloudtrail",
            5,
            Duration::from_secs(30),
        )
        .await;
        let status = service.get("/v1/status").await;
        assert_eq!(
            status["process"]["scans"].as_u64(),
            Some(1),
            "{prefix}: by notification, {status}"
        );
        service.stop().await;
    }
}
