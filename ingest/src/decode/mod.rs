//! Bytes of one source object into Arrow batches for the lake.
//!
//! Flow: [`decode_object`] gunzips when the bytes start with the gzip magic (whatever the name
//! says), frames the content (a whole JSON document, or one JSON document per line), parses each
//! frame with simd-json and hands it to the table's decoder ([`cloudtrail`], [`mongodb`]). Every
//! frame that cannot become a row becomes a `rejected` row instead, with its position, reason
//! and raw bytes; nothing is dropped silently and no input makes a decoder panic.

pub mod cloudtrail;
pub mod columns;
pub mod mongodb;
pub mod tape;
pub mod time;

use std::io::Read;

use arrow::record_batch::RecordBatch;
use simd_json::prelude::*;

use auditlake_schema as schema;

use columns::{TableBuilder, table_columns};

/// Atlas context of an audit object, taken from its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtlasContext {
    pub project: Option<String>,
    pub cluster: String,
    pub hostname: String,
    pub log_type: String,
}

/// What a decoder needs to know about the object it decodes.
#[derive(Debug, Clone)]
pub struct ObjectContext<'a> {
    /// Where the object came from (`file://...`, `s3://...`), stored with every row.
    pub source_uri: &'a str,
    /// When this ingestion started, microseconds since the epoch.
    pub ingested_at_micros: i64,
    /// Atlas context for audit objects.
    pub atlas: Option<AtlasContext>,
}

/// Which decoder an object's content goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CloudTrail: a `{"Records":[...]}` log file, or one record per line.
    CloudTrail,
    /// MongoDB audit: one message per line, `mongo` or OCSF schema.
    MongoAudit,
}

/// Default of [`DecodeLimits::max_object_bytes`]: each object decoding may hold this much
/// (concurrency objects decode at once), whatever its bytes claim.
pub const DEFAULT_MAX_OBJECT_BYTES: usize = 256 << 20;

impl Format {
    /// The table its rows go to.
    pub fn table(self) -> &'static str {
        match self {
            Format::CloudTrail => schema::CLOUDTRAIL,
            Format::MongoAudit => schema::MONGODB_AUDIT,
        }
    }
}

/// Limits that keep one object or record from taking the process down.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest decompressed object; beyond it the object is rejected whole.
    pub max_object_bytes: usize,
    /// Largest single line (one record); a longer line is rejected.
    pub max_line_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            max_line_bytes: 4 << 20,
        }
    }
}

/// What one object decoded into.
#[derive(Debug, Default)]
pub struct Decoded {
    pub cloudtrail: Option<RecordBatch>,
    pub mongodb_audit: Option<RecordBatch>,
    pub rejected: Option<RecordBatch>,
    /// Set when the object was recognised as a CloudTrail digest and routed away.
    pub digest: bool,
    /// Bytes after decompression.
    pub decompressed_bytes: usize,
}

impl Decoded {
    /// Bytes its batches hold.
    pub fn memory_size(&self) -> usize {
        [&self.cloudtrail, &self.mongodb_audit, &self.rejected]
            .into_iter()
            .flatten()
            .map(RecordBatch::get_array_memory_size)
            .sum()
    }

    /// Rows in each table, for counters and tests.
    pub fn row_counts(&self) -> (usize, usize, usize) {
        let n = |b: &Option<RecordBatch>| b.as_ref().map_or(0, RecordBatch::num_rows);
        (
            n(&self.cloudtrail),
            n(&self.mongodb_audit),
            n(&self.rejected),
        )
    }
}

/// Errors that stop a whole object from being decoded; everything smaller becomes a rejected row.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("building Arrow batch for {table}: {source}")]
    Arrow {
        table: &'static str,
        #[source]
        source: arrow::error::ArrowError,
    },
}

table_columns! {
    enum RejectCol {
        source_uri, source_index, target_table, reason, raw, raw_size, raw_truncated, ingested_at,
    }
}

/// Collects `rejected` rows.
#[derive(Debug)]
struct Rejects<'a> {
    rows: TableBuilder,
    ctx: &'a ObjectContext<'a>,
    target: &'static str,
}

impl<'a> Rejects<'a> {
    fn new(ctx: &'a ObjectContext<'a>, target: &'static str) -> Self {
        let schema = schema::file_schema(schema::REJECTED).expect("rejected schema");
        Rejects {
            rows: TableBuilder::new(schema::REJECTED, schema, RejectCol::NAMES),
            ctx,
            target,
        }
    }

