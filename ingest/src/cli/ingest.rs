//! `auditlake ingest`: a one-shot run over the sources named on the command line, each taking
//! the settings of a matching configured source or, without one, the defaults a `[[source]]`
//! table with only its name would get; the summary is printed and the exit code says whether
//! every object was ingested.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::{lake_arg, load_config, parse_time, runtime};
use crate::config::{
    CloudwatchSourceConfig, ConfigFile, FolderSourceConfig, S3Location, S3SourceConfig, SourceSpec,
};
use crate::service;

#[derive(Debug, Args)]
pub(super) struct IngestArgs {
    /// Rules, limits and AWS settings (a positional source that matches a configured one, by
    /// bucket and prefix or by log group, takes its settings).
    #[arg(long)]
    pub(super) config: Option<PathBuf>,
    /// Lake to write into: a folder or s3://bucket/prefix.
    #[arg(long)]
    pub(super) lake: String,
    /// Folder for the ledger and cursors. Default: LAKE/_state for a folder, ./auditlake-state
    /// for a lake on S3.
    #[arg(long)]
    pub(super) state_dir: Option<PathBuf>,
    /// Only objects whose key time (CloudTrail delivery time, Atlas file time) or log events
    /// whose time is at or after this (RFC 3339, or a date YYYY-MM-DD).
    #[arg(long)]
    pub(super) since: Option<String>,
    /// Only before this (exclusive; same forms as --since).
    #[arg(long)]
    pub(super) until: Option<String>,
    /// Sources: local folders, `s3://bucket[/prefix]`, `cloudwatch://log-group`.
    #[arg(required = true)]
    pub(super) sources: Vec<String>,
}

/// The sources named on the `ingest` command line, with the settings of matching configured
/// sources and the `--since`/`--until` window. A source not in the configuration is built and
/// checked as a `[[source]]` table with only its name set would be.
fn command_line_sources(
    names: &[String],
    configured: &[SourceSpec],
    since: Option<i64>,
    until: Option<i64>,
) -> anyhow::Result<Vec<SourceSpec>> {
    let mut specs = Vec::new();
    for name in names {
        let field = |key: &str| format!("source {name}: {key}");
        if name.starts_with("s3://") {
            let location =
                S3Location::parse(name).map_err(|m| anyhow::anyhow!("source {name}: {m}"))?;
            let matching = configured.iter().find_map(|c| match c {
                SourceSpec::S3 { spec, queue_wait }
                    if spec.bucket == location.bucket && spec.prefix == location.prefix =>
                {
                    Some((spec.clone(), *queue_wait))
                }
                _ => None,
            });
            let (mut spec, queue_wait) = match matching {
                Some(found) => found,
                None => S3SourceConfig {
                    bucket: location.bucket,
                    prefix: Some(location.prefix),
                    ..S3SourceConfig::default()
                }
                .validate(&field)?,
            };
            // One-shot: the listing alone, never the queue.
            spec.queue_url = None;
            spec.since_micros = since;
            spec.until_micros = until;
            specs.push(SourceSpec::S3 { spec, queue_wait });
        } else if let Some(group) = name.strip_prefix("cloudwatch://") {
            if group.is_empty() {
                bail!("source {name}: name a log group, as cloudwatch://GROUP");
            }
            let mut spec = CloudwatchSourceConfig {
                log_groups: vec![group.to_owned()],
                ..CloudwatchSourceConfig::default()
            }
            .validate(&field)?;
            if let Some(aws) = configured.iter().find_map(|c| match c {
                SourceSpec::Cloudwatch(spec) if spec.log_groups.iter().any(|g| g == group) => {
                    Some(spec.aws.clone())
                }
                _ => None,
            }) {
                spec.aws = aws;
            }
            // One-shot: everything the group still holds, unless told otherwise.
            spec.initial_look_back = std::time::Duration::ZERO;
            spec.since_micros = Some(since.unwrap_or(0));
            spec.until_micros = until;
            specs.push(SourceSpec::Cloudwatch(spec));
        } else if name.contains("://") {
            bail!("source {name}: use a folder, s3://bucket/prefix or cloudwatch://log-group");
        } else {
            specs.push(
                FolderSourceConfig {
                    path: PathBuf::from(name),
                    atlas_project: None,
                }
                .validate(&field)?,
            );
        }
    }
    Ok(specs)
}

pub(super) fn ingest(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let mut config = load_config(args.config.as_deref(), ConfigFile::default)?;
    config.lake = lake_arg(&args.lake, &config)?;
    config.state_dir = args
        .state_dir
        .unwrap_or_else(|| config.lake.default_state_dir());
    config.settle = std::time::Duration::ZERO;
    let since = args
        .since
        .as_deref()
        .map(|t| parse_time("since", t))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|t| parse_time("until", t))
        .transpose()?;
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        bail!("--since must be before --until");
    }
    config.sources = command_line_sources(&args.sources, &config.sources, since, until)?;
    runtime()?.block_on(async move {
        let service::Ingestion {
            pipeline,
            sources,
            deliverer,
            ..
        } = service::open_pipeline(&config).await?;
        // A one-shot run leaves what the lake or the ledger refuses for the next run.
        pipeline.set_wait_for_sink(false);
        let stop = tokio_util::sync::CancellationToken::new();
        let progress = indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} objects, {per_sec}, eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let (mut failed, mut deferred) = (0, 0);
        let mut unrecognized = Vec::new();
        // Queues are left alone: the listings of their buckets find every object.
        for listed in sources.iter().filter(|l| !l.source.receives()) {
            progress.set_message(listed.source.name().to_owned());
            let report = pipeline
                .drain(listed.source.as_ref(), &stop, Some(&progress))
                .await?;
            failed += report.failed;
            deferred += report.deferred;
            if let Some(example) = report.none_recognized {
                unrecognized.push(format!("{} (e.g. {example})", listed.source.name()));
            }
        }
        progress.finish_and_clear();
        let s = pipeline.stats().snapshot();
        println!(
            "ingested {} objects ({} skipped, {failed} failed, {} digests) and {} log events: {} cloudtrail rows, \
             {} mongodb_audit rows, {} rejected, {} duplicate events dropped, {} bytes read",
            s.objects_ingested,
            s.objects_skipped,
            s.digests,
            s.cloudwatch_events,
            s.cloudtrail_rows,
            s.mongodb_audit_rows,
            s.rejected_rows,
            s.duplicate_events,
            s.bytes_read
        );
        if s.alerts > 0 {
            println!("{} alert(s) raised; query the alerts table", s.alerts);
        }
        // One delivery pass; what is not delivered now waits in the outbox for `serve`.
        deliverer.deliver_due().await?;
        if let Some(error) = pipeline.sink_error() {
            bail!(
                "the lake or the ledger refused writes ({error}): {} object(s) not ingested and none recorded as failed; run again once they take writes",
                failed + deferred
            );
        }
        if failed > 0 {
            bail!("{failed} object(s) could not be ingested; see the log above");
        }
        if !unrecognized.is_empty() {
            bail!(
                "no object of {} matches a known layout: check the prefix (CloudTrail keys hold AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/, Atlas keys <cluster>/<host>/<logType>/)",
                unrecognized.join(", ")
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
