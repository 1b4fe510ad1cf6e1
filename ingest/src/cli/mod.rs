//! The `auditlake` command line (design.md §6): argument parsing and one function per command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use auditlake_query::QueryEngine;
use auditlake_query::format::{self, Format};

use crate::aws::AwsSettings;
use crate::config::{Config, ConfigFile, LakeSpec, SourceSpec};
use crate::sample::{self, SampleOptions};
use crate::service::Service;

mod ingest;

use ingest::IngestArgs;

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
        /// Lake to read: a folder or s3://bucket/prefix.
        #[arg(long, default_value = "lake")]
        lake: String,
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
    /// Serve the Postgres wire protocol on this address (overrides `http.pg_listen`).
    #[arg(long)]
    pg: Option<std::net::SocketAddr>,
    /// Lake: a folder or s3://bucket/prefix (overrides `lake`).
    #[arg(long)]
    lake: Option<String>,
    /// Folder for the ledger and cursors (overrides `state_dir`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SqlArgs {
    /// Query limits, the access chain's settings and AWS settings for a lake on S3.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Lake to query: a folder or s3://bucket/prefix.
    #[arg(long, default_value = "lake")]
    lake: String,
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
        /// The day the events happen on (YYYY-MM-DD, UTC).
        #[arg(long, default_value_t = sample::SAMPLE_DAY)]
        day: chrono::NaiveDate,
        /// Average bytes of JSON per background CloudTrail record (larger request parameters
        /// and response elements, varying from record to record); default: their natural size,
        /// about 0.9 KB.
        #[arg(long)]
        record_size: Option<usize>,
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
        Command::Ingest(args) => ingest::ingest(args),
        Command::Sql(args) => sql(args),
        Command::Sample(SampleCommand::Generate {
            out,
            seed,
            cloudtrail_records,
            audit_lines,
            day,
            record_size,
        }) => {
            let options = SampleOptions {
                seed,
                cloudtrail_records,
                audit_lines,
                day,
                cloudtrail_record_bytes: record_size,
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
    if let Some(addr) = args.pg {
        config = config.with_pg_listen(addr)?;
    }
    if let Some(lake) = args.lake {
        config.lake = lake_arg(&lake, &config)?;
        config.state_dir = config.lake.default_state_dir();
    }
    if let Some(state_dir) = args.state_dir {
        config.state_dir = state_dir;
    }
    for source in &config.sources {
        let SourceSpec::Folder { path, .. } = source else {
            continue;
        };
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
        print_welcome(&url, service.pg_addr(), &config);
        service.run(shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn print_welcome(url: &str, pg: Option<std::net::SocketAddr>, config: &Config) {
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
    let doing = if config.sources.is_empty() {
        format!(
            "auditlake is serving SQL over {} at {url} (the configuration names no [[source]]: queries only, nothing is ingested)",
            config.lake.display()
        )
    } else {
        format!(
            "auditlake is ingesting into {} and serving SQL at {url}",
            config.lake.display()
        )
    };
    let mut text = format!(
        "{doing}\n  page:    open {url}/ in a browser\n  status:  curl -s{auth} {url}/v1/status\n  tables:  curl -s{auth} {url}/v1/tables\nExample queries:\n"
    );
    for sql in examples {
        text.push_str(&format!(
            "  curl -s{auth} '{url}/v1/sql?format=ndjson' -d \"{sql}\"\n"
        ));
    }
    if let Some(pg) = pg {
        let password = match &config.http_token {
            Some(_) => format!("PGPASSWORD=${} ", config.http_token_env),
            None => String::new(),
        };
        text.push_str(&format!(
            "Postgres clients: {password}psql -h {} -p {} -U auditlake auditlake\n",
            pg.ip(),
            pg.port()
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

/// The lake named by `--lake`; on S3 it is reached with the configured `[lake_aws]` settings.
fn lake_arg(text: &str, config: &Config) -> anyhow::Result<LakeSpec> {
    let aws = match &config.lake {
        LakeSpec::S3 { aws, .. } => aws.clone(),
        LakeSpec::Local(_) => AwsSettings::new(),
    };
    LakeSpec::parse(text, aws).map_err(|m| anyhow::anyhow!("--lake: {m}"))
}

/// Opens an existing lake for reading, with the configuration's query limits and access chain.
async fn open_for_query(lake: &LakeSpec, config: &Config) -> anyhow::Result<QueryEngine> {
    if let LakeSpec::Local(path) = lake
        && !path.is_dir()
    {
        bail!("lake folder {} does not exist", path.display());
    }
    Ok(QueryEngine::open_with(&lake.open().await?, config.query_limits, &config.access).await?)
}

fn sql(args: SqlArgs) -> anyhow::Result<ExitCode> {
    let format = Format::parse(&args.format).context("unknown format")?;
    let config = load_config(args.config.as_deref(), ConfigFile::default)?;
    let lake = lake_arg(&args.lake, &config)?;
    runtime()?.block_on(async move {
        let engine = open_for_query(&lake, &config).await?;
        let output = engine.query(&args.query).await?;
        let bytes = format::encode(&output, format)?;
        use std::io::Write;
        std::io::stdout().write_all(&bytes)?;
        Ok(ExitCode::SUCCESS)
    })
}

fn detect_replay(
    config: Option<&Path>,
    lake: &str,
    since: Option<&str>,
    until: Option<&str>,
    format: &str,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config, ConfigFile::builtin)?;
    let since = since.map(|t| parse_time("since", t)).transpose()?;
    let until = until.map(|t| parse_time("until", t)).transpose()?;
    let lake = lake_arg(lake, &config)?;
    runtime()?.block_on(async move {
        let engine = open_for_query(&lake, &config).await?;
        let alerts = crate::replay::replay(&engine, &config.rules, since, until).await?;
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