    /// The rows collected, as a batch.
    fn finish(&mut self) -> Result<RecordBatch, DecodeError> {
        self.rows.finish().map_err(|source| DecodeError::Arrow {
            table: schema::REJECTED,
            source,
        })
    }

    fn push(&mut self, index: Option<i64>, reason: &str, raw: &[u8]) {
        self.push_part(index, reason, raw, raw.len());
    }

    /// As [`Rejects::push`] for an input of `size` bytes of which `raw` is the head.
    fn push_part(&mut self, index: Option<i64>, reason: &str, raw: &[u8], size: usize) {
        let truncated = size > schema::REJECTED_RAW_LIMIT;
        let kept = &raw[..raw.len().min(schema::REJECTED_RAW_LIMIT)];
        let r = &mut self.rows;
        r.str(RejectCol::source_uri, Some(self.ctx.source_uri));
        r.i64(RejectCol::source_index, index);
        r.str(RejectCol::target_table, Some(self.target));
        r.str(RejectCol::reason, Some(reason));
        r.binary(RejectCol::raw, Some(kept));
        r.i64(RejectCol::raw_size, i64::try_from(size).ok());
        r.bool(RejectCol::raw_truncated, Some(truncated));
        r.timestamp(RejectCol::ingested_at, Some(self.ctx.ingested_at_micros));
        r.end_row();
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The byte order mark some writers put before UTF-8 text.
const UTF8_BOM: &[u8] = &[0xEF, 0xBB, 0xBF];

/// Whether bytes are gzip, by their magic number.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// What a gzip object inflates to.
#[derive(Debug, Default)]
pub struct Gunzipped {
    /// The inflated bytes of every member that inflated whole and matched its checksum, and
    /// what was inflated of a member cut short (whole lines before a truncation still count).
    pub content: Vec<u8>,
    /// The error that cut the stream short, if any.
    pub error: Option<String>,
    /// The inflated bytes of each member whose checksum did not match, with its number: what
    /// they say cannot be trusted, so they are not content.
    pub unverified: Vec<(usize, Vec<u8>)>,
    /// Bytes after the last whole member that are not gzip: the members before them are whole,
    /// so their content stands.
    pub trailing: Vec<u8>,
    /// The stream inflates past the limit: `content` is only its first
    /// [`schema::REJECTED_RAW_LIMIT`] bytes, kept to show what it was, and the object is
    /// rejected whole.
    pub oversized: bool,
}

/// Inflates a gzip object; see [`Gunzipped`].
///
/// A whole single-member stream (what CloudTrail and Atlas write) is inflated in one call by
/// libdeflate into a buffer of the size its trailer announces; anything else (several members,
/// a truncated or corrupt stream, a size over the limit) takes the streaming path, one member at
/// a time.
pub fn gunzip(bytes: &[u8], limit: usize) -> Gunzipped {
    if let Some(content) = gunzip_single_member(bytes, limit) {
        return Gunzipped {
            content,
            ..Gunzipped::default()
        };
    }
    gunzip_streaming(bytes, limit)
}

thread_local! {
    static INFLATER: std::cell::RefCell<libdeflater::Decompressor> =
        std::cell::RefCell::new(libdeflater::Decompressor::new());
}

/// Inflates a single-member stream: one whose bytes after the header hold no second member's
/// magic (`1f 8b 08`) and whose trailer matches what it inflates to. `None` for anything else,
/// including the rare single member whose compressed bytes happen to contain the magic.
fn gunzip_single_member(bytes: &[u8], limit: usize) -> Option<Vec<u8>> {
    // libdeflate stops after the first member and ignores what follows it.
    if memchr::memmem::find(bytes.get(10..)?, &[0x1f, 0x8b, 0x08]).is_some() {
        return None;
    }
    let trailer = bytes.len().checked_sub(8).map(|at| &bytes[at..])?;
    let crc = u32::from_le_bytes(trailer[..4].try_into().ok()?);
    let size = u32::from_le_bytes(trailer[4..].try_into().ok()?) as usize;
    // The size field is modulo 4 GiB; a stream that inflates past it fails here and streams.
    // Deflate cannot inflate beyond ~1032:1; a larger claim is not worth allocating for.
    if size > limit || size > bytes.len().saturating_mul(1032) {
        return None;
    }
    let mut out = vec![0; size];
    let inflated = INFLATER
        .with(|d| d.borrow_mut().gzip_decompress(bytes, &mut out))
        .ok()?;
    (inflated == size && crc32fast::hash(&out) == crc).then_some(out)
}

fn gunzip_streaming(bytes: &[u8], limit: usize) -> Gunzipped {
    let mut out = Gunzipped {
        content: Vec::with_capacity(bytes.len().saturating_mul(8).min(limit)),
        ..Gunzipped::default()
    };
    let mut rest: &[u8] = bytes;
    let mut member = 0;
    // Inflated bytes so far, members that failed their checksum included.
    let mut inflated = 0usize;
    while !rest.is_empty() {
        member += 1;
        if member > 1 && !is_gzip(rest) {
            out.trailing = rest.to_vec();
            break;
        }
        let mut decoder = flate2::bufread::GzDecoder::new(rest);
        let start = out.content.len();
        let room = limit.saturating_sub(inflated);
        let result = read_capped(&mut decoder, &mut out.content, room);
        let remaining = decoder.get_ref().len();
        match result {
            Ok(n) if n > room => {
                // Held no more than the limit; only a sample stays.
                out.content
                    .truncate(schema::REJECTED_RAW_LIMIT.min(out.content.len()));
                out.content.shrink_to_fit();
                out.unverified.clear();
                out.oversized = true;
                out.error = Some(format!(
                    "decompressed size exceeds the {limit}-byte object limit (ingest.max_object_bytes)"
                ));
                break;
            }
            Ok(n) => inflated += n,
            Err(e) if e.to_string().contains("checksum") => {
                let piece = out.content.split_off(start);
                inflated += piece.len();
                out.unverified.push((member, piece));
            }
            Err(e) => {
                out.error = Some(format!("gzip stream is corrupt or truncated: {e}"));
                break;
            }
        }
        rest = &rest[rest.len() - remaining..];
    }
    out
}

/// Appends what `reader` yields to `out` until its end or until more than `room` bytes came
/// (then `room + 1` were appended); how many. `out` grows by doubling but never past what it
/// held plus `room + 1`, so that a stream that inflates without end costs the limit and no
/// more.
fn read_capped(reader: &mut impl Read, out: &mut Vec<u8>, room: usize) -> std::io::Result<usize> {
    let ceiling = out.len().saturating_add(room).saturating_add(1);
    let mut chunk = vec![0u8; 64 << 10];
    let mut total = 0usize;
    while total <= room {
        let want = chunk.len().min(room + 1 - total);
        let n = match reader.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if out.capacity() - out.len() < n {
            let grown = out
                .capacity()
                .saturating_mul(2)
                .clamp(out.len() + n, ceiling.max(out.len() + n));
            out.reserve_exact(grown - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
        total += n;
    }
    Ok(total)
}

/// What an object too large to read decodes to: one rejected row saying so, for an object of
/// `size` bytes (as listed) over `limits.max_object_bytes`.
pub fn oversized(
    format: Format,
    size: u64,
    ctx: &ObjectContext<'_>,
    limits: DecodeLimits,
) -> Result<Decoded, DecodeError> {
    let mut rejects = Rejects::new(ctx, format.table());
    let reason = format!(
        "object of {size} bytes exceeds the {}-byte object limit (ingest.max_object_bytes); not read",
        limits.max_object_bytes
    );
    rejects.push_part(
        None,
        &reason,
        &[],
        usize::try_from(size).unwrap_or(usize::MAX),
    );
    Ok(Decoded {
        rejected: Some(rejects.finish()?),
        ..Decoded::default()
    })
}

/// Decodes one object's bytes; see the module documentation.
pub fn decode_object(
    format: Format,
    bytes: &[u8],
    ctx: &ObjectContext<'_>,
    limits: DecodeLimits,
) -> Result<Decoded, DecodeError> {
    let mut rejects = Rejects::new(ctx, format.table());
    let mut out = Decoded::default();

    let Gunzipped {
        mut content,
        error: gzip_error,
        unverified,
        trailing,
        oversized,
    } = if is_gzip(bytes) {
        gunzip(bytes, limits.max_object_bytes)
    } else if bytes.len() > limits.max_object_bytes {
        Gunzipped {
            content: bytes[..schema::REJECTED_RAW_LIMIT.min(bytes.len())].to_vec(),
            error: Some(format!(
                "object exceeds the {}-byte object limit (ingest.max_object_bytes)",
                limits.max_object_bytes
            )),
            oversized: true,
            ..Gunzipped::default()
        }
    } else {
        Gunzipped {
            content: bytes.to_vec(),
            ..Gunzipped::default()
        }
    };
    out.decompressed_bytes = content.len();
    // A UTF-8 byte order mark says how the text is encoded; it is not part of the first record.
    if content.starts_with(UTF8_BOM) {
        content.drain(..UTF8_BOM.len());
    }

    if !trailing.is_empty() {
        let reason = format!(
            "{} bytes after the last gzip member are not gzip",
            trailing.len()
        );
        rejects.push(None, &reason, &trailing);
    }

    // Evidence that fails its own checksum is not ingested: each line of such a member is
    // rejected with the reason, as read.
    for (member, bytes) in &unverified {
        let reason =
            format!("gzip member {member} does not match its checksum: its lines are not trusted");
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            rejects.push(None, &reason, line);
        }
    }

    // An object over the limit is rejected whole, with a sample of what it holds.
    if oversized {
        let reason = gzip_error.unwrap_or_default();
        let size = if is_gzip(bytes) {
            limits.max_object_bytes.saturating_add(1)
        } else {
            bytes.len()
        };
        rejects.push_part(None, &reason, &content, size);
        out.rejected = Some(rejects.finish()?);
        return Ok(out);
    }

    // After a decompression error only whole lines are trusted; the rest is rejected whole.
    if let Some(reason) = gzip_error {
        let keep = content[..]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let tail = content.split_off(keep);
        let raw = if tail.is_empty() { bytes } else { &tail[..] };
        rejects.push(None, &reason, raw);
    }

    let mut rows = match format {
        Format::CloudTrail => cloudtrail::builder(ctx),
        Format::MongoAudit => mongodb::builder(ctx),
    };
    match format {
        Format::CloudTrail => {
            decode_cloudtrail(&mut content, limits, &mut rows, &mut rejects, &mut out)
        }
        Format::MongoAudit => {
            let mut scratch = Vec::new();
            rows.reserve(line_count(&content));
            for_each_raw_line(
                &mut content,
                limits,
                &mut rejects,
                |line, index, rejects| {
                    let intact = line
                        .before
                        .is_none()
                        .then(|| mongodb::IntactLine::of(line.text));
                    let parsed = tape::with_parsed(line.text, |message| {
                        let audit_schema = mongodb::classify(message)?;
                        Ok(mongodb::append(
                            &mut rows,
                            message,
                            audit_schema,
                            index,
                            &mut scratch,
                            intact,
                        ))
                    });
                    match parsed {
                        Ok(Ok(None)) => {}
                        Ok(Ok(Some(param))) => param.finish(&mut rows, line.text, &mut scratch),
                        Ok(Err(reason)) => rejects.push(Some(index), reason, line.original()),
                        Err(e) => rejects.push(
                            Some(index),
                            &format!("invalid JSON: {e}"),
                            line.original(),
                        ),
                    }
                },
            );
        }
    }

    let finish =
        |b: &mut TableBuilder, table: &'static str| -> Result<Option<RecordBatch>, DecodeError> {
            if b.is_empty() {
                return Ok(None);
            }
            b.finish()
                .map(Some)
                .map_err(|source| DecodeError::Arrow { table, source })
        };
    match format {
        Format::CloudTrail => out.cloudtrail = finish(&mut rows, schema::CLOUDTRAIL)?,
        Format::MongoAudit => out.mongodb_audit = finish(&mut rows, schema::MONGODB_AUDIT)?,
    }
    out.rejected = finish(&mut rejects.rows, schema::REJECTED)?;
    Ok(out)
}

/// Frames CloudTrail content: a whole document (a log file, a digest, or one record), or one
/// record per line (CloudWatch Logs exports, NDJSON dumps).
fn decode_cloudtrail(
    content: &mut [u8],
    limits: DecodeLimits,
    rows: &mut TableBuilder,
    rejects: &mut Rejects<'_>,
    out: &mut Decoded,
) {
    let mut scratch = Vec::new();
    if looks_line_delimited(content) {
        rows.reserve(line_count(content));
        for_each_raw_line(content, limits, rejects, |line, number, rejects| {
            let parsed = tape::with_parsed(line.text, |record| {
                let refusal = cloudtrail::not_a_record(record);
                if refusal.is_none() {
                    cloudtrail::append(rows, record, number, &mut scratch);
                }
                refusal
            });
            match parsed {
                Ok(None) => {}
                Ok(Some(reason)) => rejects.push(Some(number), reason, line.original()),
                Err(e) => {
                    rejects.push(Some(number), &format!("invalid JSON: {e}"), line.original())
                }
            }
        });
        return;
    }
    let raw_copy_len = content.len().min(schema::REJECTED_RAW_LIMIT + 1);
    let raw_head = content[..raw_copy_len].to_vec();
    let size = content.len();
    if content.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let parsed = tape::with_parsed(content, |document| {
        if cloudtrail::is_digest(document) {
            return true;
        }
        match document.get("Records").and_then(|r| r.as_array()) {
            Some(records) => {
                rows.reserve(records.len());
                for (index, record) in records.iter().enumerate() {
                    let index = index as i64;
                    match cloudtrail::not_a_record(record) {
                        None => cloudtrail::append(rows, record, index, &mut scratch),
                        Some(reason) => {
                            rejects.push(Some(index), reason, record.encode().as_bytes())
                        }
                    }
                }
            }
            None => match cloudtrail::not_a_record(document) {
                None => cloudtrail::append(rows, document, 0, &mut scratch),
                Some(reason) => rejects.push_part(None, reason, &raw_head, size),
            },
        }
        false
    });
    match parsed {
        Ok(digest) => out.digest = digest,
        Err(e) => rejects.push_part(
            None,
            &format!("invalid JSON document: {e}"),
            &raw_head,
            size,
        ),
    }
}

/// Lines in `content` (a last line without a newline included).
fn line_count(content: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', content).count() + usize::from(!content.ends_with(b"\n"))
}

/// Lines looked at to tell one record per line from a document spread over lines.
const FRAMING_PROBE_LINES: usize = 64;

/// Whether content holds one JSON document per line: true when it has several lines and its
/// first line alone parses, or (the first line being damaged) one of the next lines is a whole
/// CloudTrail record on its own, which a document spread over lines never has.
fn looks_line_delimited(content: &[u8]) -> bool {
    let start = content
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(content.len());
    let rest = &content[start..];
    let Some(end) = rest.iter().position(|&b| b == b'\n') else {
        return false;
    };
    if rest[end..].iter().all(u8::is_ascii_whitespace) {
        return false;
    }
    let mut probe = rest[..end].to_vec();
    if tape::with_parsed(&mut probe, |_| ()).is_ok() {
        return true;
    }
    rest[end + 1..]
        .split(|&b| b == b'\n')
        .take(FRAMING_PROBE_LINES)
        .map(|line| line.trim_ascii())
        .filter(|line| line.starts_with(b"{") && line.ends_with(b"}"))
        .any(|line| {
            let mut probe = line.to_vec();
            tape::with_parsed(&mut probe, |record| {
                record.get("eventTime").is_some() && cloudtrail::not_a_record(record).is_none()
            })
            .unwrap_or(false)
        })
}

/// One line to parse in place, and its bytes as they were before parsing.
struct RawLine<'a> {
    text: &'a mut [u8],
    /// A copy made before parsing; `None` when parsing cannot change the line.
    before: Option<&'a [u8]>,
}

impl RawLine<'_> {
    /// The line as it was read, for a `rejected` row.
    fn original(&self) -> &[u8] {
        self.before.unwrap_or(self.text)
    }
}

