//! Draining for a graceful shutdown.
//!
//! Work that a client will be told the outcome of (a send that will be
//! acked, a publish that will be answered) holds a [`Work`] guard. Once the
//! drain begins, no new work starts (callers answer `shutting_down`), and
//! [`Drain::idle`] completes when the last guard is dropped, so everything
//! acknowledged before the exit really happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Default)]
struct State {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// The server's drain state. Cheap to clone.
#[derive(Clone, Default)]
pub struct Drain(Arc<State>);

/// A piece of work in flight; see the module docs.
pub struct Work(Arc<State>);

impl Drain {
    /// Starts a piece of work, unless the server is draining.
    pub fn start(&self) -> Option<Work> {
        // Count first, then check: `idle` can't miss work that passed the
        // check, because that work is already counted.
        self.0.in_flight.fetch_add(1, Ordering::SeqCst);
        let work = Work(self.0.clone());
        (!self.is_draining()).then_some(work)
    }

    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::SeqCst)
    }

    /// Stops new work from starting.
    pub fn begin(&self) {
        self.0.draining.store(true, Ordering::SeqCst);
    }

    /// Completes when no work is in flight.
    pub async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            if self.0.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn idle_waits_for_work_in_flight_and_no_work_starts_while_draining() {
        let drain = Drain::default();
        let work = drain.start().expect("not draining yet");
        drain.begin();
        assert!(drain.start().is_none());
        let waiting = tokio::spawn({
            let drain = drain.clone();
            async move { drain.idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(work);
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("idle after the last work").unwrap();
    }
}
