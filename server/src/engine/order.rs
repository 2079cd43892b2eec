//! One stream's delivery order on this node, and its window: pure state,
//! no I/O (the caller delivers what it is handed, under the stream's lock).
//!
//! The [`Order`]'s cursor is the newest number delivered or known to hold
//! nothing. A publication whose numbers start right after it is delivered
//! at once; a later one is held until the hole before it is filled (by the
//! publication that was missing, or by a read of the store: see
//! [`Order::fill`]); a number the store does not have was skipped (if it
//! lands after all, it goes out late, once: see [`Order::accept_copies`]). So every
//! listener gets a stream's items once each, in increasing order, and a
//! catch-up that ends at the cursor leaves nothing between it and what
//! arrives live: the newest seq a client holds is a true watermark.
//!
//! The [`Window`] keeps the newest items (floor, cursor], encoded, bounded
//! per stream and by a byte budget shared by every stream of the node.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};

use herald::Seq;

use super::broker::Encoded;

/// The most publications one stream holds while waiting for a hole to be
/// filled; one more skips the hole (its items are still in the store, for
/// the next catch-up).
pub const HELD_MAX: usize = 1024;
/// The most removed numbers one stream remembers (so that a copy still on
/// its way is not delivered); the oldest is forgotten first.
pub const REMOVED_MAX: usize = 256;
/// The most runs of skipped numbers one stream remembers (so that a stored
/// copy of one, landed late, is delivered once); the oldest is forgotten
/// first, and a copy of it is then left to catch-ups.
pub const SKIPPED_MAX: usize = 256;

/// Memory all windows of a node may use, in bytes of encoded items.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    pub fn new(max: usize) -> Self {
        Self { used: AtomicUsize::new(0), max }
    }

    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|after| *after <= self.max)
            })
            .is_ok()
    }

    fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes in use (for `/metrics`).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// How much one stream's window may keep.
#[derive(Clone, Copy)]
pub struct Keep<'a> {
    pub items: usize,
    pub budget: &'a Budget,
}

/// The newest items of a stream: every item with `floor < seq <= cursor`
/// (numbers in that range that are absent hold nothing).
#[derive(Debug, Default)]
pub struct Window {
    floor: Seq,
    items: VecDeque<(Seq, Encoded)>,
    bytes: usize,
}

