//! Delivery in sequence order, per stream.
//!
//! A message's sequence number is allocated by one store round trip (`$inc`)
//! and the message stored by another, so two concurrent writers to a stream
//! finish in either order. Delivered as they finish, seq 278 could reach a
//! room before 277, and a client that resumes from the newest seq it holds
//! would never ask for 277 again.
//!
//! A stream's [`Stream`] delivers strictly in order: seq `n` goes out once
//! every lower number this node allocated is out or known not to exist (its
//! insert failed, or it lost to a stored copy of the same client id). A
//! stored message waits, its writer with it, while a lower one is still being
//! written; every write is bounded by the store's timeout, so nothing waits
//! longer than that. A number no writer of this node holds is skipped: on one
//! node every number is allocated here, so one nobody holds was allocated by
//! an `$inc` whose answer was lost, and nothing was stored under it.
//!
//! [`Stream::cursor`] is the newest number delivered or skipped. A join's
//! catch-up ends there (everything newer reaches the joined socket live), so
//! the newest seq a client holds is a true watermark: it has every message
//! at or below it.
//!
//! A timed-out write may still land in the store after its number was
//! skipped; the client's retry (same client id) finds the stored copy and
//! delivers it then, late.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use herald::Seq;
use tokio::sync::{OnceCell, oneshot};

use crate::sync::lock;

/// How many streams are kept once idle before the idle ones are dropped. A
/// dropped stream is started again (one head read) on its next write.
const IDLE_STREAMS_KEPT: usize = 10_000;

/// Every stream of one kind (here: chat rooms), by key.
pub struct Sequencer<T> {
    streams: Mutex<Streams<T>>,
}

struct Streams<T> {
    by_key: HashMap<String, Arc<Stream<T>>>,
    /// Sweep idle streams once this many are kept.
    sweep_at: usize,
}

impl<T> Default for Sequencer<T> {
    fn default() -> Self {
        Self { streams: Mutex::new(Streams { by_key: HashMap::new(), sweep_at: IDLE_STREAMS_KEPT }) }
    }
}

impl<T> Sequencer<T> {
    /// The stream of `key`, created (not yet started) if there is none.
    pub fn stream(&self, key: &str) -> Arc<Stream<T>> {
        let mut streams = lock(&self.streams);
        if let Some(stream) = streams.by_key.get(key) {
            return stream.clone();
        }
        if streams.by_key.len() >= streams.sweep_at {
            // Nobody else holds an idle stream, and nothing is pending in
            // it: dropping it loses nothing.
            streams.by_key.retain(|_, stream| Arc::strong_count(stream) > 1 || !stream.idle());
            streams.sweep_at = (streams.by_key.len() * 2).max(IDLE_STREAMS_KEPT);
        }
        let stream = Arc::new(Stream { started: OnceCell::new(), state: Mutex::new(State::default()) });
        streams.by_key.insert(key.to_owned(), stream.clone());
        stream
    }

    /// The stream of `key` if this node has one.
    pub fn get(&self, key: &str) -> Option<Arc<Stream<T>>> {
        lock(&self.streams).by_key.get(key).cloned()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.streams).by_key.len()
    }
}

/// One stream's delivery order.
pub struct Stream<T> {
    started: OnceCell<()>,
    state: Mutex<State<T>>,
}

struct State<T> {
    /// The lowest number neither delivered nor skipped.
    next: u64,
    /// Writers waiting for their number.
    allocating: usize,
    /// Numbers allocated whose write has not finished.
    writing: BTreeSet<u64>,
    /// Stored, waiting for a lower number.
    ready: BTreeMap<u64, Held<T>>,
}

impl<T> Default for State<T> {
    fn default() -> Self {
        Self { next: 0, allocating: 0, writing: BTreeSet::new(), ready: BTreeMap::new() }
    }
}

struct Held<T> {
    item: T,
    delivered: Vec<oneshot::Sender<()>>,
}

