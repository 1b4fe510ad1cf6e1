//! An S3 bucket (and prefix) as a source, listed without rescanning history.
//!
//! A listing walks the folders below the prefix with `/` as delimiter until it reaches *dated
//! folders*: folders whose children are `YYYY/` (CloudTrail), `YYYY-MM-DD/` (Atlas, legacy) or
//! `<epoch seconds>-…` files (Atlas, current). Below each dated folder it lists recursively with
//! `StartAfter` = (newest key time seen there − `look_back`), so each cycle reads only the recent
//! end of history plus a margin for late objects; the first listing (or `since`) sets where
//! history starts. The newest time per dated folder is a cursor in the ledger, saved by the
//! pipeline only after every listed object is recorded. Files outside dated folders (Atlas's
//! setup test object) are listed every time; there are few. `CloudTrail-Digest/` and
//! `CloudTrail-Insight/` folders are not descended into: they hold no events.
//!
//! An object is addressed `s3://bucket/key`, its version is its ETag, and it is classified by
//! its whole key, so a prefix inside a layout (`AWSLogs/`, an account, a region, a day) finds
//! what the bucket's root does. Fetches that stall are abandoned after the attempt
//! timeout and tried again; a deleted object is reported [`SourceError::Gone`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use serde::{Deserialize, Serialize};

use super::keytime::{self, DatedChildren};
use super::layout::{self, ExpectedKind, ObjectKind};
use super::{Listing, LogSource, Positions, SourceError, SourceObject};
use crate::aws::{self, AwsSettings};
use crate::ledger::Ledger;

/// Folder names below which no event logs live.
const NOT_EVENTS: [&str; 2] = ["CloudTrail-Digest", "CloudTrail-Insight"];
/// Folder depth at which the walk gives up looking for dated folders.
const MAX_DEPTH: usize = 12;
/// Body reads tried before a fetch fails (each bounded by the attempt timeout).
const BODY_ATTEMPTS: u32 = 3;

/// A validated S3 source configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Spec {
    pub bucket: String,
    /// Empty, or ends with `/`.
    pub prefix: String,
    pub expected: ExpectedKind,
    pub aws: AwsSettings,
    /// SQS queue receiving this bucket's event notifications, if any.
    pub queue_url: Option<String>,
    /// Time between reconciliation listings when a queue is set.
    pub reconcile_interval: Duration,
    /// How far before the newest listed time each listing starts again.
    pub look_back: Duration,
    pub atlas_project: Option<String>,
    /// Objects whose key time is before this are not listed (microseconds).
    pub since_micros: Option<i64>,
    /// Objects whose key time is at or after this are not listed (microseconds).
    pub until_micros: Option<i64>,
}

impl S3Spec {
    /// `s3://bucket/prefix`.
    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

/// What the ledger keeps per dated folder.
#[derive(Debug, Serialize, Deserialize)]
struct FolderCursor {
    newest_micros: i64,
}

/// A dated folder found by the walk.
#[derive(Debug)]
struct DatedFolder {
    folder: String,
    styles: Vec<DatedChildren>,
}

/// The S3 source; see the module documentation.
#[derive(Debug)]
pub struct S3Source {
    name: String,
    spec: S3Spec,
    client: Client,
    ledger: Arc<Ledger>,
}

impl S3Source {
    /// A source for `spec`, reading its cursors from `ledger`.
    pub async fn connect(spec: S3Spec, ledger: Arc<Ledger>) -> Self {
        let config = spec.aws.load().await;
        let client = aws::s3_client(&config);
        S3Source {
            name: spec.location(),
            spec,
            client,
            ledger,
        }
    }

    pub fn spec(&self) -> &S3Spec {
        &self.spec
    }

    /// What the object of `key` is: its layout, expected to be the configured kind's.
    pub fn classify_key(&self, key: &str) -> ObjectKind {
        layout::classify_expected(key, self.spec.atlas_project.as_deref(), self.spec.expected)
    }

    /// Whether a notified object belongs to this source.
    pub fn holds(&self, bucket: &str, key: &str) -> bool {
        bucket == self.spec.bucket && key.starts_with(&self.spec.prefix)
    }

