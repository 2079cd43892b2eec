//! A TCP proxy between Herald and a server (Redis), for faults no
//! process kill gives: connections that stay open but carry nothing, a
//! network cut that closes every connection and refuses new ones.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards every connection to its target.
pub struct Proxy {
    pub addr: SocketAddr,
    /// One flag per connection made so far: set, it carries nothing more.
    lines: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    /// The tasks carrying each open connection.
    pipes: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// Set while the link is cut: new connections are closed at once.
    cut: Arc<AtomicBool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lines: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let pipes: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let cut = Arc::new(AtomicBool::new(false));
        let (registry, open, refusing) = (lines.clone(), pipes.clone(), cut.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if refusing.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(server) = TcpStream::connect(target).await else { continue };
                let stalled = Arc::new(AtomicBool::new(false));
                registry.lock().unwrap().push(stalled.clone());
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let mut open = open.lock().unwrap();
                open.push(tokio::spawn(pipe(client_read, server_write, stalled.clone())));
                open.push(tokio::spawn(pipe(server_read, client_write, stalled)));
            }
        });
        Self { addr, lines, pipes, cut, accept }
    }

    /// Cuts the link: every open connection is closed, new ones are closed
    /// as soon as they are made, until [`Self::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Every connection open now stays open but carries nothing, either
    /// way, for good (a half-dead link, a frozen middlebox); new ones work.
    pub fn stall_open_connections(&self) {
        for line in self.lines.lock().unwrap().iter() {
            line.store(true, Ordering::SeqCst);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) if !stalled.load(Ordering::SeqCst) => {
                if to.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
            Ok(_) => {} // swallowed
        }
    }
}