impl<T> Stream<T> {
    /// Starts the stream at the store's head, once: the first number this
    /// node allocates is `head + 1`. Must finish before a writer allocates.
    pub async fn start<E, F>(&self, head: impl FnOnce() -> F) -> Result<(), E>
    where
        F: Future<Output = Result<Seq, E>>,
    {
        self.started
            .get_or_try_init(|| async {
                let head = head().await?;
                lock(&self.state).next = head.get().saturating_add(1);
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// The newest number delivered or skipped; `None` before the stream
    /// started (nothing of it is in flight on this node then).
    pub fn cursor(&self) -> Option<Seq> {
        self.started.get()?;
        Some(Seq(lock(&self.state).next.saturating_sub(1)))
    }

    /// A writer of one message. `deliver` sends an item to the stream's
    /// listeners; it is called in order, under the stream's lock, for this
    /// writer's item and for any later ones it releases.
    pub fn writer<D: Fn(&T)>(self: &Arc<Self>, deliver: D) -> Writer<T, D> {
        lock(&self.state).allocating += 1;
        Writer { stream: self.clone(), deliver, step: Step::Allocating }
    }

    fn idle(&self) -> bool {
        let state = lock(&self.state);
        state.allocating == 0 && state.writing.is_empty() && state.ready.is_empty()
    }
}

impl<T> State<T> {
    /// Delivers everything that may go out now, in order.
    fn release(&mut self, deliver: &impl Fn(&T)) {
        loop {
            if let Some(held) = self.ready.remove(&self.next) {
                deliver(&held.item);
                for delivered in held.delivered {
                    let _ = delivered.send(());
                }
                self.next += 1;
                continue;
            }
            if self.writing.contains(&self.next) || self.allocating > 0 {
                // Being written, or about to be given to a writer.
                return;
            }
            // Nobody here holds `next`: skip to the lowest number someone does.
            let lowest = [self.ready.keys().next(), self.writing.iter().next()].into_iter().flatten().min().copied();
            match lowest {
                Some(seq) if seq > self.next => self.next = seq,
                _ => return,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    Allocating,
    Writing(u64),
    Done,
}

/// One message's way through a stream, from allocation to delivery. Dropped
/// before [`Writer::stored`] (the write failed, or the task was cancelled),
/// its number counts as skipped.
pub struct Writer<T, D: Fn(&T)> {
    stream: Arc<Stream<T>>,
    deliver: D,
    step: Step,
}

impl<T, D: Fn(&T)> Writer<T, D> {
    /// The store allocated `seq` to this writer.
    pub fn allocated(&mut self, seq: Seq) {
        if self.step != Step::Allocating {
            return;
        }
        let mut state = lock(&self.stream.state);
        state.allocating -= 1;
        state.writing.insert(seq.get());
        self.step = Step::Writing(seq.get());
    }

    /// `item` is stored as `seq` (its own number, or that of a copy stored
    /// before under the same client id). Resolves once it is delivered. A
    /// number already delivered is delivered again now: a retry's copy.
    pub fn stored(mut self, seq: Seq, item: T) -> impl Future<Output = ()> + use<T, D> {
        let (delivered, done) = oneshot::channel();
        {
            let stream = self.stream.clone();
            let mut state = lock(&stream.state);
            self.leave(&mut state);
            let seq = seq.get();
            if seq < state.next {
                (self.deliver)(&item);
                let _ = delivered.send(());
            } else if let Some(held) = state.ready.get_mut(&seq) {
                held.delivered.push(delivered);
            } else {
                state.writing.remove(&seq);
                state.ready.insert(seq, Held { item, delivered: vec![delivered] });
            }
            state.release(&self.deliver);
        }
        async move {
            let _ = done.await;
        }
    }

    /// Gives up this writer's place: no longer allocating, its number (if
    /// it had one) no longer being written.
    fn leave(&mut self, state: &mut State<T>) {
        match std::mem::replace(&mut self.step, Step::Done) {
            Step::Allocating => state.allocating -= 1,
            Step::Writing(seq) => {
                state.writing.remove(&seq);
            }
            Step::Done => {}
        }
    }
}

impl<T, D: Fn(&T)> Drop for Writer<T, D> {
    fn drop(&mut self) {
        if self.step == Step::Done {
            return;
        }
        let stream = self.stream.clone();
        let mut state = lock(&stream.state);
        self.leave(&mut state);
        state.release(&self.deliver);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    type Log = RefCell<Vec<u64>>;

    fn started(head: u64) -> Arc<Stream<u64>> {
        let stream = Sequencer::default().stream("room:a");
        let start = stream.start(|| async move { Ok::<_, ()>(Seq(head)) });
        assert_eq!(poll_once(start), Poll::Ready(Ok(())));
        stream
    }

    fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
        pin!(future).as_mut().poll(&mut Context::from_waker(Waker::noop()))
    }

    fn writer<'a>(stream: &Arc<Stream<u64>>, log: &'a Log) -> Writer<u64, impl Fn(&u64) + 'a> {
        stream.writer(move |seq: &u64| log.borrow_mut().push(*seq))
    }

    #[test]
    fn a_later_number_waits_for_an_earlier_one_being_written() {
        let stream = started(276);
        let log = Log::default();
        let mut first = writer(&stream, &log);
        let mut second = writer(&stream, &log);
        first.allocated(Seq(277));
        second.allocated(Seq(278));
        let mut waiting = Box::pin(second.stored(Seq(278), 278));
        assert!(poll_once(waiting.as_mut()).is_pending(), "278 is held while 277 is written");
        assert!(log.borrow().is_empty());
        assert_eq!(stream.cursor(), Some(Seq(276)));
        assert!(poll_once(first.stored(Seq(277), 277)).is_ready());
        assert!(poll_once(waiting.as_mut()).is_ready());
        assert_eq!(*log.borrow(), [277, 278]);
        assert_eq!(stream.cursor(), Some(Seq(278)));
    }

    #[test]
    fn nothing_is_skipped_while_a_writer_waits_for_its_number() {
        let stream = started(0);
        let log = Log::default();
        let slow = writer(&stream, &log);
        let mut fast = writer(&stream, &log);
        // The fast writer's `$inc` answered first with 2; 1 is the slow one's.
        fast.allocated(Seq(2));
        let mut waiting = Box::pin(fast.stored(Seq(2), 2));
        assert!(poll_once(waiting.as_mut()).is_pending());
        let mut slow = slow;
        slow.allocated(Seq(1));
        assert!(poll_once(slow.stored(Seq(1), 1)).is_ready());
        assert!(poll_once(waiting.as_mut()).is_ready());
        assert_eq!(*log.borrow(), [1, 2]);
    }

    #[test]
    fn a_failed_write_is_skipped_and_releases_what_waited() {
        let stream = started(10);
        let log = Log::default();
        let mut failing = writer(&stream, &log);
        let mut next = writer(&stream, &log);
        failing.allocated(Seq(11));
        next.allocated(Seq(12));
        let mut waiting = Box::pin(next.stored(Seq(12), 12));
        assert!(poll_once(waiting.as_mut()).is_pending());
        drop(failing);
        assert!(poll_once(waiting.as_mut()).is_ready());
        assert_eq!(*log.borrow(), [12]);
        assert_eq!(stream.cursor(), Some(Seq(12)));
    }

    #[test]
    fn an_allocation_that_never_answered_is_skipped_once_nobody_waits() {
        let stream = started(0);
        let log = Log::default();
        // This writer's `$inc` took 1 in the store, but the answer was lost.
        let lost = writer(&stream, &log);
        let mut next = writer(&stream, &log);
        next.allocated(Seq(2));
        let mut waiting = Box::pin(next.stored(Seq(2), 2));
        assert!(poll_once(waiting.as_mut()).is_pending(), "1 may still be answered");
        drop(lost);
        assert!(poll_once(waiting.as_mut()).is_ready());
        assert_eq!(*log.borrow(), [2]);
    }

    #[test]
    fn a_duplicate_skips_its_own_number_and_delivers_the_stored_copy_again() {
        let stream = started(5);
        let log = Log::default();
        let mut retry = writer(&stream, &log);
        // Allocated 6, but the insert found the client id stored as 3.
        retry.allocated(Seq(6));
        assert!(poll_once(retry.stored(Seq(3), 3)).is_ready());
        assert_eq!(*log.borrow(), [3]);
        let mut after = writer(&stream, &log);
        after.allocated(Seq(7));
        assert!(poll_once(after.stored(Seq(7), 7)).is_ready());
        assert_eq!(*log.borrow(), [3, 7]);
    }

    #[test]
    fn two_writers_finding_one_copy_deliver_it_once() {
        let stream = started(0);
        let log = Log::default();
        let mut blocker = writer(&stream, &log);
        blocker.allocated(Seq(1));
        let mut first = writer(&stream, &log);
        first.allocated(Seq(2));
        let retry = writer(&stream, &log);
        let mut a = Box::pin(first.stored(Seq(2), 2));
        // A retry found 2 stored (the first attempt's) before it was delivered.
        let mut b = Box::pin(retry.stored(Seq(2), 2));
        assert!(poll_once(a.as_mut()).is_pending() && poll_once(b.as_mut()).is_pending());
        assert!(poll_once(blocker.stored(Seq(1), 1)).is_ready());
        assert!(poll_once(a.as_mut()).is_ready() && poll_once(b.as_mut()).is_ready());
        assert_eq!(*log.borrow(), [1, 2]);
    }

    #[test]
    fn a_later_allocation_skips_numbers_nobody_holds() {
        let stream = started(0);
        let log = Log::default();
        // 1 to 3 were taken by `$inc`s whose answers were lost long ago.
        let mut late = writer(&stream, &log);
        late.allocated(Seq(4));
        assert!(poll_once(late.stored(Seq(4), 4)).is_ready());
        assert_eq!(*log.borrow(), [4]);
        assert_eq!(stream.cursor(), Some(Seq(4)));
    }

    #[test]
    fn idle_streams_are_dropped_when_too_many_are_kept_and_busy_ones_stay() {
        let sequencer = Sequencer::<u64>::default();
        let busy = sequencer.stream("busy");
        for i in 1..IDLE_STREAMS_KEPT {
            sequencer.stream(&format!("idle-{i}"));
        }
        assert_eq!(sequencer.len(), IDLE_STREAMS_KEPT, "no sweep below the limit");
        sequencer.stream("one-more");
        assert_eq!(sequencer.len(), 2, "idle streams dropped, the busy one and the new one kept");
        assert!(Arc::ptr_eq(&busy, &sequencer.stream("busy")), "a stream someone holds is kept");
    }

    #[test]
    fn an_unstarted_stream_has_no_cursor() {
        let stream = Sequencer::<u64>::default().stream("room:b");
        assert_eq!(stream.cursor(), None);
        assert!(started(9).cursor() == Some(Seq(9)));
    }
}
