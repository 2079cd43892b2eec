//! Every stream of one kind on this node: writing them in groups, and
//! delivering what reaches the node in order, with a window for catch-ups.
//!
//! **Group commit.** A write to a stream starts a batch of its own while
//! fewer than [`WRITERS_MAX`] of the stream's batches are in flight on this
//! node; otherwise it queues, and the next free writer stores everything
//! queued together: one allocation and one insert (see the stores),
//! whatever its size, up to [`BATCH_MAX`]. So a write waits for one round
//! trip of the store when the stream is quiet, and a busy stream's rate is
//! bounded by its batch size over the store's latency, not by one latency
//! per write. Each write is answered once its batch is stored and in this
//! node's delivery order, without waiting for the fan-out: the next batch's
//! round trip to the store overlaps with it.
//!
//! **Delivery.** What the broker brings is put in order by [`Order`]:
//! batches in flight together may finish in any order, and a hole that
//! stays open for `hold` is filled from the store. What may go out goes to
//! the stream's outbox, which one task empties in order, an item at a time,
//! letting other tasks run between items (a room of thousands costs
//! milliseconds per item).
//!
//! **Start.** A stream with listeners starts at the store's head, read once
//! while no write of this node is in flight (writers finish their batches
//! and wait), so nothing this node allocated is missing below the cursor.
//!
//! **Catch-up.** A join or sync is answered from the window when `since`
//! falls inside it; below it, one read of the store per stream at a time
//! extends the window for everyone waiting. The answer ends at the cursor,
//! and the socket joins the channel in the same step, so it gets everything
//! after `since` exactly once: in the answer, or live. A client whose
//! `since` is beyond what this node has delivered (another node served it
//! first) waits until this node has delivered that far (see
//! [`Streams::reach`]), or none of what it holds would be spared.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::Seq;
use herald::protocol::{EV_MESSAGE_REMOVED, EV_PRESENCE, MessageRemoved};
use tokio::sync::{Notify, oneshot};

use super::broker::{Broker, Encoded, Publication};
use super::channel::Channel;
use super::local::Local;
use super::log::Log;
use super::order::{Budget, Keep, Order};
use crate::store::{Append, Appended, StoreError};
use crate::sync::lock;

/// The most writes stored in one batch.
pub const BATCH_MAX: usize = 256;
/// The most batches of one stream in flight at once on this node.
pub const WRITERS_MAX: usize = 4;
/// The most writes one stream queues; one more is refused as overloaded.
pub const QUEUE_MAX: usize = 4096;
/// How often a hole is looked up in a store that fails before it is
/// skipped (what it held is still stored, for the next catch-up).
const FILL_TRIES: u32 = 10;
/// Streams whose heads one read of a position check asks for.
pub const POSITIONS_PER_READ: usize = 512;
/// How long past the hold a catch-up waits for this node to deliver what
/// its client already holds (see [`Streams::reach`]) before it fails as
/// unavailable (the client asks again).
const REACH_GRACE: Duration = Duration::from_secs(5);

/// How streams behave, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a hole may stay open before it is filled from the store.
    pub hold: Duration,
    /// The most items one stream's window keeps.
    pub window_items: usize,
}

/// What a join or sync missed.
#[derive(Debug)]
pub struct CatchUp {
    /// The stream's cursor: everything up to it is in `items` or was
    /// before `since`; everything after it arrives live.
    pub head: Seq,
    /// Oldest first, at most the numbers asked for (`CATCH_UP_MAX` for a
    /// join or sync).
    pub items: Vec<Encoded>,
    /// More were missed than asked for; only the newest came.
    pub truncated: bool,
}

/// Every stream of one log.
pub struct Streams<L: Log> {
    log: L,
    cells: Mutex<HashMap<Channel, Arc<Cell<L>>>>,
    settings: Settings,
    budget: Arc<Budget>,
    local: Arc<Local>,
    broker: Arc<dyn Broker>,
    /// Held by the write to many streams in flight (see [`Self::append_each`]).
    each: tokio::sync::Mutex<()>,
}

/// One stream.
struct Cell<L: Log> {
    channel: Channel,
    state: Mutex<State<L>>,
    /// A start or a writer finished; while a catch-up waits in `reach`,
    /// also the cursor moved or an item went out.
    changed: Notify,
    /// One read of the store extends the window at a time.
    backfill: tokio::sync::Mutex<()>,
}