    /// The source object for a key of this bucket.
    pub fn object(&self, key: &str, etag: &str, size: u64, modified_micros: i64) -> SourceObject {
        SourceObject {
            uri: format!("s3://{}/{key}", self.spec.bucket),
            // The whole key: the layouts are matched on it whatever part of it the prefix covers
            // (`AWSLogs/`, an account, a region, a day).
            key: key.to_owned(),
            version: etag.trim_matches('"').to_owned(),
            size,
            modified_micros,
        }
    }

    fn list_error(&self, folder: &str, message: String) -> SourceError {
        SourceError::Remote {
            location: format!("listing s3://{}/{folder}", self.spec.bucket),
            message,
        }
    }

    fn cursor_name(&self, folder: &str) -> String {
        format!("s3://{}/{folder}", self.spec.bucket)
    }

    /// Within `since`/`until`, by the key's time (a day-precise key counts for its whole day).
    fn in_window(&self, key: &str) -> bool {
        let Some(t) = keytime::key_micros(key) else {
            return true;
        };
        const DAY: i64 = 86_400_000_000;
        let day_precise = t % DAY == 0;
        let end = if day_precise { t + DAY } else { t };
        self.spec.since_micros.is_none_or(|since| end >= since)
            && self.spec.until_micros.is_none_or(|until| t < until)
    }

    fn to_object(&self, o: &aws_sdk_s3::types::Object) -> Option<SourceObject> {
        let key = o.key()?;
        if key.ends_with('/') || !self.in_window(key) {
            return None;
        }
        let modified = o
            .last_modified()
            .and_then(|t| t.to_millis().ok())
            .map_or(0, |ms| ms * 1000);
        Some(self.object(
            key,
            o.e_tag().unwrap_or_default(),
            u64::try_from(o.size().unwrap_or_default()).unwrap_or_default(),
            modified,
        ))
    }

    /// Walks folders from the prefix to the dated folders; returns them and the loose files.
    async fn discover(&self) -> Result<(Vec<DatedFolder>, Vec<SourceObject>), SourceError> {
        let mut dated = Vec::new();
        let mut loose = Vec::new();
        let mut queue = VecDeque::from([(self.spec.prefix.clone(), 0usize)]);
        while let Some((folder, depth)) = queue.pop_front() {
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.spec.bucket)
                .prefix(&folder)
                .delimiter("/")
                .into_paginator()
                .send();
            let mut first = true;
            let mut subfolders = Vec::new();
            let mut files = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.list_error(&folder, aws::describe(&e)))?;
                let child_folders: Vec<String> = page
                    .common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_owned))
                    .collect();
                if first {
                    first = false;
                    let mut styles: Vec<DatedChildren> = child_folders
                        .iter()
                        .filter_map(|p| {
                            let name = p[folder.len()..].trim_end_matches('/');
                            DatedChildren::of_child(name, true)
                        })
                        .chain(page.contents().iter().filter_map(|o| {
                            let name = o.key()?.get(folder.len()..)?;
                            DatedChildren::of_child(name, false)
                        }))
                        .collect();
                    styles.sort_by_key(|s| *s as u8);
                    styles.dedup();
                    if !styles.is_empty() {
                        dated.push(DatedFolder {
                            folder: folder.clone(),
                            styles,
                        });
                        subfolders.clear();
                        files.clear();
                        break;
                    }
                }
                subfolders.extend(child_folders);
                files.extend(page.contents().iter().filter_map(|o| self.to_object(o)));
            }
            loose.extend(files);
            if depth < MAX_DEPTH {
                for sub in subfolders {
                    let name = sub[folder.len()..].trim_end_matches('/');
                    if !NOT_EVENTS.contains(&name) {
                        queue.push_back((sub, depth + 1));
                    }
                }
            }
        }
        Ok((dated, loose))
    }

    /// Lists one dated folder from its cursor; returns its objects and newest key time.
    async fn list_dated(
        &self,
        dated: &DatedFolder,
    ) -> Result<(Vec<SourceObject>, Option<i64>), SourceError> {
        let saved = self
            .ledger
            .cursor(&self.cursor_name(&dated.folder))
            .map_err(|e| self.list_error(&dated.folder, e.to_string()))?
            .and_then(|bytes| serde_json::from_slice::<FolderCursor>(&bytes).ok());
        let look_back = i64::try_from(self.spec.look_back.as_micros()).unwrap_or(i64::MAX);
        let from = match (saved, self.spec.since_micros) {
            (Some(c), since) => Some(
                c.newest_micros
                    .saturating_sub(look_back)
                    .max(since.unwrap_or(i64::MIN)),
            ),
            (None, since) => since,
        };
        let start_after = from.and_then(|micros| {
            dated
                .styles
                .iter()
                .map(|style| keytime::start_after(&dated.folder, *style, micros))
                .min()
        });
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.spec.bucket)
            .prefix(&dated.folder)
            .set_start_after(start_after)
            .into_paginator()
            .send();
        let mut objects = Vec::new();
        let mut newest = None;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.list_error(&dated.folder, aws::describe(&e)))?;
            for o in page.contents() {
                // Digests and Insights below a dated folder are never fetched: skip the key.
                if let Some(object) = self.to_object(o) {
                    if let Some(t) = keytime::key_micros(&object.key) {
                        newest = newest.max(Some(t));
                    }
                    objects.push(object);
                }
            }
        }
        Ok((objects, newest))
    }
}