impl Window {
    pub fn floor(&self) -> Seq {
        self.floor
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items after `from` (which must be at least the floor).
    pub fn after(&self, from: Seq) -> Vec<Encoded> {
        let start = self.items.partition_point(|(seq, _)| *seq <= from);
        self.items.range(start..).map(|(_, item)| item.clone()).collect()
    }

    /// The items of `(from, to]`.
    pub fn between(&self, from: Seq, to: Seq) -> Vec<Encoded> {
        let start = self.items.partition_point(|(seq, _)| *seq <= from);
        let end = self.items.partition_point(|(seq, _)| *seq <= to);
        self.items.range(start..end.max(start)).map(|(_, item)| item.clone()).collect()
    }

    /// Takes the item numbered `seq` out, if it is kept.
    fn remove(&mut self, seq: Seq, budget: &Budget) {
        if let Ok(at) = self.items.binary_search_by_key(&seq, |(s, _)| *s)
            && let Some((_, item)) = self.items.remove(at)
        {
            self.bytes -= item.len();
            budget.give(item.len());
        }
    }

    /// Appends the item numbered `seq` (above every item kept), making room
    /// by dropping the oldest. One that can't be kept empties the window
    /// at `seq`: the window stays whole up to the cursor.
    fn push(&mut self, seq: Seq, item: Encoded, keep: Keep<'_>) {
        while !self.items.is_empty() && self.items.len() >= keep.items {
            self.pop_front(keep.budget);
        }
        loop {
            if keep.items > 0 && keep.budget.take(item.len()) {
                self.bytes += item.len();
                self.items.push_back((seq, item));
                return;
            }
            if self.items.is_empty() {
                self.floor = seq;
                return;
            }
            self.pop_front(keep.budget);
        }
    }

    /// Puts a late item (a number that was skipped, after all stored) in
    /// its place, if it is above the floor and fits.
    fn insert_late(&mut self, seq: Seq, item: Encoded, keep: Keep<'_>) {
        if seq <= self.floor || self.items.len() >= keep.items || !keep.budget.take(item.len()) {
            return;
        }
        let at = self.items.partition_point(|(s, _)| *s < seq);
        self.bytes += item.len();
        self.items.insert(at, (seq, item));
    }

    fn pop_front(&mut self, budget: &Budget) {
        if let Some((seq, item)) = self.items.pop_front() {
            self.floor = seq;
            self.bytes -= item.len();
            budget.give(item.len());
        }
    }

    /// Extends the window down to `from`, with `older` (every item of
    /// `(from, floor]`, oldest first), as far as it has room: the oldest
    /// are the ones left out.
    pub fn prepend(&mut self, from: Seq, older: &[(Seq, Encoded)], keep: Keep<'_>) {
        let room = keep.items.saturating_sub(self.items.len());
        let skip = older.len().saturating_sub(room);
        let mut floor = if skip == 0 { from } else { older[skip - 1].0 };
        let mut kept = Vec::new();
        for (seq, item) in older[skip..].iter().rev() {
            if !keep.budget.take(item.len()) {
                floor = *seq;
                break;
            }
            kept.push((*seq, item.clone()));
        }
        self.floor = floor.min(self.floor);
        for (seq, item) in kept {
            self.bytes += item.len();
            self.items.push_front((seq, item));
        }
    }

    /// Gives back the memory and starts again empty at `floor`.
    fn clear(&mut self, floor: Seq, budget: &Budget) {
        budget.give(self.bytes);
        self.bytes = 0;
        self.items.clear();
        self.floor = floor;
    }
}

/// A publication held until the hole before it is filled.
#[derive(Debug)]
struct Held {
    last: Seq,
    items: Vec<(Seq, Encoded)>,
}

/// One stream's order and window.
#[derive(Debug, Default)]
pub struct Order {
    cursor: Option<Seq>,
    window: Window,
    /// By their first number.
    held: BTreeMap<Seq, Held>,
    /// The store's head as a position check last read it, while the
    /// cursor is below it: what lies between is a hole to fill.
    behind: Option<Seq>,
    /// Numbers taken down: never delivered, whatever brings them.
    removed: std::collections::BTreeSet<Seq>,
    /// Numbers passed over without an item (first to last, by first): the
    /// only ones a stored copy is delivered for. Any other number at or
    /// below the cursor was delivered, or was in the store when the stream
    /// started (so catch-ups hand it out).
    skipped: BTreeMap<Seq, Seq>,
}

impl Order {
    /// The newest number delivered or skipped; `None` before the stream is
    /// started on this node.
    pub fn cursor(&self) -> Option<Seq> {
        self.cursor
    }

    pub fn window(&self) -> &Window {
        &self.window
    }

    pub fn window_mut(&mut self) -> &mut Window {
        &mut self.window
    }

    /// Starts the stream at `head`: everything at or below it is in the
    /// store, and what comes next is delivered. Does nothing if started.
    pub fn start(&mut self, head: Seq) {
        if self.cursor.is_none() {
            self.cursor = Some(head);
            self.window.floor = head;
        }
    }

    /// Forgets the stream (nobody here listens any more), giving its
    /// window's memory back.
    pub fn stop(&mut self, budget: &Budget) {
        self.cursor = None;
        self.held.clear();
        self.behind = None;
        self.removed.clear();
        self.skipped.clear();
        self.window.clear(Seq(0), budget);
    }

