//! The built-in page at `/` in a real headless Chromium (Debian's `chromium`), driven over
//! WebDriver by `chromedriver`: it asks for the token, shows the ingest status, alerts, charts and
//! sessions of the sample lake, runs SQL typed into its console, shows errors, never renders data
//! as HTML, loads nothing from another origin, and a screenshot of it is not blank.
//!
//! `tests/browser.sh` installs Chromium and chromedriver; `AUDITLAKE_TEST_CHROMIUM` and
//! `AUDITLAKE_TEST_CHROMEDRIVER` name them (default: `/usr/bin/chromium`, `/usr/bin/chromedriver`).

use crate::common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::service::Running;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const TOKEN: &str = "web-test-token-5d0e";

fn program(variable: &str, default: &str) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var(variable).unwrap_or_else(|_| default.to_owned()));
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").is_err(),
        "{} is missing ({variable}); tests/browser.sh installs it",
        path.display()
    );
    eprintln!("skipped: {} is missing", path.display());
    None
}

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start(chromedriver: &PathBuf) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        // Owned by `Driver` at once, so that its drop stops the process on every path.
        let driver = Driver {
            child: Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
            url: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http
                .get(format!("{}/status", driver.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return driver;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("chromedriver did not answer on {}", driver.url);
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, chromium: &PathBuf, profile: &std::path::Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1400,1800",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("browser session")
}

/// Evaluates `expression` in the page until it is true, for at most `timeout`.
async fn wait_until(client: &Client, expression: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let value = client
            .execute(&format!("return Boolean({expression});"), vec![])
            .await
            .expect("execute");
        if value == Value::Bool(true) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for `{expression}`"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

async fn count(client: &Client, css: &str) -> usize {
    client
        .find_all(Locator::Css(css))
        .await
        .expect("find_all")
        .len()
}

/// Types `token` into the page's token form and submits it.
async fn submit_token(client: &Client, token: &str) {
    client
        .find(Locator::Css("#token"))
        .await
        .expect("#token")
        .send_keys(token)
        .await
        .expect("type");
    client
        .find(Locator::Css("#token-save"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
}

/// Types `sql` into the console, runs it and waits for a result or an error.
async fn run_console(client: &Client, sql: &str) -> String {
    let textarea = client.find(Locator::Css("#sql")).await.expect("#sql");
    textarea.clear().await.expect("clear");
    textarea.send_keys(sql).await.expect("type");
    client
        .find(Locator::Css("#run"))
        .await
        .expect("#run")
        .click()
        .await
        .expect("click");
    wait_until(
        client,
        "['done', 'error'].includes(document.getElementById('result').dataset.state)",
        Duration::from_secs(20),
    )
    .await;
    client
        .execute(
            "return document.getElementById('result').dataset.state;",
            vec![],
        )
        .await
        .expect("state")
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Share of pixels that differ from the most common colour, and the number of distinct colours.
fn screenshot_content(png_bytes: &[u8]) -> (f64, usize) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut pixels).expect("PNG frame");
    let channels = info.color_type.samples();
    let mut colours = std::collections::HashMap::<&[u8], usize>::new();
    for pixel in pixels[..info.buffer_size()].chunks_exact(channels) {
        *colours.entry(&pixel[..3.min(channels)]).or_default() += 1;
    }
    let total: usize = colours.values().sum();
    let background = colours.values().copied().max().unwrap_or(0);
    (
        (total - background) as f64 / total.max(1) as f64,
        colours.len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_sample_lake_and_runs_sql_in_headless_chromium() {
    let (Some(chromium), Some(chromedriver)) = (
        program("AUDITLAKE_TEST_CHROMIUM", "/usr/bin/chromium"),
        program("AUDITLAKE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, _manifest) = common::service::sample_config(dir.path(), TOKEN);
    let service = Running::start(config).await;
    service.wait_idle().await;

    let driver = Driver::start(&chromedriver).await;
    let client = browser(&driver, &chromium, &dir.path().join("profile")).await;
    Box::pin(exercise_page(&client, &service)).await;
    client.close().await.expect("close browser");
    service.stop().await;
}

async fn exercise_page(client: &Client, service: &Running) {
    client
        .goto(&format!("{}/", service.base))
        .await
        .expect("goto");
    assert_eq!(client.title().await.expect("title"), "auditlake");

    // Without a token the page shows no data and asks for one; a wrong token is refused.
    wait_until(
        client,
        "document.getElementById('token-form').checkVisibility()",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(count(client, "#status .card").await, 0);
    submit_token(client, "wrong-token").await;
    wait_until(
        client,
        "document.getElementById('token-error').textContent.includes('refused')",
        Duration::from_secs(10),
    )
    .await;
    submit_token(client, TOKEN).await;
    wait_until(
        client,
        "document.body.dataset.loaded === 'true'",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        !client
            .find(Locator::Css("#token-form"))
            .await
            .expect("#token-form")
            .is_displayed()
            .await
            .expect("displayed"),
        "the token form is still shown after a good token"
    );

    // Status cards carry the lake's numbers.
    let cloudtrail_rows = service.scalar("SELECT count(*) FROM cloudtrail").await;
    let shown = text(client, "#status [data-field=cloudtrail_rows] .value").await;
    assert_eq!(shown.replace(',', ""), cloudtrail_rows.to_string());
    assert!(cloudtrail_rows > 0);
    let source = text(client, "#sources tbody td").await;
    assert!(
        source.starts_with("folder:") && source.ends_with("data"),
        "{source}"
    );

    // Alerts and sessions list the newest rows of their tables.
    let alerts = service.scalar("SELECT count(*) FROM alerts").await;
    assert!(alerts > 0, "the sample story raises alerts");
    assert_eq!(
        count(client, "#alerts tbody tr").await as i64,
        alerts.min(20)
    );
    let sessions = service.scalar("SELECT count(*) FROM db_sessions").await;
    assert!(sessions > 0);
    assert_eq!(
        count(client, "#sessions tbody tr").await as i64,
        sessions.min(50)
    );

    // Each chart was drawn from rows of the lake.
    let assumptions = service
        .scalar("SELECT count(*) FROM assume_role_events")
        .await;
    assert!(assumptions > 0);
    for chart in ["chart-assumptions", "chart-atypes", "chart-failed-logins"] {
        let points = client
            .execute(
                &format!("return Number(document.getElementById('{chart}').dataset.points);"),
                vec![],
            )
            .await
            .expect("points");
        assert!(points.as_f64().unwrap_or(0.0) > 0.0, "{chart}: {points}");
    }
    let drawn_assumptions = client
        .execute(
            "return Chart.getChart('chart-assumptions').data.datasets\
             .flatMap(d => d.data).reduce((a, b) => a + b, 0);",
            vec![],
        )
        .await
        .expect("chart data");
    assert_eq!(drawn_assumptions.as_i64(), Some(assumptions));

    // The console runs what is typed and shows the result.
    let state = run_console(client, "SELECT count(*) AS n FROM mongodb_audit").await;
    assert_eq!(state, "done");
    let audit_rows = service.scalar("SELECT count(*) FROM mongodb_audit").await;
    assert_eq!(
        text(client, "#result tbody td").await,
        audit_rows.to_string()
    );
    assert!(text(client, "#result-meta").await.starts_with("1 row in "));

    // A write is refused with the endpoint's error, shown to the user.
    let state = run_console(client, "DROP TABLE cloudtrail").await;
    assert_eq!(state, "error");
    let error = text(client, "#result-error").await;
    assert!(error.starts_with("rejected:"), "{error}");
    assert_eq!(
        service.scalar("SELECT count(*) FROM cloudtrail").await,
        cloudtrail_rows
    );

    // Data is shown as text, never parsed as HTML.
    let markup = r#"<img src=x onerror="document.body.dataset.injected='yes'">"#;
    let state = run_console(
        client,
        &format!("SELECT '{}' AS html", markup.replace('\'', "''")),
    )
    .await;
    assert_eq!(state, "done", "{}", text(client, "#result-error").await);
    assert_eq!(text(client, "#result tbody td").await, markup);
    assert_eq!(count(client, "#result img").await, 0);
    let injected = client
        .execute("return document.body.dataset.injected || null;", vec![])
        .await
        .expect("injected");
    assert_eq!(injected, Value::Null);

    // Every resource came from the service itself, and the page raised no script error.
    let resources = client
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name);",
            vec![],
        )
        .await
        .expect("resources");
    let resources = resources.as_array().cloned().unwrap_or_default();
    assert!(resources.len() >= 3, "{resources:?}");
    for resource in &resources {
        let url = resource.as_str().unwrap_or_default();
        assert!(url.starts_with(&service.base), "{url} is not the service's");
    }
    let errors = client
        .execute("return document.body.dataset.errors || null;", vec![])
        .await
        .expect("errors");
    assert_eq!(errors, Value::Null, "the page recorded script errors");

    // Back to the first example so the screenshot shows a typical page.
    let state = run_console(
        client,
        "SELECT caller_principal, source_ip, count(*) AS n FROM assume_role_events GROUP BY 1, 2",
    )
    .await;
    assert_eq!(state, "done");
    let png = client.screenshot().await.expect("screenshot");
    let saved = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-page.png");
    std::fs::write(&saved, &png).expect("save screenshot");
    let (drawn, colours) = screenshot_content(&png);
    eprintln!(
        "screenshot {}: {:.1}% of pixels drawn, {colours} colours",
        saved.display(),
        drawn * 100.0
    );
    assert!(drawn > 0.10, "the screenshot is almost blank: {drawn:.3}");
    assert!(colours > 50, "the screenshot has only {colours} colours");
}
