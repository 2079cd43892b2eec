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
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::serve::Listener;
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::config::TrustedProxies;
use crate::http::admission::{ConnectionCaps, ConnectionSlot};
use crate::http::frames::{CLOSE_TOO_BIG, InboundFrames};
use crate::ops::metrics::{Metrics, Rejection};
use crate::sync::lock;

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
    /// The replies queued since the connection last had none unread: their
    /// bytes, how many of them were bigger than the budget, and the `queued`
    /// total after the newest (until `written` reaches it, some are unread).
    reply_bytes: AtomicU64,
    big_replies: AtomicU32,
    reply_until: AtomicU64,
    /// Once the connection is a WebSocket: the largest message its client
    /// may send (0 before).
    websocket_limit: AtomicU64,
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

    /// Says the connection now carries a WebSocket whose client may send
    /// messages of at most `limit` bytes (see [`crate::http::frames`]). Called
    /// once the upgrade is accepted, before its 101 is written.
    pub fn websocket(&self, limit: u64) {
        self.0.websocket_limit.store(limit.max(1), Ordering::Release);
    }

    /// Whether both switch the same connection.
    pub fn same(&self, other: &KillSwitch) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Runs `f` when the connection closes, however it closes (at once if
    /// it has already).
    pub fn on_close(&self, f: impl FnOnce() + Send + 'static) {
        let mut hooks = lock(&self.0.on_close);
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
    /// request and may be bigger than the `budget` (a catch-up of hundreds
    /// of messages), so while replies are unread the connection may owe
    /// that much more ([`Self::over`]); how many big ones it may leave
    /// unread and still ask for more is [`Self::may_ask`]'s rule.
    pub fn queued_reply(&self, bytes: u64, budget: u64) {
        let state = &self.0;
        let caught_up = state.written.load(Ordering::Relaxed) >= state.reply_until.load(Ordering::Relaxed);
        let total = state.queued.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let big = u32::from(bytes > budget);
        if caught_up {
            state.reply_bytes.store(bytes, Ordering::Relaxed);
            state.big_replies.store(big, Ordering::Relaxed);
        } else {
            state.reply_bytes.fetch_add(bytes, Ordering::Relaxed);
            state.big_replies.fetch_add(big, Ordering::Relaxed);
        }
        state.reply_until.store(total, Ordering::Relaxed);
    }

    /// Bytes written so far, the backlog, and the unread replies' bytes and
    /// count of big ones.
    fn account(&self) -> (u64, u64, u32) {
        let state = &self.0;
        let written = state.written.load(Ordering::Relaxed);
        let backlog = state.queued.load(Ordering::Relaxed).saturating_sub(written);
        if written < state.reply_until.load(Ordering::Relaxed) {
            (backlog, state.reply_bytes.load(Ordering::Relaxed), state.big_replies.load(Ordering::Relaxed))
        } else {
            (backlog, 0, 0)
        }
    }

    /// Whether the connection may be served another request: not when it
    /// owes more than `budget` besides its unread replies, and not when it
    /// owes more than `budget` with [`UNREAD_BIG_REPLIES_MAX`] replies bigger
    /// than that unread (a page's `join` and `sync` on connecting may both
    /// be big; a client asking for a third before reading them does not
    /// read what it asks for).
    pub fn may_ask(&self, budget: u64) -> bool {
        let (backlog, replies, big) = self.account();
        backlog <= budget.saturating_add(replies) && !(big >= UNREAD_BIG_REPLIES_MAX && backlog > budget)
    }

    /// Bytes queued and not yet taken by the kernel: the memory a client
    /// that doesn't read makes Herald hold. Writes the queuer did not count
    /// (HTTP heads, frame headers) only make this smaller.
    pub fn backlog(&self) -> u64 {
        self.0.queued.load(Ordering::Relaxed).saturating_sub(self.0.written.load(Ordering::Relaxed))
    }

    /// Whether the connection owes more than `budget` besides its unread
    /// replies.
    pub fn over(&self, budget: u64) -> bool {
        let (backlog, replies, _) = self.account();
        backlog > budget.saturating_add(replies)
    }
}

/// How many replies bigger than the byte budget a connection may leave
/// unread while it owes more than the budget and still be served.
pub const UNREAD_BIG_REPLIES_MAX: u32 = 2;

/// A stream that fails once its [`KillSwitch`] is tripped.
pub struct Killable<S> {
    /// Its place under the per-IP cap, given back when the connection
    /// closes. (Declared first, so it is dropped before the stream: once a
    /// client sees the connection closed, the place is free.)
    _slot: Option<ConnectionSlot>,
    inner: S,
    kill: KillSwitch,
    /// On a WebSocket: the client's frames, followed to catch a message over
    /// the limit at its header.
    frames: Option<InboundFrames>,
    /// The client sent a message over the limit: reads fail from now on, and
    /// the connection is closed with status 1009.
    too_big: Option<TooBig>,
    /// Whether everything handed to the writer so far was written: the
    /// WebSocket writer hands over whole frames, so between two of its
    /// writes is a frame boundary, where a close frame may go.
    at_boundary: bool,
}

/// The 1009 close frame, once a message was too big: how much of it is
/// written.
#[derive(Debug, Clone, Copy)]
struct TooBig {
    written: usize,
}

impl<S> Killable<S> {
    fn new(slot: Option<ConnectionSlot>, inner: S, kill: KillSwitch) -> Self {
        Self { _slot: slot, inner, kill, frames: None, too_big: None, at_boundary: true }
    }
}

fn too_big() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "WebSocket message over HERALD_SOCKET_PAYLOAD_MAX_BYTES")
}