    /// Takes a publication of `items` accounting for `first..=last` (see
    /// `broker::Publication`); returns what to deliver now, in order. Before
    /// the stream is started nothing is: its start reads the head, which
    /// covers everything published before.
    pub fn accept(
        &mut self,
        (first, last): (Seq, Seq),
        items: Vec<(Seq, Encoded)>,
        keep: Keep<'_>,
    ) -> Vec<(Seq, Encoded)> {
        let Some(cursor) = self.cursor else { return Vec::new() };
        // At or below the cursor only a number passed over is still owed: a
        // fill read the store before its write landed (another node's write
        // that took longer than the hold). It goes out late, once.
        let (mut out, items) = if first <= cursor {
            let (late, items): (Vec<_>, Vec<_>) = items.into_iter().partition(|(seq, _)| *seq <= cursor);
            (self.accept_copies(late, keep), items)
        } else {
            (Vec::new(), items)
        };
        if last <= cursor {
            return out; // accounted for already
        }
        if first.get() > cursor.get() + 1 {
            if self.held.len() >= HELD_MAX {
                tracing::warn!(cursor = cursor.get(), "too many publications held; skipping the hole before them");
                self.skip_to_held(keep, &mut out);
            }
            self.held.insert(first, Held { last, items });
            self.release(keep, &mut out);
            return out;
        }
        self.advance(last, items, keep, &mut out);
        self.release(keep, &mut out);
        out
    }

    /// Takes the item numbered `seq` down: out of the window and of what is
    /// held, and never delivered from now on (a publication or a fill may
    /// still bring it). Its number stays accounted for.
    pub fn remove(&mut self, seq: Seq, budget: &Budget) {
        self.window.remove(seq, budget);
        for held in self.held.values_mut() {
            held.items.retain(|(s, _)| *s != seq);
        }
        self.removed.insert(seq);
        if self.removed.len() > REMOVED_MAX {
            self.removed.pop_first();
        }
    }

    /// Takes copies of stored items (a resend that found its stored copy):
    /// each is delivered unless it already was, or is still to come in its
    /// place.
    pub fn accept_copies(&mut self, items: Vec<(Seq, Encoded)>, keep: Keep<'_>) -> Vec<(Seq, Encoded)> {
        let mut out = Vec::new();
        for (seq, item) in items {
            // Above the cursor it comes in its place; at or below, only a
            // number passed over is still owed.
            if self.removed.contains(&seq) || !self.unskip(seq) {
                continue;
            }
            self.window.insert_late(seq, item.clone(), keep);
            out.push((seq, item));
        }
        out
    }

    /// Takes the store's head as a position check read it: numbers up to
    /// it that have not come are a hole, filled like any other (the check
    /// catches a stream's last message that never arrived). True if the
    /// stream is behind.
    pub fn behind(&mut self, head: Seq) -> bool {
        match self.cursor {
            Some(cursor) if head > cursor => {
                self.behind = Some(self.behind.map_or(head, |behind| behind.max(head)));
                true
            }
            _ => false,
        }
    }

    /// The hole a held publication, or the store's head, waits on:
    /// `(cursor, first held or head + 1)`, exclusive at both ends.
    pub fn hole(&self) -> Option<(Seq, Seq)> {
        let cursor = self.cursor?;
        let held = self.held.first_key_value().map(|(first, _)| *first);
        let behind = self.behind.filter(|head| *head > cursor).map(|head| Seq(head.get() + 1));
        let first = match (held, behind) {
            (Some(held), Some(behind)) => held.min(behind),
            (held, behind) => held.or(behind)?,
        };
        (first.get() > cursor.get() + 1).then_some((cursor, first))
    }

    /// Fills the hole below `upto` with what the store holds there
    /// (`found`, oldest first): those are delivered, the rest of the
    /// numbers were skipped; then what was held behind it.
    pub fn fill(&mut self, upto: Seq, found: Vec<(Seq, Encoded)>, keep: Keep<'_>) -> Vec<(Seq, Encoded)> {
        let mut out = Vec::new();
        let Some(cursor) = self.cursor else { return out };
        let last = Seq(upto.get().saturating_sub(1));
        if last > cursor {
            self.advance(last, found, keep, &mut out);
        }
        self.release(keep, &mut out);
        out
    }