/// Calls `line_fn` for each non-blank line within the line limit, with the line and its
/// 1-based number; rejects the longer ones.
fn for_each_raw_line<F>(
    content: &mut [u8],
    limits: DecodeLimits,
    rejects: &mut Rejects<'_>,
    mut line_fn: F,
) where
    F: FnMut(RawLine<'_>, i64, &mut Rejects<'_>),
{
    let mut scratch: Vec<u8> = Vec::new();
    let mut start = 0;
    let mut number = 0;
    while start < content.len() {
        let end = memchr::memchr(b'\n', &content[start..]).map_or(content.len(), |i| start + i);
        let line = trim_line(&mut content[start..end]);
        start = end + 1;
        number += 1;
        if line.is_empty() {
            continue;
        }
        if line.len() > limits.max_line_bytes {
            let reason = format!(
                "line of {} bytes exceeds the {}-byte record limit",
                line.len(),
                limits.max_line_bytes
            );
            rejects.push(Some(number), &reason, line);
            continue;
        }
        // simd-json rewrites a string in place only to unescape it: a line without a backslash
        // is left as it was, and only the others are copied for a possible reject.
        let before = if memchr::memchr(b'\\', line).is_some() {
            scratch.clear();
            scratch.extend_from_slice(line);
            Some(&scratch[..])
        } else {
            None
        };
        line_fn(RawLine { text: line, before }, number, rejects);
    }
}

fn trim_line(line: &mut [u8]) -> &mut [u8] {
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let start = line[..end]
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(end);
    &mut line[start..end]
}

#[cfg(test)]
mod ocsf_tests;
#[cfg(test)]
mod tests;
