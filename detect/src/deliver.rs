//! Posting queued alerts to webhooks, at least once, with backoff.
//!
//! The deliverer wakes when alerts are queued (or when the next retry is due), posts each due
//! outbox row to its sink, and records the outcome. A 2xx answer delivers; anything else, or no
//! answer, schedules a retry after an exponential backoff with jitter (1 s doubling to 5 min);
//! after `give_up_after` the row is marked failed. Receivers de-duplicate with the
//! `Idempotency-Key` header (the alert id), since a crash between a post and its record re-posts.

use std::sync::Arc;
use std::time::Duration;

use crate::store::Store;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde::Deserialize;
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::alert::{Alert, Severity};
use crate::outbox::{self, Delivery, DeliveryState};

/// Header with the unix time (seconds) the signature covers.
pub const TIMESTAMP_HEADER: &str = "X-Auditlake-Timestamp";
/// Header with `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "X-Auditlake-Signature";
/// Header with the alert id, the same on every retry.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(300);

/// Body format of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The alert as JSON, signed.
    Json,
    /// A Slack incoming-webhook message.
    Slack,
}

/// `[[alerts.webhook]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Sink name, shown in `alert_deliveries`.
    pub name: String,
    #[serde(default = "json_format")]
    pub format: WebhookFormat,
    /// Environment variable holding the URL (URLs often embed secrets).
    pub url_env: String,
    /// Environment variable holding the HMAC secret (`json` format).
    pub secret_env: Option<String>,
    /// Least severity sent. Default `low` (everything).
    pub min_severity: Option<Severity>,
    /// Only these rule ids; default all.
    pub rules: Option<Vec<String>>,
}

fn json_format() -> WebhookFormat {
    WebhookFormat::Json
}

/// `[alerts]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    #[serde(default)]
    pub webhook: Vec<WebhookConfig>,
    /// Stop retrying an alert this long after it was queued. Default `24h`.
    #[serde(default, with = "humantime_serde")]
    pub give_up_after: Option<Duration>,
}

/// A webhook ready to post to.
#[derive(Clone)]
pub struct Webhook {
    pub name: String,
    pub format: WebhookFormat,
    url: String,
    secret: Option<String>,
    min_severity: Severity,
    rules: Option<Vec<String>>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Whether this sink takes `alert`.
    pub fn takes(&self, alert: &Alert) -> bool {
        alert.severity >= self.min_severity
            && self
                .rules
                .as_ref()
                .is_none_or(|r| r.iter().any(|id| id == &alert.rule_id))
    }
}

impl AlertsConfig {
    /// Resolves URLs and secrets from the environment; errors name the field.
    pub fn webhooks(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<Webhook>, crate::config::DetectConfigError> {
        let mut names = std::collections::BTreeSet::new();
        self.webhook
            .iter()
            .enumerate()
            .map(|(n, w)| {
                let field = |f: &str| format!("alerts.webhook[{n}].{f}");
                let err = |f: &str, m: String| crate::config::DetectConfigError {
                    field: field(f),
                    message: m,
                };
                if !names.insert(w.name.clone()) {
                    return Err(err("name", format!("{:?} is used twice", w.name)));
                }
                let url = env(&w.url_env).filter(|u| !u.is_empty()).ok_or_else(|| {
                    err(
                        "url_env",
                        format!("environment variable {} is not set", w.url_env),
                    )
                })?;
                let parsed = reqwest::Url::parse(&url).map_err(|e| {
                    err("url_env", format!("{} does not hold a URL: {e}", w.url_env))
                })?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(err(
                        "url_env",
                        format!("{} must hold an http(s) URL", w.url_env),
                    ));
                }
                let secret = match &w.secret_env {
                    Some(name) => Some(env(name).filter(|s| !s.is_empty()).ok_or_else(|| {
                        err(
                            "secret_env",
                            format!("environment variable {name} is not set"),
                        )
                    })?),
                    None => None,
                };
                Ok(Webhook {
                    name: w.name.clone(),
                    format: w.format,
                    url,
                    secret,
                    min_severity: w.min_severity.unwrap_or(Severity::Low),
                    rules: w.rules.clone(),
                })
            })
            .collect()
    }
}