    fn advance(&mut self, last: Seq, items: Vec<(Seq, Encoded)>, keep: Keep<'_>, out: &mut Vec<(Seq, Encoded)>) {
        let cursor = self.cursor.unwrap_or_default();
        let wanted = |seq: &Seq| *seq > cursor && *seq <= last && !self.removed.contains(seq);
        let mut items: Vec<_> = items.into_iter().filter(|(seq, _)| wanted(seq)).collect();
        items.sort_by_key(|(seq, _)| *seq);
        items.dedup_by_key(|(seq, _)| *seq);
        let mut next = cursor.get() + 1;
        for (seq, item) in items {
            self.skip(Seq(next), Seq(seq.get() - 1));
            next = seq.get() + 1;
            self.window.push(seq, item.clone(), keep);
            out.push((seq, item));
        }
        self.skip(Seq(next), last);
        self.cursor = Some(last.max(cursor));
        if self.behind.is_some_and(|head| head <= last.max(cursor)) {
            self.behind = None;
        }
    }

    /// Delivers the held publications the cursor has reached.
    fn release(&mut self, keep: Keep<'_>, out: &mut Vec<(Seq, Encoded)>) {
        while let Some(entry) = self.held.first_entry() {
            let cursor = self.cursor.unwrap_or_default();
            if entry.key().get() > cursor.get() + 1 {
                return;
            }
            let held = entry.remove();
            if held.last > cursor {
                self.advance(held.last, held.items, keep, out);
            }
        }
    }

    fn skip_to_held(&mut self, keep: Keep<'_>, out: &mut Vec<(Seq, Encoded)>) {
        if let Some((first, _)) = self.held.first_key_value() {
            let upto = *first;
            let cursor = self.cursor.unwrap_or_default();
            self.skip(Seq(cursor.get() + 1), Seq(upto.get() - 1));
            self.cursor = Some(Seq(upto.get() - 1));
            self.release(keep, out);
        }
    }

    /// Notes `first..=last` (if not empty) as passed over.
    fn skip(&mut self, first: Seq, last: Seq) {
        if first > last {
            return;
        }
        let joined = self.skipped.last_key_value().filter(|(_, end)| end.get() + 1 == first.get()).map(|(at, _)| *at);
        match joined {
            Some(at) => {
                self.skipped.insert(at, last);
            }
            None => {
                self.skipped.insert(first, last);
            }
        }
        while self.skipped.len() > SKIPPED_MAX {
            self.skipped.pop_first();
        }
    }

    /// Whether `seq` was passed over (and from now on it is not).
    fn unskip(&mut self, seq: Seq) -> bool {
        let Some((&first, &last)) = self.skipped.range(..=seq).next_back() else { return false };
        if last < seq {
            return false;
        }
        self.skipped.remove(&first);
        if first < seq {
            self.skipped.insert(first, Seq(seq.get() - 1));
        }
        if seq < last {
            self.skipped.insert(Seq(seq.get() + 1), last);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: u64) -> (Seq, Encoded) {
        (Seq(seq), Encoded::of(&seq).unwrap())
    }

    fn items(seqs: &[u64]) -> Vec<(Seq, Encoded)> {
        seqs.iter().map(|s| item(*s)).collect()
    }

    fn seqs(out: &[(Seq, Encoded)]) -> Vec<u64> {
        let number = |(seq, item): &(Seq, Encoded)| {
            assert_eq!(item.raw().get(), seq.get().to_string(), "an item goes out with its own number");
            seq.get()
        };
        out.iter().map(number).collect()
    }

    fn window(order: &Order, from: u64) -> Vec<u64> {
        order.window().after(Seq(from)).iter().map(|e| e.raw().get().parse().unwrap()).collect()
    }

    fn started(head: u64) -> Order {
        let mut order = Order::default();
        order.start(Seq(head));
        order
    }

    static BIG: Budget = Budget { used: AtomicUsize::new(0), max: usize::MAX };

    fn keep(items: usize) -> Keep<'static> {
        Keep { items, budget: &BIG }
    }

