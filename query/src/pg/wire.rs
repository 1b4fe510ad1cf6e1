//! One Postgres connection, from its first byte to its close.
//!
//! `pgwire` negotiates TLS and frames the messages; this loop feeds them to the handlers as
//! `pgwire`'s own does, and adds the bounds: the startup and login within the header timeout,
//! each later message within the idle timeout, every message no larger than the statement
//! limit (its declared length is read as it arrives, so a 1 GiB statement is refused at its
//! header, not after it was buffered), and a watch on a second handle of the socket that ends the
//! connection — and with it the query it runs — when the client goes away mid-query.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::auth::StartupHandler;
use datafusion_postgres::pgwire::api::query::ExtendedQueryHandler;
use datafusion_postgres::pgwire::messages::PgWireFrontendMessage;
use datafusion_postgres::pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use super::{Handlers, PgSettings, Service, fatal, logging_in, tell_and_close};

/// SQLSTATEs of the ways a connection is ended by its bounds.
const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
const IDLE_SESSION_TIMEOUT: &str = "57P05";

/// Serves one connection; returns when it ends.
pub(super) async fn connection<A: StartupHandler + 'static>(
    socket: TcpStream,
    handlers: Arc<Handlers<A>>,
    settings: &PgSettings,
) {
    let limits = settings.connections;
    let watch = match second_handle(socket) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "cannot watch a Postgres connection");
            return;
        }
    };
    let (socket, watch) = watch;
    let started = tokio::time::Instant::now();
    let negotiated = tokio::time::timeout(
        limits.header_timeout,
        negotiate_tls::<<Service as ExtendedQueryHandler>::Statement>(socket, settings.tls.clone()),
    )
    .await;
    let framed = match negotiated {
        Ok(Ok(Some(framed))) => framed,
        Ok(Ok(None)) | Err(_) => return,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "Postgres TLS negotiation failed");
            return;
        }
    };
    let parts = framed.into_parts();
    let mut limited = FramedParts::new(
        Limited::new(parts.io, settings.max_statement_bytes, &parts.read_buf),
        parts.codec,
    );
    limited.read_buf = parts.read_buf;
    limited.write_buf = parts.write_buf;
    let mut socket = Framed::from_parts(limited);

    let (startup, service, copy, cancel) = handlers.parts();
    loop {
        let deadline = if logging_in(socket.state()) {
            started + limits.header_timeout
        } else {
            tokio::time::Instant::now() + limits.idle_timeout
        };
        let message = match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => {
                if !logging_in(socket.state()) {
                    let message = "closing the connection after it was idle too long";
                    tell_and_close(&mut socket, fatal(IDLE_SESSION_TIMEOUT, message)).await;
                }
                return;
            }
            Ok(None) => return,
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => {
                if let Some(too_large) = socket.get_ref().refused() {
                    tell_and_close(&mut socket, fatal(PROGRAM_LIMIT_EXCEEDED, &too_large)).await;
                } else {
                    tracing::debug!(error = %e, "reading a Postgres message");
                }
                return;
            }
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return;
        }
        let extended = message.is_extended_query();
        let handled = tokio::select! {
            handled = process_message(
                message,
                &mut socket,
                startup.clone(),
                service.clone(),
                service.clone(),
                copy.clone(),
                cancel.clone(),
            ) => handled,
            () = peer_gone(&watch) => {
                tracing::debug!("a Postgres client went away; its query is stopped");
                return;
            }
        };
        if let Err(e) = handled
            && process_error(&mut socket, e, extended).await.is_err()
        {
            return;
        }
    }
}

/// The socket, and a second handle of it that only watches for the peer's close.
fn second_handle(socket: TcpStream) -> io::Result<(TcpStream, TcpStream)> {
    let socket = socket.into_std()?;
    let watch = socket.try_clone()?;
    Ok((TcpStream::from_std(socket)?, TcpStream::from_std(watch)?))
}

/// Resolves once the peer has closed its side or the connection broke. Bytes that wait to be
/// read (a pipelined message) are left to the connection.
async fn peer_gone(watch: &TcpStream) {
    loop {
        match watch.ready(Interest::READABLE).await {
            Ok(ready) if ready.is_read_closed() || ready.is_write_closed() => return,
            Ok(_) => {
                // Readable only: forget this readiness until the next event, without reading.
                let _ = watch.try_io(Interest::READABLE, || {
                    Err::<(), _>(io::ErrorKind::WouldBlock.into())
                });
            }
            Err(_) => return,
        }
    }
}

/// Where the framing of the byte stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// A length-first startup-form message (startup, SSL or GSS request, cancel) comes next.
    Startup { have: usize, header: [u8; 8] },
    /// A type byte and a length come next.
    Header { have: usize, header: [u8; 5] },
    /// This many body bytes remain of the current message.
    Body(usize),
}

