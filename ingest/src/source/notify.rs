//! S3 event notifications from SQS: the low-latency path to new objects.
//!
//! A [`QueueSource`] long-polls one queue, reads each message as S3 event records (sent
//! directly, wrapped in an SNS notification, or as an EventBridge `Object Created` event),
//! lists the created objects as the [`S3Source`] that holds them names them (and classifies
//! and fetches them through it), and deletes a message only once the ledger has recorded
//! every object it names ([`LogSource::acknowledge`]). A message whose objects
//! failed stays in the queue and comes back after its visibility timeout; several workers can
//! share the queue, since SQS gives each message to one of them at a time. `s3:TestEvent`
//! messages, removals and objects of other buckets are counted and deleted; so are messages that
//! are not S3 events at all, after being logged whole. The periodic listing of each source
//! catches anything a lost notification missed; both paths meet in the same ledger.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use serde::Deserialize;

use super::layout::ObjectKind;
use super::s3::S3Source;
use super::{Listing, LogSource, SourceError, SourceObject};
use crate::aws::AwsSettings;

/// An object named by a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifiedObject {
    pub bucket: String,
    /// Decoded key.
    pub key: String,
    pub size: u64,
    /// ETag without quotes (may be empty).
    pub etag: String,
    /// Event time, microseconds.
    pub time_micros: i64,
}

/// What one message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// Objects created.
    Created(Vec<NotifiedObject>),
    /// S3's test message, sent when notifications are set up.
    Test,
    /// Well-formed but not about new objects (removals, other events).
    Other,
}

/// A message that is not an S3 notification.
#[derive(Debug, thiserror::Error)]
#[error("not an S3 event notification: {0}")]
pub struct NotANotification(String);

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "Records")]
    records: Option<Vec<Record>>,
    #[serde(rename = "Event")]
    event: Option<String>,
    /// SNS envelope.
    #[serde(rename = "Type")]
    sns_type: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
    /// EventBridge.
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
    detail: Option<EventBridgeDetail>,
    time: Option<String>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventName")]
    event_name: Option<String>,
    #[serde(rename = "eventTime")]
    event_time: Option<String>,
    s3: Option<RecordS3>,
}

