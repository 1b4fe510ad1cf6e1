//! CloudTrail events from CloudWatch Logs, read with `FilterLogEvents`.
//!
//! Each log group has a cursor in the ledger: the newest event timestamp ingested, the ids of the
//! events at that timestamp, and a read sequence number. A read asks for events from
//! (timestamp − `overlap`) up to now (or `until`), follows `nextToken` for as long as it is
//! present (pages may be empty while more remain), and leaves out the events it has already
//! ingested: those at the cursor's timestamp and, within this process, those of the overlap. The
//! overlap catches events that become visible late. What is left, at most `max_events`, becomes
//! one *read*: the messages (one CloudTrail record each) joined as lines and ingested as the
//! object `cloudwatch://<group>/<sequence>`, with the advanced cursor committed in the same ledger
//! transaction as its rows. A crash before that commit repeats the read under the same sequence
//! number, so its lake files are replaced, never doubled. After a restart the overlap is read
//! again; its events are already claimed in the ledger by `eventID` (as are records that came
//! through S3), so they are dropped, not duplicated.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_cloudwatchlogs::Client;
use serde::{Deserialize, Serialize};

use super::layout::ObjectKind;
use super::{Listing, LogSource, Positions, ReadCounts, SourceError, SourceObject};
use crate::aws::AwsSettings;
use crate::ledger::Ledger;

/// A validated CloudWatch Logs source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudWatchSpec {
    pub log_groups: Vec<String>,
    pub aws: AwsSettings,
    /// How far back each read starts before the cursor.
    pub overlap: Duration,
    /// Where a group without a cursor starts, before now (unless `since`).
    pub initial_look_back: Duration,
    /// Most events in one read.
    pub max_events: usize,
    /// Events per `FilterLogEvents` page; default the service's (up to 10,000).
    pub page_size: Option<i32>,
    pub since_micros: Option<i64>,
    pub until_micros: Option<i64>,
}

/// The persisted position in one log group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCursor {
    /// Newest event timestamp ingested, milliseconds.
    pub timestamp_ms: i64,
    /// Ids of the events ingested at `timestamp_ms`.
    pub ids_at_timestamp: Vec<String>,
    /// Sequence number of the next read.
    pub next_read: u64,
}

/// The CloudWatch Logs source; see the module documentation.
#[derive(Debug)]
pub struct CloudWatchSource {
    name: String,
    spec: CloudWatchSpec,
    client: Client,
    ledger: Arc<Ledger>,
    /// Per group: ids read in the overlap by this process → their timestamp.
    recent: Mutex<HashMap<String, HashMap<String, i64>>>,
    /// The group the next listing reads, in this round over the groups.
    turn: Mutex<usize>,
    /// The read of the last listing, until it is fetched and acknowledged.
    read: Mutex<Option<Read>>,
}

/// One read: the object it is ingested as, its bytes until they are fetched, and its events.
#[derive(Debug)]
struct Read {
    group: String,
    uri: String,
    bytes: Option<Vec<u8>>,
    events: Vec<Event>,
    newest: i64,
}

#[derive(Debug)]
struct Event {
    timestamp: i64,
    id: String,
    message: String,
}

impl CloudWatchSource {
    pub async fn connect(spec: CloudWatchSpec, ledger: Arc<Ledger>) -> Self {
        let config = spec.aws.load().await;
        CloudWatchSource {
            name: format!("cloudwatch://{}", spec.log_groups.join(",")),
            turn: Mutex::new(0),
            read: Mutex::default(),
            client: Client::from_conf(
                aws_sdk_cloudwatchlogs::config::Builder::from(&config)
                    .retry_partition(crate::aws::without_retry_quota("auditlake-logs"))
                    .build(),
            ),
            spec,
            ledger,
            recent: Mutex::default(),
        }
    }

    pub fn spec(&self) -> &CloudWatchSpec {
        &self.spec
    }