    #[test]
    fn the_next_publication_goes_out_at_once_and_a_later_one_waits_for_the_hole() {
        let mut order = started(10);
        assert_eq!(seqs(&order.accept((Seq(11), Seq(12)), items(&[11, 12]), keep(100))), [11, 12]);
        assert!(order.accept((Seq(15), Seq(15)), items(&[15]), keep(100)).is_empty(), "13 and 14 missing");
        assert_eq!(order.hole(), Some((Seq(12), Seq(15))));
        assert_eq!(seqs(&order.accept((Seq(13), Seq(14)), items(&[14]), keep(100))), [14, 15], "13 held nothing");
        assert_eq!(order.cursor(), Some(Seq(15)));
        assert_eq!(order.hole(), None);
    }

    #[test]
    fn a_hole_the_store_fills_delivers_what_it_holds_and_skips_the_rest() {
        let mut order = started(0);
        assert!(order.accept((Seq(4), Seq(5)), items(&[4, 5]), keep(100)).is_empty());
        assert_eq!(seqs(&order.fill(Seq(4), items(&[2]), keep(100))), [2, 4, 5]);
        assert_eq!(order.cursor(), Some(Seq(5)));
    }

    #[test]
    fn a_head_above_the_cursor_is_a_hole_to_fill_and_one_at_or_below_is_not() {
        let mut order = started(3);
        assert!(!order.behind(Seq(3)) && order.hole().is_none(), "caught up");
        assert!(order.behind(Seq(6)), "the store holds 4 to 6, which never came");
        assert_eq!(order.hole(), Some((Seq(3), Seq(7))));
        // A publication behind it waits; the hole ends at the earlier one.
        assert!(order.accept((Seq(9), Seq(9)), items(&[9]), keep(100)).is_empty());
        assert_eq!(order.hole(), Some((Seq(3), Seq(7))));
        assert_eq!(seqs(&order.fill(Seq(7), items(&[4, 6]), keep(100))), [4, 6]);
        assert_eq!(order.hole(), Some((Seq(6), Seq(9))), "then the one before 9");
        assert_eq!(seqs(&order.fill(Seq(9), items(&[]), keep(100))), [9]);
        assert_eq!(order.hole(), None);
        // What arrives in order clears an older reading of the head.
        assert!(order.behind(Seq(10)));
        assert_eq!(seqs(&order.accept((Seq(10), Seq(10)), items(&[10]), keep(100))), [10]);
        assert_eq!(order.hole(), None);
    }

    #[test]
    fn what_was_accounted_for_is_never_delivered_twice() {
        let mut order = started(0);
        assert_eq!(seqs(&order.accept((Seq(1), Seq(2)), items(&[1, 2]), keep(100))), [1, 2]);
        assert!(order.accept((Seq(2), Seq(2)), items(&[2]), keep(100)).is_empty());
        assert!(order.accept_copies(items(&[1]), keep(100)).is_empty(), "1 was delivered");
        assert!(order.accept_copies(items(&[3]), keep(100)).is_empty(), "3 comes in its place");
    }

    #[test]
    fn a_copy_of_a_skipped_number_is_delivered_late_and_kept() {
        let mut order = started(0);
        // 1 timed out and was skipped, then landed after all.
        assert_eq!(seqs(&order.accept((Seq(1), Seq(2)), items(&[2]), keep(100))), [2]);
        assert_eq!(seqs(&order.accept_copies(items(&[1]), keep(100))), [1]);
        assert_eq!(window(&order, 0), [1, 2]);
        assert!(order.accept_copies(items(&[1]), keep(100)).is_empty());
    }