#[async_trait::async_trait]
impl LogSource for S3Source {
    fn name(&self) -> &str {
        &self.name
    }

    fn classify(&self, object: &SourceObject) -> ObjectKind {
        self.classify_key(&object.key)
    }

    async fn list(&self) -> Result<Listing, SourceError> {
        let (dated, loose) = self.discover().await?;
        let mut listing = Listing {
            objects: loose,
            ..Listing::default()
        };
        let mut cursors = Vec::new();
        let mut newest_by_folder = BTreeMap::new();
        for folder in &dated {
            let (objects, newest) = self.list_dated(folder).await?;
            listing.objects.extend(objects);
            if let Some(newest) = newest {
                newest_by_folder.insert(folder.folder.clone(), newest);
            }
        }
        for (folder, newest_micros) in newest_by_folder {
            let value = serde_json::to_vec(&FolderCursor { newest_micros }).unwrap_or_default();
            cursors.push((self.cursor_name(&folder), value));
        }
        listing.positions = Positions::AfterAll(cursors);
        tracing::debug!(source = %self.name, folders = dated.len(), objects = listing.objects.len(), "listed");
        Ok(listing)
    }

    async fn fetch(&self, object: &SourceObject) -> Result<Vec<u8>, SourceError> {
        let key = object
            .uri
            .strip_prefix(&format!("s3://{}/", self.spec.bucket))
            .unwrap_or(&object.key);
        let fail = |message: String| SourceError::Remote {
            location: format!("reading {}", object.uri),
            message,
        };
        let mut last = String::new();
        for attempt in 1..=BODY_ATTEMPTS {
            let response = self
                .client
                .get_object()
                .bucket(&self.spec.bucket)
                .key(key)
                .send()
                .await;
            let output = match response {
                Ok(output) => output,
                Err(e) => {
                    let gone = e.as_service_error().is_some_and(|s| s.is_no_such_key())
                        || e.raw_response().is_some_and(|r| r.status().as_u16() == 404);
                    if gone {
                        return Err(SourceError::Gone {
                            uri: object.uri.clone(),
                        });
                    }
                    return Err(fail(aws::describe(&e)));
                }
            };
            // The SDK's attempt timeout covers the response head; a body that stalls is ours.
            match tokio::time::timeout(self.spec.aws.attempt_timeout, output.body.collect()).await {
                Ok(Ok(body)) => return Ok(body.into_bytes().to_vec()),
                Ok(Err(e)) => last = format!("reading the body: {e}"),
                Err(_) => last = "the body stalled".to_owned(),
            }
            tracing::warn!(uri = %object.uri, attempt, error = %last, "retrying object read");
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        Err(fail(last))
    }
}
