//! The `auditlake` command line (design.md §6): argument parsing and one function per command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use auditlake_query::QueryEngine;
use auditlake_query::format::{self, Format};

use crate::config::{Config, ConfigFile, SourceSpec};
use crate::sample::{self, SampleOptions};
use crate::service::{self, Service};

#[derive(Debug, Parser)]
#[command(
    name = "auditlake",
    version,
    about = "MongoDB Atlas + AWS audit trail as a queryable security lake"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: ingest continuously and serve SQL over HTTP.
    Serve(ServeArgs),
    /// Ingest everything currently in the sources once, then exit.
    Ingest(IngestArgs),
    /// Run one SQL query over the lake and print the result.
    Sql(SqlArgs),
    /// Sample data.
    #[command(subcommand)]
    Sample(SampleCommand),
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Detection.
    #[command(subcommand)]
    Detect(DetectCommand),
}

#[derive(Debug, Subcommand)]
enum DetectCommand {
    /// Run the configured rules over the lake and print the alerts they raise.
    Replay {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Lake folder to read.
        #[arg(long, default_value = "lake")]
        lake: PathBuf,
        /// Earliest event time (RFC 3339, or a date YYYY-MM-DD).
        #[arg(long)]
        since: Option<String>,
        /// Event time bound, exclusive (RFC 3339, or a date YYYY-MM-DD).
        #[arg(long)]
        until: Option<String>,
        /// Output: one JSON alert per line, or a table.
        #[arg(long, default_value = "ndjson", value_parser = ["ndjson", "table"])]
        format: String,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML configuration; without it, `./sample-data` is ingested into `./lake`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// HTTP address (overrides `http.listen`).
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
    /// Lake folder (overrides `lake`).
    #[arg(long)]
    lake: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct IngestArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    /// Lake folder to write into.
    #[arg(long)]
    lake: PathBuf,
    /// Sources: local folders.
    #[arg(required = true)]
    sources: Vec<String>,
}

#[derive(Debug, Args)]
struct SqlArgs {
    /// Lake folder to query.
    #[arg(long, default_value = "lake")]
    lake: PathBuf,
    /// Output format.
    #[arg(long, default_value = "table", value_parser = ["table", "csv", "json", "ndjson"])]
    format: String,
    /// The query.
    query: String,
}

#[derive(Debug, Subcommand)]
enum SampleCommand {
    /// Write a day of sample CloudTrail and Atlas audit objects, and MANIFEST.json with their counts.
    Generate {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = SampleOptions::default().seed)]
        seed: u64,
        /// CloudTrail records in total.
        #[arg(long, default_value_t = SampleOptions::default().cloudtrail_records)]
        cloudtrail_records: usize,
        /// Audit lines in total.
        #[arg(long, default_value_t = SampleOptions::default().audit_lines)]
        audit_lines: usize,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file; names the bad field.
    Check { file: PathBuf },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The config of `path`; without one, `fallback`.
fn load_config(path: Option<&Path>, fallback: fn() -> ConfigFile) -> anyhow::Result<Config> {
    let file = match path {
        Some(p) => ConfigFile::read(p)?,
        None => fallback(),
    };
    Ok(Config::from_file(file, &env_var)?)
}

/// An RFC 3339 time or a date, as microseconds.
fn parse_time(flag: &str, text: &str) -> anyhow::Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_micros());
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").with_context(|| {
        format!("--{flag} {text:?}: use RFC 3339 (2026-11-01T00:00:00Z) or a date (2026-11-01)")
    })?;
    Ok(date
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc()
        .timestamp_micros())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Ingest(args) => ingest(args),
        Command::Sql(args) => sql(args),
        Command::Sample(SampleCommand::Generate {
            out,
            seed,
            cloudtrail_records,
            audit_lines,
        }) => {
            let options = SampleOptions {
                seed,
                cloudtrail_records,
                audit_lines,
            };
            let manifest = sample::generate(&out, &options)?;
            println!("{}", serde_json::to_string_pretty(&manifest)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Detect(DetectCommand::Replay {
            config,
            lake,
            since,
            until,
            format,
        }) => detect_replay(
            config.as_deref(),
            &lake,
            since.as_deref(),
            until.as_deref(),
            &format,
        ),
        Command::Config(ConfigCommand::Check { file }) => {
            let config = load_config(Some(&file), ConfigFile::default)?;
            println!(
                "{} is valid: lake {}, {} source(s), HTTP on {}",
                file.display(),
                config.lake.display(),
                config.sources.len(),
                config.http_listen
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = load_config(args.config.as_deref(), ConfigFile::builtin)?;
    if let Some(addr) = args.http {
        config = config.with_http_listen(addr)?;
    }
    if let Some(lake) = args.lake {
        config.state_dir = lake.join("_state");
        config.lake = lake;
    }
    for source in &config.sources {
        let SourceSpec::Folder { path, .. } = source;
        if !path.is_dir() {
            bail!(
                "source folder {} does not exist (run from the project folder, or pass --config)",
                path.display()
            );
        }
    }
    runtime()?.block_on(async move {
        let service = Service::bind(config.clone()).await?;
        let url = format!("http://{}", service.local_addr());
        print_welcome(&url, &config);
        service.run(shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn print_welcome(url: &str, config: &Config) {
    use std::io::Write;
    let auth = match &config.http_token {
        Some(_) => format!(" -H \"Authorization: Bearer ${}\"", config.http_token_env),
        None => String::new(),
    };
    let examples = [
        "SELECT user_arn, session_issuer_arn, source_ip, count(*) AS n FROM cloudtrail WHERE event_name = 'AssumeRole' GROUP BY 1, 2, 3 ORDER BY n DESC",
        "SELECT atype, count(*) AS n FROM mongodb_audit GROUP BY atype ORDER BY n DESC",
        "SELECT remote_ip, user, count(*) AS failures FROM mongodb_audit WHERE atype = 'authenticate' AND result <> 0 GROUP BY 1, 2 ORDER BY failures DESC",
    ];
    let mut text = format!(
        "auditlake is ingesting into {} and serving SQL at {url}\n  status:  curl -s{auth} {url}/v1/status\n  tables:  curl -s{auth} {url}/v1/tables\nExample queries:\n",
        config.lake.display()
    );
    for sql in examples {
        text.push_str(&format!(
            "  curl -s{auth} '{url}/v1/sql?format=ndjson' -d \"{sql}\"\n"
        ));
    }
    text.push_str("Stop with Ctrl-C.\n");
    // A closed stdout (`| head -1`) must not stop the service.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

fn ingest(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let mut config = load_config(args.config.as_deref(), ConfigFile::default)?;
    config.state_dir = args.lake.join("_state");
    config.lake = args.lake;
    config.settle = std::time::Duration::ZERO;
    config.sources = args
        .sources
        .iter()
        .map(|s| {
            if s.contains("://") {
                bail!("source {s}: only local folders are supported by this build");
            }
            Ok(SourceSpec::Folder {
                path: PathBuf::from(s),
                atlas_project: None,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    runtime()?.block_on(async move {
        let service::Ingestion {
            pipeline,
            sources,
            deliverer,
        } = service::open_pipeline(&config)?;
        let stop = tokio_util::sync::CancellationToken::new();
        let mut failed = 0;
        for source in &sources {
            let report = pipeline.scan(source.as_ref(), &stop).await?;
            failed += report.failed;
        }
        let s = pipeline.stats().snapshot();
        println!(
            "ingested {} objects ({} skipped, {failed} failed, {} digests): {} cloudtrail rows, \
             {} mongodb_audit rows, {} rejected, {} duplicate events dropped, {} bytes read",
            s.objects_ingested,
            s.objects_skipped,
            s.digests,
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
        if failed > 0 {
            bail!("{failed} object(s) could not be ingested; see the log above");
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn sql(args: SqlArgs) -> anyhow::Result<ExitCode> {
    let format = Format::parse(&args.format).context("unknown format")?;
    if !args.lake.is_dir() {
        bail!("lake folder {} does not exist", args.lake.display());
    }
    runtime()?.block_on(async move {
        let engine = QueryEngine::open(&args.lake).await?;
        let output = engine.query(&args.query).await?;
        let bytes = format::encode(&output, format)?;
        use std::io::Write;
        std::io::stdout().write_all(&bytes)?;
        Ok(ExitCode::SUCCESS)
    })
}

fn detect_replay(
    config: Option<&Path>,
    lake: &Path,
    since: Option<&str>,
    until: Option<&str>,
    format: &str,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config, ConfigFile::builtin)?;
    let since = since.map(|t| parse_time("since", t)).transpose()?;
    let until = until.map(|t| parse_time("until", t)).transpose()?;
    if !lake.is_dir() {
        bail!("lake folder {} does not exist", lake.display());
    }
    runtime()?.block_on(async move {
        let engine = QueryEngine::open(lake).await?;
        let alerts = crate::replay::replay(&engine, &config.detect, since, until).await?;
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if format == "table" {
            let batch = auditlake_detect::alert::to_batch(&alerts)?;
            writeln!(
                out,
                "{}",
                arrow::util::pretty::pretty_format_batches(&[batch])?
            )?;
        } else {
            for alert in &alerts {
                writeln!(out, "{}", serde_json::to_string(alert)?)?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