    #[test]
    fn a_publication_of_a_number_a_fill_passed_over_is_delivered_late_once() {
        let mut order = started(0);
        // Another node took 1 and 2, and 3 arrived first; the fill read the
        // store before 1 and 2 were written, and passed over them.
        assert!(order.accept((Seq(3), Seq(3)), items(&[3]), keep(100)).is_empty());
        assert_eq!(seqs(&order.fill(Seq(3), Vec::new(), keep(100))), [3]);
        // Their publication lands after all, with 4 in it: all go out.
        assert_eq!(seqs(&order.accept((Seq(1), Seq(4)), items(&[1, 2, 4]), keep(100))), [1, 2, 4]);
        assert_eq!(window(&order, 0), [1, 2, 3, 4]);
        assert!(order.accept((Seq(1), Seq(2)), items(&[1, 2]), keep(100)).is_empty(), "once");
        assert_eq!(order.cursor(), Some(Seq(4)));
    }

    #[test]
    fn a_copy_of_an_item_gone_from_the_window_is_not_delivered_again() {
        // Pushed out by newer items: 1 went out, and is below the floor now.
        let mut order = started(0);
        assert_eq!(seqs(&order.accept((Seq(1), Seq(5)), items(&[1, 2, 3, 4, 5]), keep(2))), [1, 2, 3, 4, 5]);
        assert_eq!(window(&order, 0), [4, 5]);
        assert!(order.accept_copies(items(&[1, 4]), keep(2)).is_empty());

        // Too big for the budget: delivered, but the window empties at it.
        let budget = Budget::new(4);
        let tight = Keep { items: 100, budget: &budget };
        let mut order = started(0);
        let big = (Seq(1), Encoded::of(&"far too big for the budget").unwrap());
        assert_eq!(order.accept((Seq(1), Seq(1)), vec![big.clone()], tight).len(), 1);
        assert!(order.window().is_empty());
        assert!(order.accept_copies(vec![big], tight).is_empty(), "1 went out already");
    }

    #[test]
    fn a_copy_of_what_was_stored_before_the_start_is_left_to_catch_ups() {
        let mut order = Order::default();
        assert!(order.accept_copies(items(&[3]), keep(100)).is_empty(), "not started: its start reads the head");
        order.start(Seq(10));
        assert!(order.accept_copies(items(&[3, 10]), keep(100)).is_empty());
    }

    #[test]
    fn a_number_passed_over_long_ago_is_still_delivered_once() {
        let mut order = started(0);
        // 1 and 3 skipped, then 7 and 8 skipped over by a fill.
        assert_eq!(seqs(&order.accept((Seq(1), Seq(5)), items(&[2, 4, 5]), keep(2))), [2, 4, 5]);
        assert!(order.accept((Seq(9), Seq(9)), items(&[9]), keep(2)).is_empty());
        assert_eq!(seqs(&order.fill(Seq(9), items(&[6]), keep(2))), [6, 9]);
        assert_eq!(window(&order, 0), [6, 9]);
        assert_eq!(seqs(&order.accept_copies(items(&[1, 2, 3, 7]), keep(2))), [1, 3, 7]);
        assert!(order.accept_copies(items(&[1, 3, 7]), keep(2)).is_empty(), "once each");
        assert_eq!(seqs(&order.accept_copies(items(&[8]), keep(2))), [8]);
    }

    #[test]
    fn the_oldest_passed_over_numbers_are_forgotten_first() {
        let mut order = started(0);
        // Every odd number passed over: one run each.
        for even in (2..=2 * (SKIPPED_MAX as u64 + 1)).step_by(2) {
            order.accept((Seq(even - 1), Seq(even)), items(&[even]), keep(10));
        }
        assert!(order.accept_copies(items(&[1]), keep(10)).is_empty(), "forgotten");
        assert_eq!(seqs(&order.accept_copies(items(&[3]), keep(10))), [3]);
    }

