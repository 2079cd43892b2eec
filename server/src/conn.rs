//! Accepted TCP connections that Herald can cut.
//!
//! socketioxide offers no way to close one socket whose outbound buffer is
//! full: its `disconnect` needs room in that very buffer for the DISCONNECT
//! packet. A client that stops reading would then keep its connection (and
//! its buffer) until the heartbeat gives up on it. So every accepted stream
//! is wrapped in [`Killable`], and the [`KillSwitch`] that goes with it
//! travels in the request's `ConnectInfo`: tripping it fails the stream's
//! pending and future reads and writes, which ends the WebSocket and with it
//! the socket (its disconnect handler runs as for any dropped connection).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::serve::Listener;
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::config::TrustedProxies;
use crate::limits::{ConnectionCaps, ConnectionSlot};
use crate::metrics::{Metrics, Rejection};

#[derive(Default)]
struct KillState {
    killed: AtomicBool,
    reader: AtomicWaker,
    writer: AtomicWaker,
    /// Bytes handed to the connection's writer for sending (as counted by
    /// whoever queues them: see [`KillSwitch::queued`]).
    queued: AtomicU64,
    /// Bytes the kernel has accepted from the connection.
    written: AtomicU64,
    /// The stream is gone.
    closed: AtomicBool,
    /// The size of the last big reply queued, and the `queued` total once it
    /// was: until `written` reaches that, the reply may still be in the
    /// backlog, and the connection may owe that much more than its budget.
    reply_bytes: AtomicU64,
    reply_until: AtomicU64,
    /// Run once when the connection closes (its stream is dropped).
    on_close: std::sync::Mutex<Vec<Box<dyn FnOnce() + Send>>>,
}

/// Cuts one TCP connection, and measures how far its writes lag behind
/// what was queued for it. Cheap to clone.
#[derive(Clone, Default)]
pub struct KillSwitch(Arc<KillState>);

impl KillSwitch {
    /// Fails the connection's reads and writes from now on, waking any task
    /// blocked on them (say, a writer stuck on a full TCP send buffer).
    pub fn trip(&self) {
        self.0.killed.store(true, Ordering::Release);
        self.0.reader.wake();
        self.0.writer.wake();
    }

    pub fn is_tripped(&self) -> bool {
        self.0.killed.load(Ordering::Acquire)
    }

    /// Whether both switch the same connection.
    pub fn same(&self, other: &KillSwitch) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Runs `f` when the connection closes, however it closes (at once if
    /// it has already).
    pub fn on_close(&self, f: impl FnOnce() + Send + 'static) {
        let mut hooks = self.0.on_close.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.0.closed.load(Ordering::Acquire) {
            drop(hooks);
            f();
        } else {
            hooks.push(Box::new(f));
        }
    }

    /// Records `bytes` queued for sending on this connection.
    pub fn queued(&self, bytes: u64) {
        self.0.queued.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records a reply of `bytes` queued for sending. A reply answers a
    /// request and may be bigger than the budget (a catch-up of hundreds of
    /// messages), so while it is being written the connection may owe that
    /// much more ([`Self::over`]); it can't ask for another meanwhile (the
    /// caller checks the backlog first).
    pub fn queued_reply(&self, bytes: u64) {
        let total = self.0.queued.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.0.reply_bytes.store(bytes, Ordering::Relaxed);
        self.0.reply_until.store(total, Ordering::Relaxed);
    }

    /// Bytes queued and not yet taken by the kernel: the memory a client
    /// that doesn't read makes Herald hold. Writes the queuer did not count
    /// (HTTP heads, frame headers) only make this smaller.
    pub fn backlog(&self) -> u64 {
        self.0.queued.load(Ordering::Relaxed).saturating_sub(self.0.written.load(Ordering::Relaxed))
    }

    /// Whether the connection owes more than `budget`, plus the reply being
    /// written if there is one.
    pub fn over(&self, budget: u64) -> bool {
        let written = self.0.written.load(Ordering::Relaxed);
        let backlog = self.0.queued.load(Ordering::Relaxed).saturating_sub(written);
        let allowance = if written < self.0.reply_until.load(Ordering::Relaxed) {
            self.0.reply_bytes.load(Ordering::Relaxed)
        } else {
            0
        };
        backlog > budget.saturating_add(allowance)
    }
}

/// A stream that fails once its [`KillSwitch`] is tripped.
pub struct Killable<S> {
    /// Its place under the per-IP cap, given back when the connection
    /// closes. (Declared first, so it is dropped before the stream: once a
    /// client sees the connection closed, the place is free.)
    _slot: Option<ConnectionSlot>,
    inner: S,
    kill: KillSwitch,
}

impl<S> Drop for Killable<S> {
    fn drop(&mut self) {
        let state = &self.kill.0;
        let hooks = {
            let mut hooks = state.on_close.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            state.closed.store(true, Ordering::Release);
            std::mem::take(&mut *hooks)
        };
        for hook in hooks {
            hook();
        }
    }
}

fn cut() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "connection closed by Herald")
}

