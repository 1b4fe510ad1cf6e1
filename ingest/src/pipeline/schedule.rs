//! Scanning and scheduling: a scan lists a source, keeps the objects the ledger has not
//! recorded, prepares up to twice `concurrency` of them at once ([`super::prepare`]) and feeds
//! them in listing order into commit groups ([`super::group`]).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::events::{AcknowledgeFailed, Emit, NoneRecognized};
use super::group::Committing;
use super::in_flight::InFlight;
use super::prepare::{Prepared, Reserved};
use super::stats::ScanReport;
use super::{Pipeline, SINK_FAILURE_KINDS, ScanError};
use crate::ledger::ObjectStatus;
use crate::source::layout::ObjectKind;
use crate::source::{LogSource, Positions, SourceObject};

/// One listing being ingested: its source, and what its positions ask of its objects.
#[derive(Clone, Copy)]
pub(super) struct Scan<'a> {
    pub(super) source: &'a dyn LogSource,
    /// Positions committed with the listing's object (a stream's read): empty for a listing
    /// whose positions are saved after all its objects.
    pub(super) with_object: &'a [(String, Vec<u8>)],
}

impl Scan<'_> {
    /// Whether the objects are a stream's reads: already in memory, committed with the
    /// stream's position, and retried until ingested (never recorded as failed).
    pub(super) fn is_stream(&self) -> bool {
        !self.with_object.is_empty()
    }
}

impl Pipeline {
    /// Lists `source` and ingests every object not yet recorded, until `stop`. The listing's
    /// positions are committed as it says ([`Positions`]): those saved after all its objects
    /// only when every listed object is recorded and `stop` did not cut the scan short. A
    /// listing that asks for it is acknowledged to the source afterwards.
    pub async fn scan(
        &self,
        source: &dyn LogSource,
        stop: &CancellationToken,
    ) -> Result<ScanReport, ScanError> {
        self.scan_with_progress(source, stop, None).await
    }