impl<S: AsyncWrite + Unpin> Killable<S> {
    /// Writes what is left of the 1009 close frame; ready once it is all
    /// written (or can't be).
    fn poll_close_too_big(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while let Some(TooBig { written }) = self.too_big
            && written < CLOSE_TOO_BIG.len()
        {
            match Pin::new(&mut self.inner).poll_write(cx, &CLOSE_TOO_BIG[written..]) {
                Poll::Ready(Ok(n)) if n > 0 => self.too_big = Some(TooBig { written: written + n }),
                Poll::Ready(_) => self.too_big = Some(TooBig { written: CLOSE_TOO_BIG.len() }),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(())
    }
}

impl KillSwitch {
    /// The connection is done (shut down or dropped): runs the close hooks,
    /// once, before the peer can see it end.
    fn closed(&self) {
        let state = &self.0;
        let hooks = {
            let mut hooks = lock(&state.on_close);
            state.closed.store(true, Ordering::Release);
            std::mem::take(&mut *hooks)
        };
        for hook in hooks {
            hook();
        }
    }
}

impl<S> Drop for Killable<S> {
    fn drop(&mut self) {
        self.kill.closed();
    }
}

fn cut() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "connection closed by Herald")
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Killable<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.kill.0.reader.register(cx.waker());
        if self.kill.is_tripped() {
            return Poll::Ready(Err(cut()));
        }
        if self.too_big.is_some() {
            return Poll::Ready(Err(too_big()));
        }
        if self.frames.is_none() {
            let limit = self.kill.0.websocket_limit.load(Ordering::Acquire);
            if limit != 0 {
                self.frames = Some(InboundFrames::new(limit));
            }
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            let this = &mut *self;
            let over = this.frames.as_mut().and_then(|frames| frames.scan(&buf.filled()[before..]).err());
            if let Some(at) = over {
                // What came before the frame is the client's; the frame is not.
                buf.set_filled(before + at);
                this.too_big = Some(TooBig { written: 0 });
                this.kill.0.writer.wake();
                // Between frames on the way out: the close can go at once.
                if this.at_boundary {
                    let _ = this.poll_close_too_big(cx);
                }
                if at == 0 {
                    return Poll::Ready(Err(too_big()));
                }
            }
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Killable<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.kill.0.writer.register(cx.waker());
        if self.kill.is_tripped() {
            return Poll::Ready(Err(cut()));
        }
        // A message was too big: once the frame being written is finished,
        // the 1009 close goes out, and nothing the writer hands over after
        // that (its own close frame among it) is sent.
        if self.too_big.is_some() && self.at_boundary {
            if self.poll_close_too_big(cx).is_pending() {
                return Poll::Pending;
            }
            return Poll::Ready(Ok(buf.len()));
        }
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            self.kill.0.written.fetch_add(n as u64, Ordering::Relaxed);
            self.at_boundary = n == buf.len();
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
        // Before the FIN goes out: whoever sees the connection end can rely
        // on its hooks having run.
        self.kill.closed();
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Who is on the other end of an HTTP connection, and how to cut it;
/// available to handlers and Socket.IO sockets as `ConnectInfo<PeerConn>`.
#[derive(Clone)]
pub struct PeerConn {
    pub addr: SocketAddr,
    pub kill: KillSwitch,
}

impl PeerConn {
    /// The connection a request (or a socket's handshake request) came
    /// over, from its extensions; `None` only for in-process callers.
    pub fn of(extensions: &axum::http::Extensions) -> Option<&PeerConn> {
        extensions.get::<axum::extract::ConnectInfo<PeerConn>>().map(|info| &info.0)
    }
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
                    return (Killable::new(slot, stream, kill.clone()), PeerConn { addr, kill });
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
    use crate::http::frames::CLOSE_TOO_BIG;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// A `Killable` over one end of a pipe of `capacity` bytes: the other
    /// end, the switch, and the stream.
    fn killable(capacity: usize) -> (DuplexStream, KillSwitch, Killable<DuplexStream>) {
        let (client, server) = tokio::io::duplex(capacity);
        let kill = KillSwitch::default();
        let stream = Killable::new(None, server, kill.clone());
        (client, kill, stream)
    }

    #[tokio::test]
    async fn tripping_wakes_a_blocked_reader_and_fails_writes() {
        let (client, kill, mut stream) = killable(64);
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

    #[tokio::test]
    async fn close_hooks_run_once_when_the_stream_is_shut_down_or_goes() {
        let runs = Arc::new(AtomicU64::new(0));
        let count = |kill: &KillSwitch| {
            let counter = runs.clone();
            kill.on_close(move || {
                counter.fetch_add(1, Ordering::Relaxed);
            });
        };
        let (_client, kill, stream) = killable(64);
        count(&kill);
        assert_eq!(runs.load(Ordering::Relaxed), 0);
        drop(stream);
        assert_eq!(runs.load(Ordering::Relaxed), 1);
        count(&kill);
        assert_eq!(runs.load(Ordering::Relaxed), 2, "a hook added after the close runs at once");

        // Shut down: the hook has run by the time the peer sees the end.
        let (mut client, kill, mut stream) = killable(64);
        count(&kill);
        stream.shutdown().await.unwrap();
        assert_eq!(runs.load(Ordering::Relaxed), 3);
        assert_eq!(client.read(&mut [0u8; 8]).await.unwrap(), 0);
        drop(stream);
        assert_eq!(runs.load(Ordering::Relaxed), 3, "once");
    }

    /// The masked header of a client text frame of `len` bytes (> 65535).
    fn big_frame_head(len: u64) -> Vec<u8> {
        let mut head = vec![0x81, 0x80 | 127];
        head.extend_from_slice(&len.to_be_bytes());
        head.extend_from_slice(&[0, 0, 0, 0]);
        head
    }

    #[tokio::test]
    async fn a_websocket_message_over_the_limit_fails_the_read_and_closes_with_1009() {
        let (mut client, kill, mut stream) = killable(1 << 16);
        // Before the upgrade, bytes are not frames.
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(stream.read(&mut buf).await.unwrap(), 18);
        stream.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").await.unwrap();
        kill.websocket(1024);

        // A small frame, then the head of one over the limit, in one read.
        let mut wire = vec![0x81, 0x80 | 2, 0, 0, 0, 0, b'h', b'i'];
        wire.extend(big_frame_head(1 << 20));
        wire.extend_from_slice(b"first bytes of the payload");
        client.write_all(&wire).await.unwrap();
        assert_eq!(stream.read(&mut buf).await.unwrap(), 8, "the small frame is read, the big one is not");
        let refused = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::InvalidData);

        // The close went out at once (nothing was half written); what the
        // writer sends after that, its own close frame say, is dropped.
        stream.write_all(&[0x88, 0x00]).await.unwrap();
        drop(stream);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert!(answer.ends_with(&CLOSE_TOO_BIG), "{answer:?}");
        assert_eq!(answer.len(), "HTTP/1.1 101 Switching Protocols\r\n\r\n".len() + CLOSE_TOO_BIG.len());
    }

    #[tokio::test]
    async fn the_1009_close_waits_for_a_frame_half_written() {
        // A pipe so small that a frame is written in pieces.
        let (client, kill, mut stream) = killable(8);
        kill.websocket(1024);
        let frame: Vec<u8> = [0x81, 30].into_iter().chain(std::iter::repeat_n(b'x', 30)).collect();
        // The writer gets 8 of its 32 bytes out, then the client's big
        // frame arrives.
        let n = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_write(cx, &frame)).await.unwrap();
        assert_eq!(n, 8);
        let (mut client_in, mut client_out) = tokio::io::split(client);
        let sender = tokio::spawn(async move { client_out.write_all(&big_frame_head(1 << 20)).await });
        let mut buf = [0u8; 64];
        let refused = loop {
            match stream.read(&mut buf).await {
                Ok(_) => continue, // the header, a piece at a time
                Err(err) => break err,
            }
        };
        assert_eq!(refused.kind(), io::ErrorKind::InvalidData);
        sender.await.unwrap().unwrap();
        let reader = tokio::spawn(async move {
            let mut answer = Vec::new();
            client_in.read_to_end(&mut answer).await.unwrap();
            answer
        });
        stream.write_all(&frame[8..]).await.unwrap();
        stream.write_all(&[0x88, 0x00]).await.unwrap();
        stream.flush().await.unwrap();
        drop(stream);
        let answer = reader.await.unwrap();
        assert_eq!(&answer[..frame.len()], &frame[..], "the frame is finished first");
        assert_eq!(&answer[frame.len()..], &CLOSE_TOO_BIG, "then the close, and nothing else");
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
        let (_client, kill, mut stream) = killable(64);
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
    async fn replies_may_exceed_the_budget_until_they_are_written() {
        let (_client, kill, mut stream) = killable(1 << 20);
        kill.queued_reply(1000, 100);
        assert!(!kill.over(100) && kill.may_ask(100), "the reply's own size is allowed");
        kill.queued(50);
        assert!(!kill.over(100), "and events behind it, within the budget");
        kill.queued(100);
        assert!(kill.over(100) && !kill.may_ask(100), "but no more than the budget besides");
        stream.write_all(&[0; 1000]).await.unwrap();
        assert!(kill.over(100), "the reply is out; 150 are owed, over 100");
        stream.write_all(&[0; 100]).await.unwrap();
        assert!(!kill.over(100));
    }

    #[tokio::test]
    async fn a_connection_that_leaves_two_big_replies_unread_may_not_ask_again() {
        let (_client, kill, mut stream) = killable(1 << 20);
        // A page connecting: a big catch-up, a small sync, a message ack.
        kill.queued_reply(5000, 100);
        kill.queued_reply(50, 100);
        kill.queued_reply(20, 100);
        assert!(!kill.over(100) && kill.may_ask(100), "one big reply unread: it may ask");
        kill.queued_reply(5000, 100);
        assert!(!kill.over(100), "two big replies are allowed for");
        assert!(!kill.may_ask(100), "but it asks for a third without reading them");
        // Once it has read them, it may ask again, from scratch.
        stream.write_all(&[0; 10_070]).await.unwrap();
        assert!(kill.may_ask(100));
        kill.queued_reply(5000, 100);
        assert!(kill.may_ask(100), "the count starts again once it caught up");
    }
}
