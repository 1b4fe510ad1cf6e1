//! Housekeeping around ingestion: at start, deleting what a stopped run left in the lake
//! (temporary files, files of groups it never committed); once an hour, forgetting old
//! event-id claims.

use std::sync::atomic::Ordering;

use auditlake_schema::LakeRoot;

use super::{CLAIM_CLEANUP_INTERVAL_MICROS, ObjectError, PUBLISH_SETTLE, Pipeline, STRAY_TEMP_AGE};

impl Pipeline {
    /// Deletes the files of groups that were being published when an earlier run stopped and
    /// were never committed (see [`Group`]), and the temporary files it left. Call once, before
    /// ingesting.
    pub async fn recover(&self) -> Result<usize, ObjectError> {
        // Temporary files of groups a killed run was filling, or that failed: in a lake of its
        // own all are ours; a shared lake keeps what another worker may be writing now.
        let older_than = self.shared.as_ref().map(|_| STRAY_TEMP_AGE);
        let writer = self.writer.clone();
        let removed =
            tokio::task::spawn_blocking(move || writer.remove_stray_temp_files(older_than))
                .await
                .map_err(|e| ObjectError::Task {
                    uri: String::new(),
                    message: e.to_string(),
                })?
                .map_err(|source| ObjectError::Write {
                    uri: String::new(),
                    source,
                })?;
        if removed > 0 {
            tracing::info!(
                removed,
                "removed temporary files an earlier run left in the lake"
            );
        }
        let ledger = self.ledger.clone();
        let unfinished = ledger.unfinished_publishes()?;
        if unfinished.is_empty() {
            return Ok(0);
        }
        // A PUT the stopped process had sent may still be applied by the store after it died:
        // deleting before then would leave that file in the lake. Local files appear only by a
        // rename, which a stopped process cannot make.
        if matches!(self.writer.root(), LakeRoot::Store { .. }) {
            let now = chrono::Utc::now().timestamp_micros();
            let youngest = unfinished
                .iter()
                .map(|u| u.noted_at_micros.unwrap_or(now))
                .max()
                .unwrap_or(now);
            let settled_at = youngest + PUBLISH_SETTLE.as_micros() as i64;
            if settled_at > now {
                let wait = std::time::Duration::from_micros((settled_at - now) as u64);
                tracing::info!(
                    wait_ms = wait.as_millis() as u64,
                    "waiting for writes of the stopped run to settle before deleting its uncommitted files"
                );
                tokio::time::sleep(wait).await;
            }
        }
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            for u in &unfinished {
                writer
                    .discard(&u.paths)
                    .map_err(|source| ObjectError::Write {
                        uri: u.stem.clone(),
                        source,
                    })?;
                ledger.end_publish(&u.stem)?;
                tracing::info!(group = %u.stem, files = u.paths.len(), "deleted the files of a group an earlier run did not commit");
            }
            Ok(unfinished.len())
        })
        .await
        .map_err(|e| ObjectError::Task {
            uri: String::new(),
            message: e.to_string(),
        })?
    }

    /// Forgets the event-id claims older than the retention, at most once an hour (the first
    /// time at the first ingest). Housekeeping: a failure is logged and tried again an hour
    /// later, and ingestion goes on.
    pub(super) async fn forget_old_claims(&self) {
        let now = chrono::Utc::now().timestamp_micros();
        let last = self.claims_cleaned_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) < CLAIM_CLEANUP_INTERVAL_MICROS
            || self
                .claims_cleaned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let ledger = self.ledger.clone();
        let retention = self.event_id_retention;
        let forgotten =
            tokio::task::spawn_blocking(move || ledger.forget_old_claims(retention, now)).await;
        let retention = humantime::format_duration(retention);
        match forgotten {
            Ok(Ok(0)) => {}
            Ok(Ok(claims)) => tracing::info!(
                claims,
                %retention,
                "forgot the event-id claims older than the retention"
            ),
            Ok(Err(error)) => {
                self.stats.count_error("ledger");
                tracing::warn!(%error, "forgetting old event-id claims failed; trying again in an hour");
            }
            Err(error) => tracing::warn!(%error, "forgetting old event-id claims ended abnormally"),
        }
    }
}