impl<S: AsyncRead + Unpin> AsyncRead for Killable<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.kill.0.reader.register(cx.waker());
        if self.kill.is_tripped() {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Killable<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.kill.0.writer.register(cx.waker());
        if self.kill.is_tripped() {
            return Poll::Ready(Err(cut()));
        }
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            self.kill.0.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.kill.0.writer.register(cx.waker());
        if self.kill.is_tripped() {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Who is on the other end of an HTTP connection, and how to cut it;
/// available to handlers and Socket.IO sockets as `ConnectInfo<Peer>`.
#[derive(Clone)]
pub struct PeerConn {
    pub addr: SocketAddr,
    pub kill: KillSwitch,
}

impl std::fmt::Debug for PeerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr.fmt(f)
    }
}

/// A TCP listener whose connections are [`Killable`], at most
/// `HERALD_TCP_CONNECTIONS_PER_IP` at a time from one address (trusted
/// proxies excepted): each connection costs a file descriptor and memory
/// whether or not it ever sends a request.
pub struct KillableListener {
    pub listener: TcpListener,
    pub caps: ConnectionCaps,
    pub trusted_proxies: TrustedProxies,
    pub metrics: Arc<Metrics>,
}

/// What a connection over the per-IP cap is told before it is closed.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n\
Content-Length: 39\r\nConnection: close\r\n\r\ntoo many connections from your address\n";

impl Listener for KillableListener {
    type Io = Killable<TcpStream>;
    type Addr = PeerConn;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    let slot = if self.trusted_proxies.contains(addr.ip()) {
                        None
                    } else if let Some(slot) = self.caps.admit(addr.ip()) {
                        Some(slot)
                    } else {
                        self.metrics.rejected(Rejection::TcpConnectionsPerIp);
                        tracing::debug!(peer = %addr.ip(), "refused a TCP connection: too many from its address");
                        // Best effort: a fresh socket's send buffer is empty.
                        let _ = stream.try_write(TOO_MANY);
                        continue;
                    };
                    // Small frames (acks, messages) must not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    let kill = KillSwitch::default();
                    return (Killable { _slot: slot, inner: stream, kill: kill.clone() }, PeerConn { addr, kill });
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin; the listener stays up.
                    tracing::warn!(%err, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(PeerConn { addr: self.listener.local_addr()?, kill: KillSwitch::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn tripping_wakes_a_blocked_reader_and_fails_writes() {
        let (client, server) = tokio::io::duplex(64);
        let kill = KillSwitch::default();
        let mut stream = Killable { _slot: None, inner: server, kill: kill.clone() };
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let read = stream.read(&mut buf).await;
            (read.map_err(|e| e.kind()), stream)
        });
        tokio::task::yield_now().await;
        kill.trip();
        let (read, mut stream) = reader.await.unwrap();
        assert_eq!(read, Err(io::ErrorKind::ConnectionAborted));
        assert_eq!(stream.write_all(b"x").await.map_err(|e| e.kind()), Err(io::ErrorKind::ConnectionAborted));
        drop(client);
    }

    #[test]
    fn close_hooks_run_once_when_the_stream_goes() {
        let (_client, server) = tokio::io::duplex(64);
        let kill = KillSwitch::default();
        let runs = Arc::new(AtomicU64::new(0));
        let stream = Killable { _slot: None, inner: server, kill: kill.clone() };
        let counter = runs.clone();
        kill.on_close(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(runs.load(Ordering::Relaxed), 0);
        drop(stream);
        assert_eq!(runs.load(Ordering::Relaxed), 1);
        let counter = runs.clone();
        kill.on_close(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(runs.load(Ordering::Relaxed), 2, "a hook added after the close runs at once");
    }

    #[test]
    fn the_refusal_is_one_well_formed_response() {
        let text = std::str::from_utf8(TOO_MANY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head}");
    }

    #[tokio::test]
    async fn the_backlog_is_what_was_queued_and_not_yet_written() {
        let (_client, server) = tokio::io::duplex(64);
        let kill = KillSwitch::default();
        let mut stream = Killable { _slot: None, inner: server, kill: kill.clone() };
        kill.queued(10);
        assert_eq!(kill.backlog(), 10);
        stream.write_all(b"0123").await.unwrap();
        assert_eq!(kill.backlog(), 6);
        stream.write_all(b"456789").await.unwrap();
        assert_eq!(kill.backlog(), 0);
        // Writes nobody counted (a frame header, say) never make it negative.
        stream.write_all(b"head").await.unwrap();
        kill.queued(3);
        assert_eq!(kill.backlog(), 0);
    }

    #[tokio::test]
    async fn a_reply_may_exceed_the_budget_until_it_is_written() {
        let (_client, server) = tokio::io::duplex(1 << 20);
        let kill = KillSwitch::default();
        let mut stream = Killable { _slot: None, inner: server, kill: kill.clone() };
        kill.queued_reply(1000);
        assert!(!kill.over(100), "the reply's own size is allowed");
        kill.queued(50);
        assert!(!kill.over(100), "and events behind it, within the budget");
        kill.queued(100);
        assert!(kill.over(100), "but no more than the budget besides");
        stream.write_all(&[0; 1000]).await.unwrap();
        assert!(kill.over(100), "the reply is out; 150 are owed, over 100");
        stream.write_all(&[0; 100]).await.unwrap();
        assert!(!kill.over(100));
    }
}