#[derive(Deserialize)]
struct RecordS3 {
    bucket: Named,
    object: RecordObject,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct RecordObject {
    key: String,
    size: Option<u64>,
    #[serde(rename = "eTag")]
    e_tag: Option<String>,
}

#[derive(Deserialize)]
struct EventBridgeDetail {
    bucket: Named,
    object: EventBridgeObject,
}

#[derive(Deserialize)]
struct EventBridgeObject {
    key: String,
    size: Option<u64>,
    etag: Option<String>,
}

fn micros(text: Option<&str>) -> i64 {
    text.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(0, |t| t.timestamp_micros())
}

/// Reads one message body; see the module documentation for the accepted shapes.
pub fn parse(body: &str) -> Result<Notification, NotANotification> {
    let parsed: Body = serde_json::from_str(body).map_err(|e| NotANotification(format!("{e}")))?;
    if parsed.sns_type.as_deref() == Some("Notification") {
        let inner = parsed
            .message
            .ok_or_else(|| NotANotification("SNS notification without a Message".into()))?;
        return parse(&inner);
    }
    if parsed.event.as_deref() == Some("s3:TestEvent") {
        return Ok(Notification::Test);
    }
    if let (Some(kind), Some(detail)) = (&parsed.detail_type, parsed.detail) {
        if kind != "Object Created" {
            return Ok(Notification::Other);
        }
        // EventBridge keys are not URL-encoded.
        return Ok(Notification::Created(vec![NotifiedObject {
            bucket: detail.bucket.name,
            key: detail.object.key,
            size: detail.object.size.unwrap_or_default(),
            etag: detail.object.etag.unwrap_or_default(),
            time_micros: micros(parsed.time.as_deref()),
        }]));
    }
    let Some(records) = parsed.records else {
        return Err(NotANotification("no Records, Event or detail".into()));
    };
    let mut created = Vec::new();
    for record in records {
        let (Some(name), Some(s3)) = (record.event_name, record.s3) else {
            return Err(NotANotification("a record without eventName or s3".into()));
        };
        if !name.starts_with("ObjectCreated:") {
            continue;
        }
        created.push(NotifiedObject {
            bucket: s3.bucket.name,
            key: decode_key(&s3.object.key),
            size: s3.object.size.unwrap_or_default(),
            etag: s3.object.e_tag.unwrap_or_default(),
            time_micros: micros(record.event_time.as_deref()),
        });
    }
    if created.is_empty() {
        Ok(Notification::Other)
    } else {
        Ok(Notification::Created(created))
    }
}

/// S3 notification keys are form-urlencoded (`+` is a space, `%2F` a slash).
fn decode_key(key: &str) -> String {
    form_urlencoded::parse(format!("k={key}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| key.to_owned())
}

/// One queue of notifications for the S3 sources that name it; see the module documentation.
#[derive(Debug)]
pub struct QueueSource {
    name: String,
    client: Client,
    queue_url: String,
    sources: Vec<Arc<S3Source>>,
    wait: Duration,
    /// Messages of the last listing, to delete once their objects are recorded.
    received: Mutex<Vec<Received>>,
}

/// A message received, and the URIs of the objects it names that a source holds.
#[derive(Debug)]
struct Received {
    id: String,
    receipt: String,
    uris: Vec<String>,
}

impl QueueSource {
    /// A source of `queue_url`'s notifications for `sources` (those whose `queue_url` it is),
    /// each receive waiting up to `wait` for messages.
    pub async fn connect(
        queue_url: String,
        aws: &AwsSettings,
        sources: Vec<Arc<S3Source>>,
        wait: Duration,
    ) -> Self {
        let config = aws.load().await;
        QueueSource {
            name: format!("sqs:{queue_url}"),
            client: Client::from_conf(
                aws_sdk_sqs::config::Builder::from(&config)
                    .retry_partition(crate::aws::without_retry_quota("auditlake-sqs"))
                    .build(),
            ),
            queue_url,
            sources,
            wait,
            received: Mutex::default(),
        }
    }

    fn queue_error(&self, action: &str, message: String) -> SourceError {
        SourceError::Queue {
            location: format!("{action} {}", self.queue_url),
            message,
        }
    }

    /// The source that holds `object`: the first whose bucket and prefix it is under.
    fn holder(&self, object: &SourceObject) -> Option<&Arc<S3Source>> {
        let (bucket, key) = object
            .uri
            .strip_prefix("s3://")
            .and_then(|rest| rest.split_once('/'))?;
        self.sources.iter().find(|s| s.holds(bucket, key))
    }

    /// Reads one message into `listing`: its objects that a source holds, or its counts.
    fn read(&self, id: &str, body: &str, listing: &mut Listing) -> Vec<String> {
        listing.counts.notifications += 1;
        let created = match parse(body) {
            Ok(Notification::Created(objects)) => objects,
            Ok(Notification::Test | Notification::Other) => {
                listing.counts.notifications_ignored += 1;
                return Vec::new();
            }
            Err(e) => {
                listing.counts.notifications_malformed += 1;
                tracing::warn!(queue = %self.queue_url, message_id = id, error = %e, body, "notification is not an S3 event; deleted");
                return Vec::new();
            }
        };
        let mut uris = Vec::new();
        for notified in &created {
            let Some(source) = self
                .sources
                .iter()
                .find(|s| s.holds(&notified.bucket, &notified.key))
            else {
                continue;
            };
            let object = source.object(
                &notified.key,
                &notified.etag,
                notified.size,
                notified.time_micros,
            );
            uris.push(object.uri.clone());
            if !listing.objects.iter().any(|o| o.uri == object.uri) {
                listing.objects.push(object);
            }
        }
        if uris.is_empty() {
            listing.counts.notifications_ignored += 1;
            tracing::debug!(queue = %self.queue_url, message_id = id, "notification for objects no source holds");
        }
        uris
    }
}

#[async_trait::async_trait]
impl LogSource for QueueSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn receives(&self) -> bool {
        true
    }

    fn classify(&self, object: &SourceObject) -> ObjectKind {
        self.holder(object)
            .map_or(ObjectKind::Unrecognized, |s| s.classify_key(&object.key))
    }

    /// Receives up to ten messages, waiting up to the configured time for the first.
    async fn list(&self) -> Result<Listing, SourceError> {
        let wait_seconds = i32::try_from(self.wait.as_secs().clamp(1, 20)).unwrap_or(20);
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .send()
            .await
            .map_err(|e| {
                self.queue_error(
                    "receiving notifications from",
                    aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
                )
            })?;
        let mut listing = Listing {
            acknowledge: true,
            ..Listing::default()
        };
        let mut received = Vec::new();
        for message in output.messages.unwrap_or_default() {
            let (Some(id), Some(receipt)) = (message.message_id, message.receipt_handle) else {
                continue;
            };
            let uris = self.read(
                &id,
                message.body.as_deref().unwrap_or_default(),
                &mut listing,
            );
            received.push(Received { id, receipt, uris });
        }
        *self.received.lock().unwrap_or_else(|p| p.into_inner()) = received;
        Ok(listing)
    }

    async fn fetch(&self, object: &SourceObject) -> Result<Vec<u8>, SourceError> {
        match self.holder(object) {
            Some(source) => source.fetch(object).await,
            None => Err(SourceError::Gone {
                uri: object.uri.clone(),
            }),
        }
    }

    /// Deletes the messages whose objects are all recorded; the others come back after their
    /// visibility timeout and find what was recorded meanwhile.
    async fn acknowledge(&self, recorded: &HashSet<String>) -> Result<(), SourceError> {
        let received =
            std::mem::take(&mut *self.received.lock().unwrap_or_else(|p| p.into_inner()));
        let entries: Vec<DeleteMessageBatchRequestEntry> = received
            .into_iter()
            .filter(|m| m.uris.iter().all(|u| recorded.contains(u)))
            .filter_map(|m| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(m.id)
                    .receipt_handle(m.receipt)
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        let output = self
            .client
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                self.queue_error(
                    "deleting notifications from",
                    format!(
                        "{}; they will come back and find their objects recorded",
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    ),
                )
            })?;
        if output.failed.is_empty() {
            Ok(())
        } else {
            Err(self.queue_error(
                "deleting notifications from",
                format!(
                    "{} were not deleted; they will come back and find their objects recorded",
                    output.failed.len()
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-11-22T09:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"trail"},"object":{"key":"AWSLogs/1/a+b%2Cc.json.gz","size":12,"eTag":"abc","sequencer":"0A"}}}]}"#;

    #[test]
    fn s3_records_have_decoded_keys() {
        let Ok(Notification::Created(objects)) = parse(RECORD) else {
            panic!("created");
        };
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].bucket, "trail");
        assert_eq!(objects[0].key, "AWSLogs/1/a b,c.json.gz");
        assert_eq!(objects[0].etag, "abc");
        assert_eq!(objects[0].size, 12);
        assert!(objects[0].time_micros > 0);
    }

    #[test]
    fn sns_wrapped_records_are_unwrapped() {
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": RECORD})
            .to_string();
        assert!(
            matches!(parse(&sns), Ok(Notification::Created(o)) if o[0].key == "AWSLogs/1/a b,c.json.gz")
        );
    }

    #[test]
    fn test_events_removals_and_eventbridge() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-22T09:00:00Z","Bucket":"trail","RequestId":"r","HostId":"h"}"#;
        assert_eq!(parse(test).ok(), Some(Notification::Test));
        let removed = RECORD.replace("ObjectCreated:Put", "ObjectRemoved:Delete");
        assert_eq!(parse(&removed).ok(), Some(Notification::Other));
        let bridge = r#"{"version":"0","detail-type":"Object Created","source":"aws.s3","time":"2026-11-22T09:00:00Z","detail":{"bucket":{"name":"trail"},"object":{"key":"a b.json.gz","size":3,"etag":"e"}}}"#;
        assert!(matches!(parse(bridge), Ok(Notification::Created(o)) if o[0].key == "a b.json.gz"));
    }

    #[test]
    fn other_messages_are_errors() {
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"hello":"world"}"#).is_err());
        assert!(parse(r#"{"Records":[{"foo":1}]}"#).is_err());
    }
}
