//! Whether the lake and the ledger take writes: when a write of ours fails (a full disk, a lake
//! store that refuses, a ledger that must be reopened), ingestion stops taking objects and
//! probes the sink with growing pauses until it takes writes again. Such a failure is never a
//! verdict on the objects in flight: they are retried, and never recorded as failed for it.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::ObjectError;

/// First pause before the sink is probed again; it doubles up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);

/// The sink's health; see the module documentation.
#[derive(Debug, Default)]
pub struct SinkHealth {
    down: Mutex<Option<Down>>,
}

#[derive(Debug)]
struct Down {
    since: Instant,
    /// Probes that failed since.
    probes: u32,
    /// When the next probe is due.
    next_probe: Instant,
    error: String,
}

impl SinkHealth {
    /// Notes that a write failed with `error`; true if the sink was up until now.
    pub fn failed(&self, error: &str) -> bool {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        if down.is_some() {
            return false;
        }
        let now = Instant::now();
        *down = Some(Down {
            since: now,
            probes: 0,
            next_probe: now + FIRST_PAUSE,
            error: error.to_owned(),
        });
        true
    }

    pub fn is_down(&self) -> bool {
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The failure that took the sink down, if it is down.
    pub fn error(&self) -> Option<String> {
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|d| d.error.clone())
    }

    /// How long until the next probe is due: `None` while the sink is up.
    pub fn wait(&self) -> Option<Duration> {
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|d| d.next_probe.saturating_duration_since(Instant::now()))
    }

    /// Notes a failed probe: the next waits twice as long (up to [`LONGEST_PAUSE`]). How many
    /// probes have failed.
    pub fn probe_failed(&self, error: &str) -> u32 {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        let Some(d) = down.as_mut() else {
            return 0;
        };
        d.probes += 1;
        let pause = FIRST_PAUSE
            .saturating_mul(1 << d.probes.min(16))
            .min(LONGEST_PAUSE);
        d.next_probe = Instant::now() + pause;
        d.error = error.to_owned();
        d.probes
    }

    /// Notes that the sink takes writes again; how long it was down.
    pub fn recovered(&self) -> Option<Duration> {
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .map(|d| d.since.elapsed())
    }
}

impl super::Pipeline {
    /// Whether the lake and the ledger take writes, waiting (in a service) for them to take
    /// writes again after a failure: probes with growing pauses until one succeeds or `stop`.
    pub async fn sink_ready(&self, stop: &CancellationToken) -> bool {
        loop {
            let Some(wait) = self.sink.wait() else {
                return true;
            };
            if !self.wait_for_sink.load(Ordering::Relaxed) {
                return false;
            }
            tokio::select! {
                () = stop.cancelled() => return false,
                () = tokio::time::sleep(wait) => {}
            }
            // Tasks of other sources wait for this probe, then find the sink up or its next
            // probe due later.
            let _probing = self.probing.lock().await;
            if self.sink.wait().is_none_or(|w| !w.is_zero()) {
                continue;
            }
            match self.probe_sink().await {
                Ok(()) => {
                    if let Some(down) = self.sink.recovered() {
                        tracing::info!(
                            down_ms = down.as_millis() as u64,
                            "the lake and the ledger take writes again; ingestion resumes"
                        );
                    }
                }
                Err(error) => {
                    let probes = self.sink.probe_failed(&error.to_string());
                    tracing::warn!(probes, error = %error, "the lake or the ledger still refuses writes");
                }
            }
        }
    }

    /// Probes the lake and the ledger (reopening a ledger that an I/O error closed), then
    /// settles the groups whose commit may have gone through.
    async fn probe_sink(&self) -> Result<(), ObjectError> {
        let writer = self.writer.clone();
        let ledger = self.ledger.clone();
        let unresolved =
            std::mem::take(&mut *self.unresolved.lock().unwrap_or_else(|p| p.into_inner()));
        let (result, left) = tokio::task::spawn_blocking(move || {
            let probed = writer
                .probe()
                .map_err(|source| ObjectError::Write {
                    uri: String::new(),
                    source,
                })
                .and_then(|()| ledger.check_writable().map_err(ObjectError::from));
            if let Err(e) = probed {
                return (Err(e), unresolved);
            }
            let mut left = Vec::new();
            let mut result = Ok(());
            for group in unresolved {
                if result.is_err() {
                    left.push(group);
                    continue;
                }
                let settled = ledger.is_publishing(&group.stem).map_err(ObjectError::from).and_then(|noted| {
                    if noted {
                        writer.discard(&group.paths).map_err(|source| ObjectError::Write { uri: group.stem.clone(), source })?;
                        ledger.end_publish(&group.stem)?;
                        tracing::info!(group = %group.stem, files = group.paths.len(), "deleted the files of a group whose commit failed");
                    }
                    Ok(())
                });
                if let Err(e) = settled {
                    result = Err(e);
                    left.push(group);
                }
            }
            (result, left)
        })
        .await
        .map_err(|e| ObjectError::Task {
            uri: String::new(),
            message: e.to_string(),
        })?;
        self.unresolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(left);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_after_failed_probes_and_end_when_the_sink_recovers() {
        let health = SinkHealth::default();
        assert_eq!(health.wait(), None);
        assert!(health.failed("disk full"));
        assert!(!health.failed("disk full again"), "already down");
        assert!(health.wait().expect("down") <= FIRST_PAUSE);
        assert_eq!(health.probe_failed("still full"), 1);
        assert!(health.wait().expect("down") > FIRST_PAUSE);
        for _ in 0..20 {
            health.probe_failed("still full");
        }
        assert!(health.wait().expect("down") <= LONGEST_PAUSE);
        assert_eq!(health.error().as_deref(), Some("still full"));
        assert!(health.recovered().is_some());
        assert!(!health.is_down());
        assert_eq!(health.wait(), None);
    }
}
