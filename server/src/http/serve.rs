//! Herald's HTTP/1.1 accept loop: the router on hyper, as `axum::serve` would
//! run it, plus the bound `axum::serve` leaves out: a deadline for each
//! request head. A client that trickles its headers a byte at a time
//! (slowloris), or keeps a connection open without sending a request, is
//! cut when the deadline passes instead of holding a connection forever.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::http::conn::KillableListener;

/// Serves `router` on `listener` until `stop` completes, then stops
/// accepting, lets requests in flight finish (idle connections close at
/// once; upgraded WebSockets are no longer HTTP's and are not waited for)
/// and returns.
pub async fn serve(
    mut listener: KillableListener,
    router: Router,
    head_timeout: Duration,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(head_timeout);
    // Every connection task holds a receiver of each: `stopping` tells them
    // to finish (by closing), `finished` closes when the last one ends.
    let (stopping_tx, stopping) = watch::channel(());
    let (finished, finished_rx) = watch::channel(());
    tokio::pin!(stop);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let service = router.clone().map_request(move |mut request: axum::http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer.clone()));
            request
        });
        let connection = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(service)).with_upgrades();
        let mut stopping = stopping.clone();
        let finished = finished_rx.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = result {
                // Timeouts, resets and malformed requests: the client's doing.
                tracing::debug!(%err, "HTTP connection ended with an error");
            }
            drop(finished);
        });
    }
    drop(listener);
    drop(stopping_tx);
    drop(finished_rx);
    finished.closed().await;
    Ok(())
}