    fn cursor_name(group: &str) -> String {
        format!("cloudwatch://{group}")
    }

    fn remote(group: &str, message: String) -> SourceError {
        SourceError::Remote {
            location: format!("reading log group {group}"),
            message,
        }
    }

    /// The saved cursor of `group`, or where a new group starts.
    pub fn cursor(&self, group: &str) -> Result<GroupCursor, SourceError> {
        let saved = self
            .ledger
            .cursor(&Self::cursor_name(group))
            .map_err(|e| Self::remote(group, e.to_string()))?;
        if let Some(cursor) = saved.and_then(|b| serde_json::from_slice(&b).ok()) {
            return Ok(cursor);
        }
        let start = match self.spec.since_micros {
            Some(since) => since / 1000,
            None => {
                chrono::Utc::now().timestamp_millis()
                    - i64::try_from(self.spec.initial_look_back.as_millis()).unwrap_or(0)
            }
        };
        // The cursor timestamp is "ingested up to"; start one overlap later so the first read
        // begins exactly at `start`.
        Ok(GroupCursor {
            timestamp_ms: start + self.overlap_ms(),
            ..GroupCursor::default()
        })
    }

    fn overlap_ms(&self) -> i64 {
        i64::try_from(self.spec.overlap.as_millis()).unwrap_or(0)
    }

    /// Reads `group` from its cursor: the listing of its one read, and the read, or `None`
    /// when no new event is there.
    async fn read_group(&self, group: &str) -> Result<Option<(Listing, Read)>, SourceError> {
        let cursor = self.cursor(group)?;
        let floor = self.spec.since_micros.map_or(0, |s| s / 1000);
        let start = (cursor.timestamp_ms - self.overlap_ms()).max(floor);
        let now = chrono::Utc::now().timestamp_millis();
        let end = self.spec.until_micros.map_or(now, |u| (u / 1000).min(now));
        if start >= end {
            return Ok(None);
        }
        let (events, more) = self.read(group, start, end, &cursor).await?;
        if events.is_empty() {
            return Ok(None);
        }
        let newest = events.iter().map(|e| e.timestamp).max().unwrap_or(start);
        let mut ids_at_newest: Vec<String> = events
            .iter()
            .filter(|e| e.timestamp == newest)
            .map(|e| e.id.clone())
            .collect();
        if newest == cursor.timestamp_ms {
            ids_at_newest.extend(cursor.ids_at_timestamp.iter().cloned());
        }
        let next = GroupCursor {
            timestamp_ms: newest.max(cursor.timestamp_ms),
            ids_at_timestamp: ids_at_newest,
            next_read: cursor.next_read + 1,
        };
        let mut bytes = Vec::with_capacity(events.iter().map(|e| e.message.len() + 1).sum());
        for event in &events {
            bytes.extend_from_slice(event.message.as_bytes());
            bytes.push(b'\n');
        }
        let first = events.iter().map(|e| e.timestamp).min().unwrap_or(start);
        let object = SourceObject {
            uri: format!("cloudwatch://{group}/{:012}", cursor.next_read),
            key: group.to_owned(),
            version: format!("{first}-{newest}-{}", events.len()),
            size: bytes.len() as u64,
            modified_micros: newest * 1000,
        };
        let saved = serde_json::to_vec(&next).unwrap_or_default();
        let listing = Listing {
            objects: vec![object.clone()],
            positions: Positions::WithObject(vec![(Self::cursor_name(group), saved)]),
            more,
            acknowledge: true,
            counts: ReadCounts {
                log_events: events.len() as u64,
                ..ReadCounts::default()
            },
            ..Listing::default()
        };
        let read = Read {
            group: group.to_owned(),
            uri: object.uri,
            bytes: Some(bytes),
            events,
            newest,
        };
        Ok(Some((listing, read)))
    }