/// `v1=<hex>` over `"<timestamp>.<body>"`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn body(format: WebhookFormat, alert: &Alert) -> Vec<u8> {
    let value = match format {
        WebhookFormat::Json => serde_json::json!({ "source": "auditlake", "alert": alert }),
        WebhookFormat::Slack => {
            let icon = match alert.severity {
                Severity::Critical | Severity::High => ":rotating_light:",
                Severity::Medium => ":warning:",
                Severity::Low => ":information_source:",
            };
            let when = chrono::DateTime::from_timestamp_micros(alert.event_time_micros)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            let evidence: Vec<String> = alert
                .evidence
                .iter()
                .take(5)
                .map(|e| match &e.event_id {
                    Some(id) => format!("eventID {id}"),
                    None => format!("{}#{}", e.source_uri, e.source_index),
                })
                .collect();
            serde_json::json!({
                "text": format!("{icon} [{}] {}: {}", alert.severity.as_str().to_uppercase(), alert.rule_id, alert.summary),
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": format!("{icon} *{}* — {}", alert.rule_id, alert.summary)}},
                    {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("severity {} · event time {when} · alert {} · {}", alert.severity.as_str(), alert.alert_id, evidence.join(", "))}]}
                ]
            })
        }
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// Delivers outbox rows; see the module documentation.
#[derive(Debug)]
pub struct Deliverer {
    db: Arc<Store>,
    sinks: Vec<Webhook>,
    client: reqwest::Client,
    wake: Arc<Notify>,
    give_up_after: Duration,
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn backoff(attempts: u32) -> Duration {
    let exp = FIRST_RETRY
        .saturating_mul(1 << attempts.min(16))
        .min(LONGEST_RETRY);
    // Full jitter in [exp/2, exp): retries of many alerts spread out.
    exp.mul_f64(rand::rng().random_range(0.5..1.0))
}

impl Deliverer {
    pub fn new(db: Arc<Store>, sinks: Vec<Webhook>, give_up_after: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Deliverer {
            db,
            sinks,
            client,
            wake: Arc::new(Notify::new()),
            give_up_after,
        }
    }