    #[test]
    fn a_removed_item_leaves_the_window_and_is_never_delivered() {
        let budget = Budget::new(1 << 20);
        let keep = Keep { items: 100, budget: &budget };
        let mut order = started(0);
        assert_eq!(seqs(&order.accept((Seq(1), Seq(2)), items(&[1, 2]), keep)), [1, 2]);
        let held_bytes = budget.used();
        order.remove(Seq(2), &budget);
        assert_eq!(window(&order, 0), [1]);
        assert!(budget.used() < held_bytes, "its memory is given back");
        // Held behind a hole, then removed: the fill delivers the rest.
        assert!(order.accept((Seq(4), Seq(5)), items(&[4, 5]), keep).is_empty());
        order.remove(Seq(4), &budget);
        assert_eq!(seqs(&order.fill(Seq(4), items(&[3]), keep)), [3, 5]);
        // Arriving after its removal (a copy, or a fill): not delivered.
        order.remove(Seq(6), &budget);
        assert!(order.accept((Seq(6), Seq(6)), items(&[6]), keep).is_empty());
        assert!(order.accept_copies(items(&[6]), keep).is_empty());
        assert_eq!(window(&order, 0), [1, 3, 5]);
        assert_eq!(order.cursor(), Some(Seq(6)), "its number stays accounted for");
    }

    #[test]
    fn an_unstarted_stream_delivers_nothing_until_its_start() {
        let mut order = Order::default();
        assert!(order.accept((Seq(7), Seq(8)), items(&[7, 8]), keep(100)).is_empty());
        order.start(Seq(8));
        assert_eq!(seqs(&order.accept((Seq(9), Seq(9)), items(&[9]), keep(100))), [9]);
        assert_eq!(order.window().floor(), Seq(8));
    }

    #[test]
    fn the_window_keeps_the_newest_items_whole_up_to_the_cursor() {
        let mut order = started(0);
        order.accept((Seq(1), Seq(5)), items(&[1, 2, 3, 4, 5]), keep(3));
        assert_eq!(order.window().floor(), Seq(2));
        assert_eq!(window(&order, 2), [3, 4, 5]);
        assert_eq!(window(&order, 4), [5]);
    }

    #[test]
    fn a_window_over_the_budget_drops_its_oldest_and_gives_memory_back() {
        let budget = Budget::new(2 * "10".len());
        let keep = Keep { items: 100, budget: &budget };
        let mut order = started(9);
        order.accept((Seq(10), Seq(12)), items(&[10, 11, 12]), keep);
        assert_eq!(window(&order, 0), [11, 12]);
        assert_eq!(budget.used(), 4);
        order.stop(&budget);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_backfill_extends_the_window_as_far_as_it_has_room() {
        let mut order = started(10);
        order.accept((Seq(11), Seq(11)), items(&[11]), keep(3));
        let floor = order.window().floor();
        order.window_mut().prepend(Seq(5), &items(&[7, 8, 10]), keep(3));
        assert_eq!(floor, Seq(10));
        assert_eq!(order.window().floor(), Seq(7), "7 left out, so the window starts above it");
        assert_eq!(window(&order, 7), [8, 10, 11]);
    }

    #[test]
    fn too_many_held_publications_skip_the_hole() {
        let mut order = started(0);
        for n in 0..HELD_MAX as u64 {
            assert!(order.accept((Seq(10 + n), Seq(10 + n)), items(&[10 + n]), keep(0)).is_empty());
        }
        let out = order.accept((Seq(5000), Seq(5000)), items(&[5000]), keep(0));
        assert_eq!(out.len(), HELD_MAX);
        assert_eq!(order.cursor(), Some(Seq(10 + HELD_MAX as u64 - 1)));
    }
}