impl<L: Log> Cell<L> {
    /// Tells the catch-ups waiting in `reach` (if any: otherwise delivery
    /// costs nothing more) that what this node delivered may have moved.
    fn tell_reaching(&self, state: &State<L>) {
        if state.reaching > 0 {
            self.changed.notify_waiters();
        }
    }
}

struct State<L: Log> {
    queue: VecDeque<Pending<L>>,
    /// Writer tasks storing (or about to store) a batch.
    writers: usize,
    /// The head is being read for a start.
    starting: bool,
    /// A start waits for the writer to finish its batch.
    start_wanted: bool,
    /// A task is waiting to fill a hole.
    filling: bool,
    /// In order, what is to be delivered to this node's sockets, and
    /// whether a task is delivering it.
    outbox: VecDeque<(Seq, Encoded)>,
    delivering: bool,
    /// Batches started on this node so far, and those still in flight: a
    /// hole is only filled from the store once every batch that was in
    /// flight when it opened has finished (one of them may hold it).
    batches: u64,
    /// A batch of this node finished: the stream's head exists in the
    /// store. Until then one batch at a time, so that two first writes do
    /// not race to create it (a lost race can waste a number).
    written: bool,
    in_flight: BTreeSet<u64>,
    /// This node's sockets that want the stream delivered.
    listeners: usize,
    order: Order,
    /// The newest presence snapshot delivered (rooms only).
    presence_version: u64,
    /// Catch-ups waiting for this node to deliver what their client holds
    /// (see [`Streams::reach`]): while there are any, the cursor moving and
    /// each item going out are told through `changed`.
    reaching: usize,
}

impl<L: Log> State<L> {
    fn writers_max(&self) -> usize {
        if self.written { WRITERS_MAX } else { 1 }
    }

    /// Counts the writers the queue needs now, up to the most allowed,
    /// unless a start has the stream; how many more.
    fn more_writers(&mut self) -> usize {
        if self.starting || self.start_wanted {
            return 0;
        }
        let more = self.queue.len().min(self.writers_max().saturating_sub(self.writers));
        self.writers += more;
        more
    }

    /// The newest number this node's sockets have been given (or that
    /// holds nothing): the cursor, less what the outbox still holds, which
    /// a socket joining now gets live. `None` before the stream starts.
    fn delivered(&self) -> Option<Seq> {
        let cursor = self.order.cursor()?;
        Some(self.outbox.iter().map(|(seq, _)| Seq(seq.get().saturating_sub(1))).fold(cursor, Seq::min))
    }

    fn idle(&self) -> bool {
        self.queue.is_empty()
            && self.writers == 0
            && !self.starting
            && !self.filling
            && !self.delivering
            && self.listeners == 0
    }
}

/// Counts a catch-up among the stream's `reaching` while it lives.
struct Reaching<'a, L: Log>(&'a Cell<L>);

impl<'a, L: Log> Reaching<'a, L> {
    fn new(cell: &'a Cell<L>) -> Self {
        lock(&cell.state).reaching += 1;
        Self(cell)
    }
}

impl<L: Log> Drop for Reaching<'_, L> {
    fn drop(&mut self) {
        lock(&self.0.state).reaching -= 1;
    }
}

struct Pending<L: Log> {
    item: L::New,
    answer: oneshot::Sender<Result<L::Item, StoreError>>,
}

impl<L: Log> Streams<L> {
    pub fn new(log: L, settings: Settings, budget: Arc<Budget>, local: Arc<Local>, broker: Arc<dyn Broker>) -> Self {
        Self { log, cells: Mutex::default(), settings, budget, local, broker, each: tokio::sync::Mutex::new(()) }
    }

    pub fn log(&self) -> &L {
        &self.log
    }