    /// Notified when alerts are queued.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let next = match self.deliver_due().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "reading the alert outbox failed");
                    Some(now_micros() + 5_000_000)
                }
            };
            let wait = next.map_or(Duration::from_secs(60), |n| {
                Duration::from_micros(u64::try_from(n - now_micros()).unwrap_or(0))
            });
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Posts every due row once; returns when the next retry is due.
    pub async fn deliver_due(&self) -> Result<Option<i64>, redb::Error> {
        let db = self.db.clone();
        let (ready, next) =
            tokio::task::spawn_blocking(move || outbox::due(&*db.get()?, now_micros()))
                .await
                .map_err(|e| redb::Error::Corrupted(e.to_string()))??;
        let mut next = next;
        for mut row in ready {
            let Some(sink) = self.sinks.iter().find(|s| s.name == row.sink) else {
                continue; // a sink removed from the config: its rows wait for it to come back
            };
            let outcome = self.post(sink, &row.alert).await;
            row.attempts += 1;
            match outcome {
                Ok(()) => {
                    row.state = DeliveryState::Delivered;
                    row.delivered_at_micros = Some(now_micros());
                    row.last_error = None;
                    tracing::info!(sink = %row.sink, alert_id = %row.alert.alert_id, rule = %row.alert.rule_id, attempts = row.attempts, "alert delivered");
                }
                Err(error) => {
                    let age = Duration::from_micros(
                        u64::try_from(now_micros() - row.enqueued_at_micros).unwrap_or(0),
                    );
                    row.last_error = Some(error.clone());
                    if age >= self.give_up_after {
                        row.state = DeliveryState::Failed;
                        tracing::error!(sink = %row.sink, alert_id = %row.alert.alert_id, attempts = row.attempts, error, "alert delivery given up");
                    } else {
                        let delay = backoff(row.attempts - 1);
                        row.next_attempt_micros =
                            now_micros() + i64::try_from(delay.as_micros()).unwrap_or(i64::MAX);
                        next =
                            Some(next.map_or(row.next_attempt_micros, |n| {
                                n.min(row.next_attempt_micros)
                            }));
                        tracing::warn!(sink = %row.sink, alert_id = %row.alert.alert_id, attempts = row.attempts, retry_in_ms = delay.as_millis() as u64, error, "alert delivery failed");
                    }
                }
            }
            let db = self.db.clone();
            let saved = row.clone();
            tokio::task::spawn_blocking(move || outbox::update(&*db.get()?, &saved))
                .await
                .map_err(|e| redb::Error::Corrupted(e.to_string()))??;
        }
        Ok(next)
    }

    async fn post(&self, sink: &Webhook, alert: &Alert) -> Result<(), String> {
        let payload = body(sink.format, alert);
        let mut request = self
            .client
            .post(&sink.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_HEADER, &alert.alert_id);
        if let Some(secret) = &sink.secret {
            let timestamp = chrono::Utc::now().timestamp();
            request = request
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, sign(secret, timestamp, &payload));
        }
        let response = request
            .body(payload)
            .send()
            .await
            .map_err(|e| redacted(&format!("no answer: {}", without_url(e)), &sink.url))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", response.status()))
        }
    }
}

/// An HTTP client error as text without the URL it was sent to (a webhook's URL is its secret,
/// for Slack the whole of it), its causes included.
fn without_url(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// `text` with the URL, and each of its path and query, replaced: whatever a library wrote into
/// an error, no part of a webhook's secret reaches a table or a log.
fn redacted(text: &str, url: &str) -> String {
    let mut out = text.replace(url, "<webhook URL>");
    if let Ok(parsed) = reqwest::Url::parse(url) {
        for secret in [parsed.path(), parsed.query().unwrap_or_default()] {
            if secret.len() > 1 {
                out = out.replace(secret, "<redacted>");
            }
        }
    }
    out
}

/// Rows for the `alert_deliveries` table.
pub fn deliveries(db: &Store) -> Result<Vec<Delivery>, redb::Error> {
    outbox::all(&*db.get()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Reference value from Python's hmac module: HMAC-SHA256("secret", "1700000000.{}").
        let signature = sign("secret", 1_700_000_000, b"{}");
        assert_eq!(
            signature,
            "v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
        assert_ne!(signature, sign("secret", 1_700_000_001, b"{}"));
        assert_ne!(signature, sign("other", 1_700_000_000, b"{}"));
    }

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        for attempts in 0..20 {
            let d = backoff(attempts);
            let cap = FIRST_RETRY
                .saturating_mul(1 << attempts.min(16))
                .min(LONGEST_RETRY);
            assert!(d >= cap / 2 && d < cap, "{attempts}: {d:?}");
        }
    }

    #[tokio::test]
    async fn a_failed_post_says_why_without_any_part_of_the_url() {
        // A port nothing listens on: the connection is refused.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}/services/T000/B000/XXsecretXX?token=qq77");
        let error = reqwest::Client::new()
            .post(&url)
            .send()
            .await
            .expect_err("nothing listens");
        let text = redacted(&without_url(error), &url);
        assert!(
            !text.contains("XXsecretXX") && !text.contains("qq77"),
            "{text}"
        );
        assert!(text.contains("connect"), "the cause is kept: {text}");
        assert_eq!(
            redacted(
                &format!("failed for {url} at /services/T000/B000/XXsecretXX"),
                &url
            ),
            "failed for <webhook URL> at <redacted>"
        );
    }
}
