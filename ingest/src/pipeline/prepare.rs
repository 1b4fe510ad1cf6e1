//! Preparing one object for a commit group: skip it (another worker's, not an event log, too
//! large to read), or fetch it, remove the rows an earlier version left, decode it on a
//! decoder thread, and keep only the CloudTrail events no other object holds.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::{Array, BooleanArray, StringArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use auditlake_schema as schema;

use super::schedule::Scan;
use super::{ObjectError, Pipeline};
use crate::decode::{self, DecodeLimits, Decoded, ObjectContext};
use crate::lake::LakeWriter;
use crate::ledger::{Claim, ClaimKey, Ledger, ObjectEntry, ObjectStatus};
use crate::shared::SharedLake;
use crate::source::SourceObject;
use crate::source::layout::ObjectKind;

/// One object read, decoded and deduplicated, on its way into a commit group.
pub(super) struct Prepared {
    pub(super) object: SourceObject,
    pub(super) entry: ObjectEntry,
    /// Rows to write; `cloudtrail` holds only the events this object keeps.
    pub(super) decoded: Decoded,
    /// Claim keys of the events its rows hold.
    pub(super) claims: Vec<ClaimKey>,
    /// Source positions committed with it.
    pub(super) cursors: Vec<(String, Vec<u8>)>,
}

impl Pipeline {
    /// Fetches and decodes `object`, or notes why it is skipped.
    pub(super) async fn prepare(
        &self,
        scan: Scan<'_>,
        object: &SourceObject,
    ) -> Result<Prepared, ObjectError> {
        let source = scan.source;
        if let Some(shared) = &self.shared
            && shared
                .ingested_elsewhere(&object.uri, &object.version)
                .await?
        {
            return Ok(skipped(object, "ingested_elsewhere", false));
        }
        let kind = source.classify(object);
        if kind.format().is_none() {
            if kind == ObjectKind::Unrecognized {
                tracing::info!(uri = %object.uri, "object skipped: its key matches no known layout");
            } else {
                tracing::debug!(uri = %object.uri, kind = kind.label(), "object skipped: not an event log");
            }
            let digest = kind == ObjectKind::CloudTrailDigest;
            return Ok(skipped(object, kind.label(), digest));
        }
        // Not read at all when its listed size is over the limit (with a margin for gzip's
        // framing of content that does not compress): it could only be rejected. A stream's
        // read is in memory already, and made to its own size limit.
        let limit = self.limits.max_object_bytes as u64;
        if !scan.is_stream() && object.size > limit.saturating_add(limit / 256) {
            return self
                .prepare_content(object, kind, Content::TooLarge(object.size), Vec::new())
                .await;
        }
        let bytes = source.fetch(object).await?;
        self.prepare_bytes(object, kind, bytes, scan.with_object.to_vec())
            .await
    }

    /// Decodes one object's bytes on a blocking thread, first removing the rows an earlier
    /// version of it left in the lake, and keeps only the CloudTrail events it owns.
    pub(super) async fn prepare_bytes(
        &self,
        object: &SourceObject,
        kind: ObjectKind,
        bytes: Vec<u8>,
        cursors: Vec<(String, Vec<u8>)>,
    ) -> Result<Prepared, ObjectError> {
        self.stats
            .bytes_read
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.prepare_content(object, kind, Content::Read(bytes), cursors)
            .await
    }

    /// [`Pipeline::prepare_bytes`] for what was read of an object, or of one too large to read.
    pub(super) async fn prepare_content(
        &self,
        object: &SourceObject,
        kind: ObjectKind,
        content: Content,
        cursors: Vec<(String, Vec<u8>)>,
    ) -> Result<Prepared, ObjectError> {
        let Some(format) = kind.format() else {
            return Ok(skipped(object, kind.label(), false));
        };
        let decoding = Decoding {
            ledger: self.ledger.clone(),
            shared: self.shared.clone(),
            writer: self.writer.clone(),
            limits: self.limits,
        };
        let job = DecodeJob {
            object: object.clone(),
            kind,
            format,
            content,
        };
        self.decoders
            .run(move || {
                let mut prepared = decoding.decode(job, chrono::Utc::now().timestamp_micros())?;
                prepared.cursors = cursors;
                Ok(prepared)
            })
            .await
            .map_err(|message| ObjectError::Task {
                uri: object.uri.clone(),
                message,
            })?
    }
}

/// An object recorded without decoding, `label` saying why.
fn skipped(object: &SourceObject, label: &str, digest: bool) -> Prepared {
    Prepared {
        object: object.clone(),
        entry: ObjectEntry {
            version: object.version.clone(),
            kind: label.to_owned(),
            status: ObjectStatus::Skipped,
            ..empty_entry()
        },
        decoded: Decoded {
            digest,
            ..Decoded::default()
        },
        claims: Vec::new(),
        cursors: Vec::new(),
    }
}

pub(super) fn empty_entry() -> ObjectEntry {
    ObjectEntry {
        version: String::new(),
        kind: String::new(),
        status: ObjectStatus::Ingested,
        cloudtrail_rows: 0,
        mongodb_audit_rows: 0,
        rejected_rows: 0,
        duplicate_events: 0,
        alerts: 0,
        bytes: 0,
        files: Vec::new(),
    }
}

/// An object's share of the [`budget::DecodeBudget`], held until its rows join a group.
pub(super) type Reserved = tokio::sync::OwnedSemaphorePermit;

/// An object's content as the pipeline got it.
pub(super) enum Content {
    Read(Vec<u8>),
    /// Not read: its listed size (this) is over the object limit.
    TooLarge(u64),
}