    /// Scans `source` until it has no more waiting now (a stream read to its end); the
    /// reports added up.
    pub async fn drain(
        &self,
        source: &dyn LogSource,
        stop: &CancellationToken,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<ScanReport, ScanError> {
        let mut total = ScanReport::default();
        loop {
            let report = self.scan_with_progress(source, stop, progress).await?;
            let more = report.more && !stop.is_cancelled();
            total.add(report);
            if !more {
                return Ok(total);
            }
        }
    }

    /// [`Pipeline::scan`], advancing `progress` once per object done.
    pub async fn scan_with_progress(
        &self,
        source: &dyn LogSource,
        stop: &CancellationToken,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<ScanReport, ScanError> {
        if !self.sink_ready(stop).await {
            return Ok(ScanReport::default());
        }
        if !source.receives() {
            self.stats.scans.fetch_add(1, Ordering::Relaxed);
        }
        // A queue's receive waits for messages: a stop ends it.
        let listed = tokio::select! {
            () = stop.cancelled() => return Ok(ScanReport::default()),
            listed = source.list() => listed,
        };
        let listing = listed.map_err(|error| {
            self.stats.count_error(error.listing_kind());
            ScanError::List {
                source_name: source.name().to_owned(),
                error,
            }
        })?;
        self.stats.count_read(&listing.counts);
        let scan = Scan {
            source,
            with_object: match &listing.positions {
                Positions::WithObject(positions) => positions,
                Positions::AfterAll(_) => &[],
            },
        };
        let mut report = self
            .ingest_scan(scan, &listing.objects, stop, progress)
            .await?;
        report.unsettled = listing.unsettled;
        report.more = listing.more;
        if !listing.objects.is_empty()
            && listing
                .objects
                .iter()
                .all(|o| source.classify(o) == ObjectKind::Unrecognized)
        {
            let example = listing.objects[0].uri.clone();
            NoneRecognized {
                source: source.name(),
                listed: listing.objects.len(),
                example: &example,
            }
            .emit(&self.stats);
            report.none_recognized = Some(example);
        }
        let complete =
            report.failed == 0 && report.processed == report.fresh && !stop.is_cancelled();
        if complete {
            if let Positions::AfterAll(cursors) = &listing.positions {
                self.ledger
                    .save_cursors(cursors)
                    .inspect_err(|e| self.ledger_failed(e))?;
            }
            report.log_events = listing.counts.log_events;
            self.stats
                .cloudwatch_events
                .fetch_add(listing.counts.log_events, Ordering::Relaxed);
        }
        if listing.acknowledge {
            self.acknowledge(source, &listing.objects).await;
        }
        Ok(report)
    }

    /// Tells `source` which of `objects` the ledger records now.
    async fn acknowledge(&self, source: &dyn LogSource, objects: &[SourceObject]) {
        let recorded: HashSet<String> = match self
            .ledger
            .unrecorded(objects, |o| (o.uri.as_str(), o.version.as_str()))
        {
            Ok(left) => {
                let left: HashSet<&str> = left.iter().map(|o| o.uri.as_str()).collect();
                objects
                    .iter()
                    .filter(|o| !left.contains(o.uri.as_str()))
                    .map(|o| o.uri.clone())
                    .collect()
            }
            // Nothing is let go of: the source holds all for later.
            Err(error) => {
                self.ledger_failed(&error);
                HashSet::new()
            }
        };
        if let Err(error) = source.acknowledge(&recorded).await {
            AcknowledgeFailed {
                source: source.name(),
                error: &error,
            }
            .emit(&self.stats);
        }
    }

    /// Ingests those of `objects` (from `source`) that the ledger has not recorded in their
    /// listed version, until `stop`; see [`Pipeline::ingest_scan`].
    pub async fn ingest_objects(
        &self,
        source: &dyn LogSource,
        objects: &[SourceObject],
        stop: &CancellationToken,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<ScanReport, ScanError> {
        let scan = Scan {
            source,
            with_object: &[],
        };
        self.ingest_scan(scan, objects, stop, progress).await
    }

    /// Ingests those of `objects` (of `scan`) that the ledger has not recorded in their listed
    /// version, until `stop`: up to twice `concurrency` objects fetched and at most
    /// `concurrency` decoded at once, in listing order, through a bounded channel into commit
    /// groups (see [`super::group`]). `progress` is advanced once per object done.
    async fn ingest_scan(
        &self,
        scan: Scan<'_>,
        objects: &[SourceObject],
        stop: &CancellationToken,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<ScanReport, ScanError> {
        if !self.sink_ready(stop).await {
            return Ok(ScanReport {
                listed: objects.len(),
                fresh: objects.len(),
                deferred: objects.len(),
                ..ScanReport::default()
            });
        }
        self.forget_old_claims().await;
        // A key once skipped as matching no layout is looked at again when this source
        // recognises it (it was listed before under a prefix the layouts were not matched on).
        // So is one recorded as failed for a cause of ours (by an earlier version).
        let unrecognized = ObjectKind::Unrecognized.label();
        let fresh: Vec<SourceObject> = self
            .ledger
            .unrecorded_or(
                objects,
                |o| (o.uri.as_str(), o.version.as_str()),
                |o, entry| {
                    (entry.kind == unrecognized
                        && scan.source.classify(o) != ObjectKind::Unrecognized)
                        || (entry.status == ObjectStatus::Failed
                            && SINK_FAILURE_KINDS.contains(&entry.kind.as_str()))
                },
            )
            .inspect_err(|e| self.ledger_failed(e))?
            .into_iter()
            .cloned()
            .collect();
        let mut report = ScanReport {
            listed: objects.len(),
            fresh: fresh.len(),
            ..ScanReport::default()
        };
        let fresh = InFlight::take(&self.in_flight, fresh);
        if let Some(newest) = objects.iter().map(|o| o.modified_micros).max() {
            self.stats
                .newest_seen_micros
                .fetch_max(newest, Ordering::Relaxed);
        }
        if let Some(bar) = progress {
            bar.inc_length(fresh.objects.len() as u64);
        }
        let done = |n: usize| {
            if let Some(bar) = progress {
                bar.inc(n as u64);
            }
        };
        let taken = fresh.objects.clone();
        let (sender, mut receiver) =
            tokio::sync::mpsc::channel::<(Prepared, Option<Reserved>)>(self.concurrency);
        // Objects in flight finish when `stop` fires; no new one starts.
        let produce = async move {
            let (mut failed, mut sent) = (0, 0);
            // Budget is reserved one object after another, in listing order, before its fetch.
            let prepared = futures::stream::iter(taken)
                .take_until(stop.clone().cancelled_owned())
                .then({
                    let budget = self.budget.clone();
                    move |object: SourceObject| budget.clone().reserve_owned(object)
                })
                .map(|(object, reserved)| async move {
                    let result = self.prepare(scan, &object).await;
                    (object, result, reserved)
                })
                .buffered(2 * self.concurrency);
            let mut prepared = std::pin::pin!(prepared);
            while let Some((object, result, mut reserved)) = prepared.next().await {
                // The lake or the ledger refuses writes: take no more (those not sent are
                // left for a later scan).
                if self.sink.is_down() {
                    break;
                }
                match result {
                    Ok(p) => {
                        if let Some(reserved) = reserved.as_mut() {
                            self.budget.settle(reserved, p.decoded.memory_size());
                        }
                        if sender.send((p, reserved)).await.is_err() {
                            break;
                        }
                        sent += 1;
                    }
                    Err(error) => {
                        self.object_failed(scan, &object, &error);
                        failed += 1;
                        done(1);
                    }
                }
            }
            (failed, sent)
        };
        // A full group commits while the next one fills; one commit at a time, in order.
        let consume = async {
            let (mut committed, mut failed, mut deferred) = (0, 0, 0);
            let mut group = self.new_group();
            let mut committing: Option<Committing> = None;
            let mut next = receiver.recv().await;
            while let Some((prepared, reserved)) = next.take() {
                if self.sink.is_down() {
                    deferred += 1;
                    done(1);
                } else {
                    let added;
                    (group, added) = self.add_to(group, prepared).await;
                    // Its rows are the group's now, and count against its bounds.
                    drop(reserved);
                    if let Err(failure) = added {
                        let n = self.group_failed(scan, failure);
                        failed += n;
                        done(n);
                    }
                }
                next = receiver.recv().await;
                if group.is_full() || (next.is_none() && !group.is_empty()) {
                    let full = std::mem::replace(&mut group, self.new_group());
                    let (ok, bad, full) =
                        self.end_commit(scan, committing.take(), Some(full)).await;
                    (committed, failed) = (committed + ok, failed + bad);
                    done(ok + bad);
                    committing = full.map(|g| self.start_commit(g));
                }
            }
            let (ok, bad, _) = self.end_commit(scan, committing.take(), None).await;
            done(ok + bad);
            (committed + ok, failed + bad, deferred)
        };
        let count = fresh.objects.len();
        let ((produce_failed, sent), (committed, consume_failed, consume_deferred)) =
            tokio::join!(produce, consume);
        drop(fresh);
        let never_sent = count - sent - produce_failed;
        report.processed = committed + consume_failed + produce_failed;
        report.failed = consume_failed + produce_failed;
        report.deferred = consume_deferred + never_sent;
        done(never_sent);
        Ok(report)
    }
}