/// Startup-form request codes after which another startup-form message follows.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// The connection's byte stream, refused (as an I/O error) at the header of any message
/// longer than the limit; see the module documentation.
struct Limited<S> {
    inner: S,
    max: usize,
    framing: Framing,
    refused: Option<String>,
}

impl<S> Limited<S> {
    /// `already` holds the bytes read before this wrapper existed.
    fn new(inner: S, max_statement_bytes: usize, already: &[u8]) -> Self {
        let mut limited = Limited {
            inner,
            // A message carries a few bytes around its statement (type, length, names).
            max: max_statement_bytes.saturating_add(1024),
            framing: Framing::Startup {
                have: 0,
                header: [0; 8],
            },
            refused: None,
        };
        // An oversized message already buffered is caught as the next bytes arrive.
        let _ = limited.observe(already);
        limited
    }

    /// Why the stream was refused, if it was.
    fn refused(&self) -> Option<String> {
        self.refused.clone()
    }

    /// Follows the framing over `bytes`; the refusal when a message is too long.
    fn observe(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            match &mut self.framing {
                Framing::Body(remaining) => {
                    let n = (*remaining).min(bytes.len());
                    *remaining -= n;
                    bytes = &bytes[n..];
                    if *remaining == 0 {
                        self.framing = Framing::Header {
                            have: 0,
                            header: [0; 5],
                        };
                    }
                }
                Framing::Startup { have, header } => {
                    let n = (8 - *have).min(bytes.len());
                    header[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have == 8 {
                        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
                        let code = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
                        self.check(len as usize)?;
                        let rest = (len as usize).saturating_sub(8);
                        self.framing = if code == SSL_REQUEST || code == GSSENC_REQUEST {
                            Framing::Startup {
                                have: 0,
                                header: [0; 8],
                            }
                        } else if rest == 0 {
                            Framing::Header {
                                have: 0,
                                header: [0; 5],
                            }
                        } else {
                            Framing::Body(rest)
                        };
                    }
                }
                Framing::Header { have, header } => {
                    let n = (5 - *have).min(bytes.len());
                    header[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have == 5 {
                        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
                        self.check(len as usize)?;
                        let rest = (len as usize).saturating_sub(4);
                        self.framing = if rest == 0 {
                            Framing::Header {
                                have: 0,
                                header: [0; 5],
                            }
                        } else {
                            Framing::Body(rest)
                        };
                    }
                }
            }
        }
        Ok(())
    }

    fn check(&mut self, len: usize) -> Result<(), String> {
        if len > self.max {
            let message = format!(
                "a message of {len} bytes is more than the {} bytes a statement may take",
                self.max
            );
            self.refused = Some(message.clone());
            return Err(message);
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(refused) = &self.refused {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                refused.clone(),
            )));
        }
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                match this.observe(new) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(message) => {
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, message)))
                    }
                }
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup() -> Vec<u8> {
        let mut m = Vec::new();
        let body = b"user\0auditor\0\0";
        m.extend(((8 + body.len()) as u32).to_be_bytes());
        m.extend(196_608u32.to_be_bytes());
        m.extend(body);
        m
    }

    fn typed(kind: u8, body_len: usize) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend(((body_len + 4) as u32).to_be_bytes());
        m.extend(std::iter::repeat_n(b'x', body_len));
        m
    }

    #[test]
    fn a_message_over_the_limit_is_refused_at_its_header_in_any_split() {
        let mut stream = Vec::new();
        stream.extend(8u32.to_be_bytes());
        stream.extend(SSL_REQUEST.to_be_bytes());
        stream.extend(startup());
        stream.extend(typed(b'p', 5));
        stream.extend(typed(b'Q', 2000));
        stream.extend(typed(b'S', 0));
        let big_at = stream.len();
        stream.extend(typed(b'Q', 5000)[..5].to_vec());
        for chunk in [1, 3, 7, 4096] {
            let mut limited = Limited::new((), 3000, &[]);
            let mut result = Ok(());
            let mut refused_at = None;
            for (i, piece) in stream.chunks(chunk).enumerate() {
                result = limited.observe(piece);
                if result.is_err() {
                    refused_at = Some(i * chunk);
                    break;
                }
            }
            assert!(result.is_err(), "chunks of {chunk}");
            assert!(
                refused_at.is_some_and(|at| at + chunk > big_at),
                "not refused early"
            );
            assert!(limited.refused().is_some());
        }
        let mut limited = Limited::new((), 3000, &stream[..big_at]);
        assert!(
            limited.refused().is_none(),
            "bytes read before are followed"
        );
        assert!(limited.observe(&stream[big_at..]).is_err());
    }
}
