//! Logging in: the bearer token as the password, none on loopback without one, and failed
//! logins answered ever more slowly per client address.

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::auth::{AuthSource, LoginInfo, Password, StartupHandler};
use datafusion_postgres::pgwire::api::{ClientInfo, ConnectionManager};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use futures::Sink;

/// The bearer token as the Postgres password.
#[derive(Debug)]
pub(super) struct TokenPassword(pub(super) Arc<str>);

#[async_trait]
impl AuthSource for TokenPassword {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Ok(Password::new(None, self.0.as_bytes().to_vec()))
    }
}

/// Loopback without a token: no password asked.
pub(super) struct Open(pub(super) Arc<ConnectionManager>);

impl NoopStartupHandler for Open {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.0.clone())
    }
}

/// Failed logins per client address, each answered later than the one before.
#[derive(Debug, Default)]
pub(super) struct Failures(Mutex<HashMap<IpAddr, (u32, Instant)>>);

/// Failures are forgotten this long after the last one.
const FAILURE_MEMORY: Duration = Duration::from_secs(900);

impl Failures {
    /// The wait before answering the next login from `ip`: none at first, then 250 ms doubling
    /// with each failure, up to 8 s.
    fn delay(&self, ip: IpAddr) -> Duration {
        let failures = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match failures.get(&ip) {
            Some((n, last)) if last.elapsed() < FAILURE_MEMORY && *n > 0 => {
                Duration::from_millis(250u64 << (n - 1).min(5))
            }
            _ => Duration::ZERO,
        }
    }

    fn failed(&self, ip: IpAddr) {
        let mut failures = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > 10_000 {
            failures.retain(|_, (_, last)| last.elapsed() < FAILURE_MEMORY);
        }
        let entry = failures.entry(ip).or_insert((0, Instant::now()));
        *entry = (entry.0.saturating_add(1), Instant::now());
    }

    fn succeeded(&self, ip: IpAddr) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&ip);
    }
}

/// A startup handler whose password answers slow down per address after failures.
pub(super) struct Throttled<S> {
    pub(super) inner: S,
    pub(super) failures: Failures,
}

#[async_trait]
impl<S: StartupHandler> StartupHandler for Throttled<S> {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let password = matches!(message, PgWireFrontendMessage::PasswordMessageFamily(_));
        let ip = client.socket_addr().ip();
        if password {
            tokio::time::sleep(self.failures.delay(ip)).await;
        }
        let result = self.inner.on_startup(client, message).await;
        if password {
            match &result {
                Err(PgWireError::InvalidPassword(_)) => self.failures.failed(ip),
                Ok(()) => self.failures.succeeded(ip),
                Err(_) => {}
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_logins_from_one_address_wait_longer_each_time_and_success_forgets() {
        let failures = Failures::default();
        let (a, b): (IpAddr, IpAddr) =
            ("127.0.0.1".parse().expect("ip"), "::1".parse().expect("ip"));
        assert_eq!(failures.delay(a), Duration::ZERO);
        failures.failed(a);
        assert_eq!(failures.delay(a), Duration::from_millis(250));
        failures.failed(a);
        failures.failed(a);
        assert_eq!(failures.delay(a), Duration::from_secs(1));
        for _ in 0..20 {
            failures.failed(a);
        }
        assert_eq!(failures.delay(a), Duration::from_secs(8));
        assert_eq!(
            failures.delay(b),
            Duration::ZERO,
            "other addresses wait not"
        );
        failures.succeeded(a);
        assert_eq!(failures.delay(a), Duration::ZERO);
    }
}