    /// Events of `group` in [start, end) not yet ingested, oldest first; true if cut short.
    async fn read(
        &self,
        group: &str,
        start: i64,
        end: i64,
        cursor: &GroupCursor,
    ) -> Result<(Vec<Event>, bool), SourceError> {
        let recent = {
            let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.get(group).cloned().unwrap_or_default()
        };
        let mut events = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .filter_log_events()
                .log_group_name(group)
                .start_time(start)
                .end_time(end)
                .set_limit(self.spec.page_size)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    Self::remote(
                        group,
                        aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&e).to_string(),
                    )
                })?;
            for e in page.events() {
                let (Some(id), Some(timestamp), Some(message)) =
                    (e.event_id(), e.timestamp(), e.message())
                else {
                    continue;
                };
                let seen = (timestamp == cursor.timestamp_ms
                    && cursor.ids_at_timestamp.iter().any(|i| i == id))
                    || recent.contains_key(id);
                if !seen {
                    events.push(Event {
                        timestamp,
                        id: id.to_owned(),
                        message: message.to_owned(),
                    });
                }
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
            if events.len() >= self.spec.max_events {
                // Cut at a whole timestamp so that the cursor's id list stays complete.
                events.sort_by(|a, b| (a.timestamp, &a.id).cmp(&(b.timestamp, &b.id)));
                let last = events[self.spec.max_events - 1].timestamp;
                let keep = events.partition_point(|e| e.timestamp <= last);
                events.truncate(keep);
                return Ok((events, true));
            }
        }
        events.sort_by(|a, b| (a.timestamp, &a.id).cmp(&(b.timestamp, &b.id)));
        Ok((events, false))
    }

    fn remember(&self, group: &str, events: &[Event], newest: i64) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let seen = recent.entry(group.to_owned()).or_default();
        for e in events {
            seen.insert(e.id.clone(), e.timestamp);
        }
        let horizon = newest - self.overlap_ms();
        seen.retain(|_, t| *t >= horizon);
    }
}

#[async_trait::async_trait]
impl LogSource for CloudWatchSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn classify(&self, _object: &SourceObject) -> ObjectKind {
        ObjectKind::CloudTrailLog
    }

    /// The next read of the round over the groups: a group's events from its cursor, as one
    /// object committed with the advanced cursor. `more` while the round goes on (a group
    /// cut short at `max_events` is read again next); the call after its last group ends
    /// the round with nothing.
    async fn list(&self) -> Result<Listing, SourceError> {
        loop {
            let turn = *self.turn.lock().unwrap_or_else(|p| p.into_inner());
            let Some(group) = self.spec.log_groups.get(turn) else {
                *self.turn.lock().unwrap_or_else(|p| p.into_inner()) = 0;
                return Ok(Listing::default());
            };
            let read = self.read_group(group).await;
            let next_turn = match &read {
                Ok(Some((listing, _))) if listing.more => turn,
                // A group that failed to read is tried again next round.
                _ => turn + 1,
            };
            *self.turn.lock().unwrap_or_else(|p| p.into_inner()) = next_turn;
            if let Some((mut listing, read)) = read? {
                listing.more = true;
                *self.read.lock().unwrap_or_else(|p| p.into_inner()) = Some(read);
                return Ok(listing);
            }
        }
    }

    async fn fetch(&self, object: &SourceObject) -> Result<Vec<u8>, SourceError> {
        let mut read = self.read.lock().unwrap_or_else(|p| p.into_inner());
        read.as_mut()
            .filter(|r| r.uri == object.uri)
            .and_then(|r| r.bytes.take())
            .ok_or_else(|| SourceError::Gone {
                uri: object.uri.clone(),
            })
    }

    /// Remembers the events of a read that was ingested, so that the overlap of the next read
    /// leaves them out.
    async fn acknowledge(&self, recorded: &HashSet<String>) -> Result<(), SourceError> {
        let read = self.read.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(read) = read.filter(|r| recorded.contains(&r.uri)) {
            self.remember(&read.group, &read.events, read.newest);
        }
        Ok(())
    }
}