    fn cell(&self, channel: &Channel) -> Arc<Cell<L>> {
        lock(&self.cells)
            .entry(channel.clone())
            .or_insert_with(|| {
                Arc::new(Cell {
                    channel: channel.clone(),
                    state: Mutex::new(State {
                        queue: VecDeque::new(),
                        writers: 0,
                        starting: false,
                        start_wanted: false,
                        filling: false,
                        outbox: VecDeque::new(),
                        delivering: false,
                        batches: 0,
                        written: false,
                        in_flight: BTreeSet::new(),
                        listeners: 0,
                        order: Order::default(),
                        presence_version: 0,
                        reaching: 0,
                    }),
                    changed: Notify::new(),
                    backfill: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    fn get(&self, channel: &Channel) -> Option<Arc<Cell<L>>> {
        lock(&self.cells).get(channel).cloned()
    }

    /// Forgets the stream if nothing uses it: nobody listens, writes or
    /// waits, and nobody else holds it.
    fn tidy(&self, channel: &Channel) {
        let mut cells = lock(&self.cells);
        if let Some(cell) = cells.get(channel)
            && Arc::strong_count(cell) == 1
            && lock(&cell.state).idle()
        {
            cells.remove(channel);
        }
    }

    /// How many streams this node keeps (for `/metrics`).
    pub fn len(&self) -> usize {
        lock(&self.cells).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn keep(&self, channel: &Channel) -> Keep<'_> {
        let items = if L::windowed(channel) { self.settings.window_items } else { 0 };
        Keep { items, budget: &self.budget }
    }

    /// One more socket of this node wants `channel` delivered. The stream
    /// starts (in the background) if it has not: from then on the socket
    /// gets what is stored live, and what was stored before from a
    /// catch-up.
    pub fn listen(self: &Arc<Self>, channel: &Channel) {
        let cell = self.cell(channel);
        let start = {
            let mut state = lock(&cell.state);
            state.listeners += 1;
            state.order.cursor().is_none() && !state.starting
        };
        if start {
            let streams = self.clone();
            tokio::spawn(async move {
                if let Err(err) = streams.started(&cell).await {
                    tracing::warn!(%err, channel = %cell.channel, "starting a stream failed; its next catch-up starts it");
                }
                let channel = cell.channel.clone();
                drop(cell);
                streams.tidy(&channel);
            });
        }
    }

    /// One socket fewer; the last one's leaving drops the window.
    pub fn unlisten(&self, channel: &Channel) {
        if let Some(cell) = self.get(channel) {
            let mut state = lock(&cell.state);
            state.listeners = state.listeners.saturating_sub(1);
            if state.listeners == 0 {
                state.order.stop(&self.budget);
                state.outbox.clear();
                self.broker.unsubscribe(channel);
            }
        }
        self.tidy(channel);
    }

    /// This node's sockets listening to `channel`.
    pub fn listeners(&self, channel: &Channel) -> usize {
        self.get(channel).map_or(0, |cell| lock(&cell.state).listeners)
    }

    /// Stores `item` in `channel`'s stream with whatever else is written
    /// to it meanwhile, publishes it, and answers with the stored item (or
    /// the copy stored before it).
    pub async fn append(self: &Arc<Self>, channel: &Channel, item: L::New) -> Result<L::Item, StoreError> {
        let cell = self.cell(channel);
        let (answer, answered) = oneshot::channel();
        let spawn = {
            let mut state = lock(&cell.state);
            if state.queue.len() >= QUEUE_MAX {
                return Err(StoreError::Overloaded);
            }
            state.queue.push_back(Pending { item, answer });
            let spawn = state.writers < state.writers_max() && !state.starting && !state.start_wanted;
            state.writers += usize::from(spawn);
            spawn
        };
        if spawn {
            tokio::spawn(self.clone().write(cell));
        } else {
            drop(cell);
        }
        answered.await.unwrap_or_else(|_| Err(StoreError::Corrupt("the stream's writer stopped".into())))
    }

    /// Stores `item` once in each of `channels`' streams, in one write of
    /// the log where it can (a publish to many users), publishes each, and
    /// answers per channel, in their order. The write is one of each
    /// stream's writers while it is in flight: no stream starts (reads its
    /// head) meanwhile, and a hole it may hold is waited for, as for a
    /// batch of the stream's own.
    ///
    /// One such write at a time on this node: two of them to overlapping
    /// streams would take the same numbers (see the stores).
    pub async fn append_each(self: &Arc<Self>, channels: &[Channel], item: L::New) -> Vec<Result<L::Item, StoreError>> {
        let _one = self.each.lock().await;
        let mut entered = Vec::with_capacity(channels.len());
        for channel in channels {
            let cell = self.cell(channel);
            let ticket = Self::enter(&cell).await;
            entered.push((cell, ticket));
        }
        let mut each = self.log.append_each(channels, &item).await.into_iter();
        let mut answers = Vec::with_capacity(channels.len());
        for (cell, ticket) in entered {
            let appended = each.next().unwrap_or_else(|| Appended::failed(1, StoreError::Corrupt("unanswered".into())));
            self.publish(&cell.channel, &appended).await;
            self.leave(cell, ticket);
            let answer = appended.answers.into_iter().next();
            answers
                .push(answer.unwrap_or_else(|| Err(StoreError::Corrupt("unanswered".into()))).map(Append::into_item));
        }
        answers
    }

    /// Counts a write of someone else's (see [`Self::append_each`]) as one
    /// of the stream's writers, once no start is reading its head; its
    /// ticket. It does not wait for a start that only wants the stream: that
    /// one waits for the writers in flight, this among them, so waiting for
    /// it here could wait for ever.
    async fn enter(cell: &Cell<L>) -> u64 {
        loop {
            let changed = cell.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = lock(&cell.state);
                if !state.starting {
                    state.writers += 1;
                    let ticket = state.batches;
                    state.batches += 1;
                    state.in_flight.insert(ticket);
                    return ticket;
                }
            }
            changed.await;
        }
    }

    /// The write with `ticket` is done: the writers it kept from starting
    /// start now.
    fn leave(self: &Arc<Self>, cell: Arc<Cell<L>>, ticket: u64) {
        let spawn = {
            let mut state = lock(&cell.state);
            state.in_flight.remove(&ticket);
            state.written = true;
            state.writers -= 1;
            state.more_writers()
        };
        cell.changed.notify_waiters();
        for _ in 0..spawn {
            tokio::spawn(self.clone().write(cell.clone()));
        }
        let channel = cell.channel.clone();
        drop(cell);
        self.tidy(&channel);
    }

    /// One of the stream's writers: stores what is queued, a batch at a
    /// time, until nothing is (or a start wants the stream to itself).
    async fn write(self: Arc<Self>, cell: Arc<Cell<L>>) {
        let mut ticket;
        loop {
            let batch: Vec<Pending<L>> = {
                let mut state = lock(&cell.state);
                if state.queue.is_empty() || state.start_wanted {
                    state.writers -= 1;
                    break;
                }
                let size = state.queue.len().min(BATCH_MAX);
                ticket = state.batches;
                state.batches += 1;
                state.in_flight.insert(ticket);
                state.queue.drain(..size).collect()
            };
            let (items, answers): (Vec<L::New>, Vec<_>) = batch.into_iter().map(|p| (p.item, p.answer)).unzip();
            let appended = self.log.append(&cell.channel, &items).await;
            self.publish(&cell.channel, &appended).await;
            {
                let mut state = lock(&cell.state);
                state.in_flight.remove(&ticket);
                state.written = true;
            }
            for (answer, result) in answers.into_iter().zip(appended.answers) {
                let _ = answer.send(result.map(Append::into_item));
            }
        }
        cell.changed.notify_waiters();
        let channel = cell.channel.clone();
        drop(cell);
        self.tidy(&channel);
    }

    /// Publishes a stored batch: its new items with the numbers it took,
    /// then any stored copies it was answered with.
    async fn publish(&self, channel: &Channel, appended: &Appended<L::Item>) {
        let encode = |item: &L::Item| Some((L::seq(item), Encoded::of(item)?));
        let mut fresh = Vec::new();
        let mut copies = Vec::new();
        for answer in &appended.answers {
            match answer {
                Ok(Append::Stored(item)) => fresh.extend(encode(item)),
                Ok(Append::Existing(item)) => copies.extend(encode(item)),
                Err(_) => {}
            }
        }
        fresh.sort_by_key(|(seq, _)| *seq);
        copies.sort_by_key(|(seq, _)| *seq);
        copies.dedup_by_key(|(seq, _)| *seq);
        // One publication per span, each with the items it accounts for.
        let mut publications = Vec::with_capacity(appended.spans.len() + 1);
        let mut fresh = fresh.into_iter().peekable();
        for &(first, last) in &appended.spans {
            let mut items = Vec::new();
            while let Some((seq, _)) = fresh.peek()
                && *seq <= last
            {
                let item = fresh.next().expect("peeked");
                if item.0 >= first {
                    items.push(item);
                }
            }
            publications.push(Publication::Stream { span: Some((first, last)), items });
        }
        if !copies.is_empty() {
            publications.push(Publication::Stream { span: None, items: copies });
        }
        for publication in publications {
            if let Err(err) = self.broker.publish(channel, publication).await {
                tracing::warn!(%err, %channel, "publishing failed; listeners catch up from the store");
            }
        }
    }

    /// Reads the store's head of every stream this node delivers (one read
    /// per [`POSITIONS_PER_READ`] streams) and fills what never came: a
    /// publication lost between nodes, most of all a stream's last one,
    /// which no later one reveals. How many streams were behind.
    pub async fn check_positions(self: &Arc<Self>) -> usize {
        let cells: Vec<Arc<Cell<L>>> = lock(&self.cells)
            .values()
            .filter(|cell| {
                let state = lock(&cell.state);
                state.listeners > 0 && state.order.cursor().is_some()
            })
            .cloned()
            .collect();
        let mut behind = 0;
        for chunk in cells.chunks(POSITIONS_PER_READ) {
            let channels: Vec<Channel> = chunk.iter().map(|cell| cell.channel.clone()).collect();
            let heads = match self.log.heads(&channels).await {
                Ok(heads) => heads,
                Err(err) => {
                    tracing::warn!(%err, "a position check could not read the heads; the next one will");
                    break;
                }
            };
            for (cell, head) in chunk.iter().zip(heads) {
                let mut state = lock(&cell.state);
                if state.listeners == 0 || !state.order.behind(head) {
                    continue;
                }
                behind += 1;
                if let Some(hole) = state.order.hole()
                    && !state.filling
                {
                    state.filling = true;
                    tokio::spawn(self.clone().fill(cell.clone(), (hole, state.batches)));
                }
            }
        }
        behind
    }

    /// Takes what the broker brought for `channel` on this node.
    pub fn receive(self: &Arc<Self>, channel: &Channel, publication: Publication) {
        let Some(cell) = self.get(channel) else { return };
        match publication {
            Publication::Event { event, payload } => {
                self.local.deliver(channel, event, &payload);
            }
            Publication::Presence { version, payload } => {
                // Under the stream's lock, so that two snapshots crossing
                // are delivered newest last, or the older not at all.
                let mut state = lock(&cell.state);
                if version >= state.presence_version {
                    state.presence_version = version;
                    self.local.deliver(channel, EV_PRESENCE, &payload);
                }
            }
            Publication::Removed { seq } => {
                let Channel::Room(room) = channel else { return };
                let mut state = lock(&cell.state);
                state.order.remove(seq, &self.budget);
                state.outbox.retain(|(s, _)| *s != seq);
                // Under the lock: after the item itself if it went out.
                if let Some(payload) = Encoded::of(&MessageRemoved { room: room.to_string(), seq }) {
                    self.local.deliver(channel, EV_MESSAGE_REMOVED, &payload);
                }
            }
            // The engine closes sockets itself.
            Publication::Disconnect { .. } => {}
            Publication::Stream { span, items } => {
                let keep = self.keep(channel);
                let mut state = lock(&cell.state);
                if state.listeners == 0 {
                    state.order.stop(&self.budget);
                    return;
                }
                let before = state.order.cursor();
                let out = match span {
                    Some(span) => state.order.accept(span, items, keep),
                    None => state.order.accept_copies(items, keep),
                };
                self.send(&cell, &mut state, out);
                if state.order.cursor() != before {
                    cell.tell_reaching(&state);
                }
                if let Some(hole) = state.order.hole()
                    && !state.filling
                {
                    state.filling = true;
                    tokio::spawn(self.clone().fill(cell.clone(), (hole, state.batches)));
                }
            }
        }
    }

    /// Puts what may go out in the stream's outbox, and starts its
    /// delivery if it is not running.
    fn send(self: &Arc<Self>, cell: &Arc<Cell<L>>, state: &mut State<L>, out: Vec<(Seq, Encoded)>) {
        if out.is_empty() {
            return;
        }
        state.outbox.extend(out);
        if !state.delivering {
            state.delivering = true;
            tokio::spawn(self.clone().deliver(cell.clone()));
        }
    }

    /// Empties the stream's outbox into this node's sockets, in order, an
    /// item at a time under the stream's lock: a join in between sees
    /// exactly what is still to come.
    async fn deliver(self: Arc<Self>, cell: Arc<Cell<L>>) {
        loop {
            {
                let mut state = lock(&cell.state);
                let Some((_, payload)) = state.outbox.pop_front() else {
                    state.delivering = false;
                    break;
                };
                self.local.deliver(&cell.channel, L::EVENT, &payload);
                cell.tell_reaching(&state);
            }
            tokio::task::yield_now().await;
        }
        let channel = cell.channel.clone();
        drop(cell);
        self.tidy(&channel);
    }

    /// Fills the stream's holes from the store: one that stayed open for
    /// `hold`, once every batch of this node that was in flight when it
    /// opened has finished. `seen` is the hole as it opened, with the
    /// batches started by then.
    async fn fill(self: Arc<Self>, cell: Arc<Cell<L>>, mut seen: ((Seq, Seq), u64)) {
        let mut failures = 0;
        loop {
            tokio::time::sleep(self.settings.hold).await;
            let hole = {
                let mut state = lock(&cell.state);
                let hole = state.order.hole();
                state.filling = hole.is_some();
                match hole {
                    // Still the same, and no batch of then still in flight.
                    Some(hole) if hole == seen.0 && state.in_flight.first().is_none_or(|first| *first >= seen.1) => {
                        Some(hole)
                    }
                    Some(hole) => {
                        if hole != seen.0 {
                            seen = (hole, state.batches);
                        }
                        continue;
                    }
                    None => None,
                }
            };
            let Some((cursor, upto)) = hole else { break };
            let found = self.log.range(&cell.channel, cursor, Seq(upto.get() - 1), upto.get() - cursor.get() - 1).await;
            let found = match found {
                Ok(found) => found,
                Err(err) if failures < FILL_TRIES => {
                    failures += 1;
                    tracing::warn!(%err, channel = %cell.channel, "filling a hole failed; trying again");
                    continue;
                }
                Err(err) => {
                    tracing::warn!(%err, channel = %cell.channel, "filling a hole failed; skipping it");
                    Vec::new()
                }
            };
            failures = 0;
            let found = found.iter().filter_map(|item| Some((L::seq(item), Encoded::of(item)?))).collect();
            let keep = self.keep(&cell.channel);
            let mut state = lock(&cell.state);
            let out = state.order.fill(upto, found, keep);
            self.send(&cell, &mut state, out);
            cell.tell_reaching(&state);
        }
        let channel = cell.channel.clone();
        drop(cell);
        self.tidy(&channel);
    }

    /// Starts the stream if it is not: reads its head while no write of
    /// this node is in flight.
    async fn started(self: &Arc<Self>, cell: &Arc<Cell<L>>) -> Result<(), StoreError> {
        loop {
            let changed = cell.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = lock(&cell.state);
                if state.order.cursor().is_some() {
                    return Ok(());
                }
                if !state.starting && state.writers == 0 {
                    state.starting = true;
                    break;
                }
                state.start_wanted |= state.writers > 0;
            }
            changed.await;
        }
        // Subscribed before the head is read: whatever another node stores
        // after the read comes from the broker (or fills a hole).
        if let Err(err) = self.broker.subscribe(&cell.channel).await {
            tracing::warn!(%err, channel = %cell.channel, "subscribing failed; other nodes' events come from the store");
        }
        let head = self.log.head(&cell.channel).await;
        let spawn = {
            let mut state = lock(&cell.state);
            state.starting = false;
            state.start_wanted = false;
            // Started only while someone listens: a stream nobody here
            // listens to hears nothing, so its cursor would go stale.
            if let Ok(head) = &head
                && state.listeners > 0
            {
                state.order.start(*head);
            }
            if state.listeners == 0 {
                self.broker.unsubscribe(&cell.channel);
            }
            state.more_writers()
        };
        cell.changed.notify_waiters();
        for _ in 0..spawn {
            tokio::spawn(self.clone().write(cell.clone()));
        }
        head.map(|_| ())
    }

    /// What a client holding everything up to `since` missed, up to the
    /// cursor; `joined` runs in the same step as the cursor is read (the
    /// socket joins the channel there), so everything after the cursor
    /// reaches it live.
    pub async fn catch_up(
        self: &Arc<Self>,
        channel: &Channel,
        since: Seq,
        max: u64,
        joined: impl FnOnce(),
    ) -> Result<CatchUp, StoreError> {
        let cell = self.cell(channel);
        let keep = self.keep(channel);
        let mut joined = Some(joined);
        let mut reached = false;
        let (head, from, floor, recent) = loop {
            self.started(&cell).await?;
            {
                let state = lock(&cell.state);
                // Stopped meanwhile (its last listener left): start again,
                // if someone still listens (a caller listens before it asks).
                let Some(head) = state.delivered() else {
                    if state.listeners == 0 {
                        return Err(StoreError::Corrupt(format!(
                            "a catch-up of {channel}, which nobody here listens to"
                        )));
                    }
                    continue;
                };
                if since <= head || reached {
                    if let Some(joined) = joined.take() {
                        joined();
                    }
                    let from = since.max(Seq(head.get().saturating_sub(max)));
                    let window = state.order.window();
                    break (head, from, window.floor(), window.between(from.max(window.floor()), head));
                }
            }
            // The client holds more than this node delivered.
            self.reach(&cell, since).await?;
            reached = true;
        };
        let mut items = if from < floor { self.backfill(&cell, from, floor, keep).await? } else { Vec::new() };
        items.extend(recent);
        Ok(CatchUp { head, items, truncated: from > since })
    }

    /// Waits until this node has delivered `since`, which a client holds: a
    /// node ahead of this one served it what this node has not delivered
    /// yet (its publications are on their way, or lost), and all of that
    /// would come to it again live. The hole up to `since` is filled like
    /// any other (what comes meanwhile closes it at once). `since` is
    /// believed only as far as the store's head: a client may hold numbers
    /// the store never gave (a database started afresh) or make them up.
    async fn reach(self: &Arc<Self>, cell: &Arc<Cell<L>>, since: Seq) -> Result<(), StoreError> {
        let target = since.min(self.log.head(&cell.channel).await?);
        let within = self.settings.hold + REACH_GRACE;
        let deadline = tokio::time::Instant::now() + within;
        let _told = Reaching::new(cell);
        loop {
            let changed = cell.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = lock(&cell.state);
                // Stopped meanwhile: the caller starts it again, at a head
                // read after this one.
                let Some(delivered) = state.delivered() else { return Ok(()) };
                if delivered >= target {
                    return Ok(());
                }
                if state.order.behind(target)
                    && let Some(hole) = state.order.hole()
                    && !state.filling
                {
                    state.filling = true;
                    tokio::spawn(self.clone().fill(cell.clone(), (hole, state.batches)));
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(StoreError::Timeout(within));
            }
        }
    }

    /// The items of `(from, floor]`, below the window: read once for
    /// everyone waiting, and kept in the window as far as it has room.
    async fn backfill(
        &self,
        cell: &Cell<L>,
        from: Seq,
        floor: Seq,
        keep: Keep<'_>,
    ) -> Result<Vec<Encoded>, StoreError> {
        let _one = cell.backfill.lock().await;
        let kept = {
            let state = lock(&cell.state);
            let window = state.order.window();
            if state.order.cursor().is_some() && window.floor() <= from {
                // Someone else's read extended the window meanwhile.
                return Ok(window.between(from, floor));
            }
            window.len()
        };
        let room = keep.items.saturating_sub(kept) as u64;
        let lo = Seq(floor.get().saturating_sub((floor.get() - from.get()).max(room)));
        let found = self.log.range(&cell.channel, lo, floor, floor.get() - lo.get()).await?;
        let found: Vec<(Seq, Encoded)> =
            found.iter().filter_map(|item| Some((L::seq(item), Encoded::of(item)?))).collect();
        {
            let mut state = lock(&cell.state);
            if state.order.cursor().is_some() && state.order.window().floor() == floor {
                state.order.window_mut().prepend(lo, &found, keep);
            }
        }
        Ok(found.into_iter().filter(|(seq, _)| *seq > from).map(|(_, item)| item).collect())
    }
}