/// What decoding any object needs, handed to a decoder thread with each job.
struct Decoding {
    pub(super) ledger: Arc<Ledger>,
    pub(super) shared: Option<Arc<SharedLake>>,
    pub(super) writer: LakeWriter,
    pub(super) limits: DecodeLimits,
}

/// One object to decode, and what is known of it already.
struct DecodeJob {
    pub(super) object: SourceObject,
    pub(super) kind: ObjectKind,
    pub(super) format: decode::Format,
    pub(super) content: Content,
}

impl Decoding {
    /// Decodes and deduplicates one object; the blocking half of [`Pipeline::prepare_bytes`].
    pub(super) fn decode(&self, job: DecodeJob, now_micros: i64) -> Result<Prepared, ObjectError> {
        let DecodeJob {
            object,
            kind,
            format,
            content,
        } = job;
        let (ledger, shared, writer, limits) = (
            &*self.ledger,
            self.shared.as_deref(),
            &self.writer,
            self.limits,
        );
        // A new version replaces the rows of the one ingested before (idempotent, so a crash
        // before this object's commit just repeats it).
        if let Some(earlier) = ledger.entry(&object.uri)?
            && earlier.version != object.version
            && !earlier.files.is_empty()
        {
            writer
                .remove_rows_of(&object.uri, &earlier.files)
                .map_err(|source| ObjectError::Write {
                    uri: object.uri.clone(),
                    source,
                })?;
        }
        let atlas = match &kind {
            ObjectKind::AtlasAudit(ctx) => Some(ctx.clone()),
            _ => None,
        };
        let ctx = ObjectContext {
            source_uri: &object.uri,
            ingested_at_micros: now_micros,
            atlas,
        };
        let (decoded, size) = match &content {
            Content::Read(bytes) => (
                decode::decode_object(format, bytes, &ctx, limits),
                bytes.len() as u64,
            ),
            Content::TooLarge(size) => (decode::oversized(format, *size, &ctx, limits), 0),
        };
        let mut decoded: Decoded = decoded.map_err(|source| ObjectError::Decode {
            uri: object.uri.clone(),
            source,
        })?;
        let rows = |b: &Option<RecordBatch>| b.as_ref().map_or(0, |b| b.num_rows() as u64);
        let mut entry = ObjectEntry {
            version: object.version.clone(),
            kind: kind.label().to_owned(),
            bytes: size,
            ..empty_entry()
        };
        let mut claims = Vec::new();
        if let Some(batch) = decoded.cloudtrail.take() {
            let (kept, keys, duplicates) =
                drop_duplicate_events(ledger, shared, &object.uri, &batch, object.modified_micros)?;
            entry.duplicate_events = duplicates;
            claims = keys;
            decoded.cloudtrail = Some(kept);
        }
        entry.cloudtrail_rows = rows(&decoded.cloudtrail);
        entry.mongodb_audit_rows = rows(&decoded.mongodb_audit);
        entry.rejected_rows = rows(&decoded.rejected);
        Ok(Prepared {
            object,
            entry,
            decoded,
            claims,
            cursors: Vec::new(),
        })
    }
}

/// Each row's time column value (microseconds), `None` where it has none.
fn event_times(batch: &RecordBatch) -> Vec<Option<i64>> {
    let times = batch
        .column_by_name(schema::time_column(schema::CLOUDTRAIL).unwrap_or_default())
        .and_then(|c| {
            c.as_any()
                .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
        });
    (0..batch.num_rows())
        .map(|row| times.filter(|t| t.is_valid(row)).map(|t| t.value(row)))
        .collect()
}

/// The rows of `batch` whose event id this object keeps, their claim keys, and how many were
/// dropped.
fn drop_duplicate_events(
    ledger: &Ledger,
    shared: Option<&SharedLake>,
    uri: &str,
    batch: &RecordBatch,
    fallback_micros: i64,
) -> Result<(RecordBatch, Vec<ClaimKey>, u64), ObjectError> {
    let ids = batch
        .column_by_name("event_id")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .map(|a| a.iter().collect::<Vec<Option<&str>>>())
        .unwrap_or_default();
    let times = event_times(batch);
    let claims: Vec<Option<Claim<'_>>> = ids
        .iter()
        .zip(&times)
        .map(|(id, micros)| id.map(|id| Claim::new(*micros, id)))
        .collect();
    let keep = match shared {
        None => ledger.claim_event_ids(uri, &claims)?,
        Some(shared) => {
            // The lake partition (`date=…/hour=…`) of each row.
            let hours: Vec<String> = times
                .iter()
                .map(|t| schema::Partition::of_micros(t.unwrap_or(fallback_micros)).path())
                .collect();
            // On a decoder thread, which runs inside the runtime (see `Decoders::run`).
            tokio::runtime::Handle::current().block_on(shared.claim(uri, &ids, &hours))?
        }
    };
    let kept_ids: Vec<ClaimKey> = claims
        .iter()
        .zip(&keep)
        .filter_map(|(claim, keep)| claim.filter(|_| *keep).map(|c| c.key))
        .collect();
    let duplicates = keep.iter().filter(|k| !**k).count() as u64;
    if duplicates == 0 {
        return Ok((batch.clone(), kept_ids, 0));
    }
    let mask = BooleanArray::from(keep);
    let kept = filter_record_batch(batch, &mask).map_err(|source| ObjectError::Arrow {
        uri: uri.to_owned(),
        action: "dropping duplicate events",
        source,
    })?;
    debug_assert_eq!(kept.num_rows(), mask.true_count());
    Ok((kept, kept_ids, duplicates))
}
