//! `GET /metrics`: this process's ingest counters in the Prometheus text format.
//!
//! The counters live in [`IngestStats`] (atomics the pipeline bumps); at each scrape a
//! [`Collector`] reads one snapshot of them and encodes it with `prometheus-client`, so the
//! pipeline never depends on the metrics library. Names are prefixed `auditlake_`; counters end
//! in `_total`. The lag is the newest object seen (listed or notified) minus the newest ingested.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::pipeline::IngestStats;

/// Reads [`IngestStats`] at scrape time.
struct IngestCollector {
    stats: Arc<IngestStats>,
    /// Alert deliveries by state, read from the outbox at scrape time.
    deliveries: Arc<dyn Fn() -> Vec<(String, u64)> + Send + Sync>,
}

impl std::fmt::Debug for IngestCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestCollector")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Encodes one metric family: a single unlabelled value, or one series per label set.
fn family<V: Copy + Default, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(&[(&str, &str)], V)],
    metric: impl Fn(V) -> M,
) -> Result<(), std::fmt::Error> {
    let metric_type = metric(V::default()).metric_type();
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    if let &[(labels, value)] = series
        && labels.is_empty()
    {
        return metric(value).encode(family);
    }
    for (labels, value) in series {
        metric(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(&[(&str, &str)], u64)],
) -> Result<(), std::fmt::Error> {
    family(encoder, name, help, series, ConstCounter::new)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(&[(&str, &str)], i64)],
) -> Result<(), std::fmt::Error> {
    family(encoder, name, help, series, ConstGauge::new)
}

impl Collector for IngestCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.stats.snapshot();
        counter(
            &mut e,
            "objects",
            "Source objects handled by this process, by outcome.",
            &[
                (&[("outcome", "ingested")], s.objects_ingested),
                (&[("outcome", "skipped")], s.objects_skipped),
                (&[("outcome", "failed")], s.objects_failed),
            ],
        )?;
        counter(
            &mut e,
            "bytes_read",
            "Bytes read from sources (compressed, as stored).",
            &[(&[], s.bytes_read)],
        )?;
        counter(
            &mut e,
            "records",
            "Rows written to the lake, by table.",
            &[
                (&[("table", "cloudtrail")], s.cloudtrail_rows),
                (&[("table", "mongodb_audit")], s.mongodb_audit_rows),
                (&[("table", "rejected")], s.rejected_rows),
            ],
        )?;
        counter(
            &mut e,
            "rejects",
            "Records set aside in the rejected table.",
            &[(&[], s.rejected_rows)],
        )?;
        counter(
            &mut e,
            "duplicate_events",
            "CloudTrail records dropped because another object holds the same eventID.",
            &[(&[], s.duplicate_events)],
        )?;
        counter(
            &mut e,
            "digests",
            "CloudTrail digest files seen.",
            &[(&[], s.digests)],
        )?;
        counter(&mut e, "alerts", "Alerts raised.", &[(&[], s.alerts)])?;
        counter(&mut e, "scans", "Source listings.", &[(&[], s.scans)])?;
        counter(
            &mut e,
            "notifications",
            "SQS messages received, by outcome.",
            &[
                (&[("outcome", "received")], s.notifications),
                (&[("outcome", "ignored")], s.notifications_ignored),
                (&[("outcome", "malformed")], s.notifications_malformed),
            ],
        )?;
        counter(
            &mut e,
            "cloudwatch_events",
            "Log events read from CloudWatch Logs.",
            &[(&[], s.cloudwatch_events)],
        )?;
        let errors = self.stats.errors();
        let series: Vec<([(&str, &str); 1], u64)> = errors
            .iter()
            .map(|(kind, n)| ([("kind", *kind)], *n))
            .collect();
        let series: Vec<(&[(&str, &str)], u64)> =
            series.iter().map(|(l, n)| (l.as_slice(), *n)).collect();
        counter(&mut e, "errors", "Errors, by kind.", &series)?;

        let seconds = |micros: i64| micros / 1_000_000;
        gauge(
            &mut e,
            "newest_seen_object_timestamp_seconds",
            "Modification time of the newest object listed or notified.",
            &[(&[], seconds(s.newest_seen_micros))],
        )?;
        gauge(
            &mut e,
            "newest_ingested_object_timestamp_seconds",
            "Modification time of the newest object ingested.",
            &[(&[], seconds(s.newest_ingested_micros))],
        )?;
        gauge(
            &mut e,
            "lag_seconds",
            "Newest object seen minus newest ingested.",
            &[(
                &[],
                seconds((s.newest_seen_micros - s.newest_ingested_micros).max(0)),
            )],
        )?;
        gauge(
            &mut e,
            "idle",
            "1 when the last round of every source found nothing to do.",
            &[(
                &[],
                i64::from(self.stats.idle.load(std::sync::atomic::Ordering::Relaxed)),
            )],
        )?;
        let deliveries = (self.deliveries)();
        let labels: Vec<[(&str, &str); 1]> = deliveries
            .iter()
            .map(|(state, _)| [("state", state.as_str())])
            .collect();
        let series: Vec<(&[(&str, &str)], i64)> = labels
            .iter()
            .zip(&deliveries)
            .map(|(l, (_, n))| (l.as_slice(), i64::try_from(*n).unwrap_or(i64::MAX)))
            .collect();
        gauge(
            &mut e,
            "alert_deliveries",
            "Alert deliveries in the outbox, by state.",
            &series,
        )?;
        Ok(())
    }
}

/// The metrics of `stats` (and the outbox's delivery states) as Prometheus text.
pub fn render(
    stats: &Arc<IngestStats>,
    deliveries: Arc<dyn Fn() -> Vec<(String, u64)> + Send + Sync>,
) -> String {
    let mut registry = Registry::with_prefix("auditlake");
    registry.register_collector(Box::new(IngestCollector {
        stats: stats.clone(),
        deliveries,
    }));
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::error!(error = %e, "encoding metrics");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn counters_are_exposed_with_labels() {
        let stats = Arc::new(IngestStats::default());
        stats.objects_ingested.store(3, Ordering::Relaxed);
        stats.cloudtrail_rows.store(42, Ordering::Relaxed);
        stats.count_error("gone");
        stats
            .newest_seen_micros
            .store(10_000_000, Ordering::Relaxed);
        stats
            .newest_ingested_micros
            .store(4_000_000, Ordering::Relaxed);
        let text = render(&stats, Arc::new(|| vec![("delivered".to_owned(), 2)]));
        for line in [
            "auditlake_objects_total{outcome=\"ingested\"} 3",
            "auditlake_records_total{table=\"cloudtrail\"} 42",
            "auditlake_errors_total{kind=\"gone\"} 1",
            "auditlake_lag_seconds 6",
            "auditlake_bytes_read_total 0",
            "auditlake_alert_deliveries{state=\"delivered\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
