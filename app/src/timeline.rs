//! The client's model of one room: stored messages keyed by sequence number,
//! plus the messages this client is still sending.
//!
//! Messages arrive from three places — the server-rendered page, join
//! catch-ups and live broadcasts — possibly more than once and out of order.
//! Keying by sequence number makes every message appear exactly once, in
//! sequence order, whatever the arrival order.

use std::collections::{BTreeMap, BTreeSet};

use herald::{RoomName, Seq, StoredMessage};

/// The most stored messages kept in the page; older ones are dropped from
/// view (they stay in history), so a tab left open for days stays small.
pub const TIMELINE_MAX: usize = 500;

/// A message sent by this client and not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub client_id: String,
    pub name: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    room: RoomName,
    stored: BTreeMap<Seq, StoredMessage>,
    pending: Vec<Pending>,
    /// Numbers the server removed: a copy arriving late stays out.
    removed: BTreeSet<Seq>,
}

impl Timeline {
    pub fn new(room: RoomName, messages: impl IntoIterator<Item = StoredMessage>) -> Self {
        let mut timeline = Self { room, stored: BTreeMap::new(), pending: Vec::new(), removed: BTreeSet::new() };
        for message in messages {
            timeline.insert(message);
        }
        timeline
    }

    pub fn room(&self) -> &RoomName {
        &self.room
    }

    /// Adds a stored message; returns false when it was already there or
    /// belongs to another room. A pending message with the same client id
    /// is resolved by it.
    pub fn insert(&mut self, message: StoredMessage) -> bool {
        if message.room != self.room {
            return false;
        }
        self.pending.retain(|p| p.client_id != message.client_id.as_str());
        if self.stored.contains_key(&message.seq) || self.removed.contains(&message.seq) {
            return false;
        }
        self.stored.insert(message.seq, message);
        while self.stored.len() > TIMELINE_MAX {
            self.stored.pop_first();
        }
        true
    }

    /// Takes a message the server removed off the page, for good.
    pub fn remove(&mut self, seq: Seq) {
        self.stored.remove(&seq);
        self.removed.insert(seq);
        while self.removed.len() > TIMELINE_MAX {
            self.removed.pop_first();
        }
    }

    /// The newest sequence number seen: a (re)join asks for what follows it.
    pub fn last_seq(&self) -> Option<Seq> {
        self.stored.last_key_value().map(|(seq, _)| *seq)
    }

    pub fn stored(&self) -> impl DoubleEndedIterator<Item = &StoredMessage> {
        self.stored.values()
    }

    pub fn pending(&self) -> &[Pending] {
        &self.pending
    }

    pub fn add_pending(&mut self, pending: Pending) {
        self.pending.push(pending);
    }

    /// Drops a pending message the server refused, returning it.
    pub fn reject_pending(&mut self, client_id: &str) -> Option<Pending> {
        let index = self.pending.iter().position(|p| p.client_id == client_id)?;
        Some(self.pending.remove(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald::{ClientMsgId, DisplayName, MessageBody};

    fn msg(room: &str, seq: u64, cid: &str) -> StoredMessage {
        StoredMessage {
            room: RoomName::parse(room).unwrap(),
            seq: Seq(seq),
            client_id: ClientMsgId::parse(cid).unwrap(),
            name: DisplayName::parse("Ada").unwrap(),
            body: MessageBody::parse(&format!("message {seq}")).unwrap(),
            at_ms: 0,
            system: false,
            verified: false,
        }
    }

    fn seqs(t: &Timeline) -> Vec<u64> {
        t.stored().map(|m| m.seq.get()).collect()
    }

    #[test]
    fn duplicates_and_reordering_converge() {
        let mut t = Timeline::new(RoomName::lobby(), [msg("lobby", 2, "bbbbbbbb")]);
        assert!(t.insert(msg("lobby", 4, "dddddddd")));
        assert!(t.insert(msg("lobby", 3, "cccccccc")));
        assert!(!t.insert(msg("lobby", 3, "cccccccc")));
        assert!(!t.insert(msg("other", 5, "eeeeeeee")));
        assert_eq!(seqs(&t), [2, 3, 4]);
        assert_eq!(t.last_seq(), Some(Seq(4)));
    }

    #[test]
    fn a_stored_message_resolves_its_pending_copy() {
        let mut t = Timeline::new(RoomName::lobby(), []);
        t.add_pending(Pending { client_id: "cccccccc".into(), name: "Ada".into(), body: "hi".into() });
        t.add_pending(Pending { client_id: "zzzzzzzz".into(), name: "Ada".into(), body: "yo".into() });
        t.insert(msg("lobby", 1, "cccccccc"));
        assert_eq!(t.pending().len(), 1);
        assert_eq!(t.reject_pending("zzzzzzzz").unwrap().body, "yo");
        assert!(t.pending().is_empty());
        assert_eq!(t.reject_pending("zzzzzzzz"), None);
    }

    #[test]
    fn a_removed_message_goes_and_stays_gone() {
        let mut t = Timeline::new(RoomName::lobby(), [msg("lobby", 1, "aaaaaaaa"), msg("lobby", 2, "bbbbbbbb")]);
        t.remove(Seq(1));
        assert_eq!(seqs(&t), [2]);
        assert!(!t.insert(msg("lobby", 1, "aaaaaaaa")), "a late copy stays out");
        t.remove(Seq(3));
        assert!(!t.insert(msg("lobby", 3, "cccccccc")), "removed before it arrived");
        assert_eq!(seqs(&t), [2]);
    }

    #[test]
    fn keeps_a_bounded_window() {
        let mut t = Timeline::new(RoomName::lobby(), []);
        for seq in 1..=(TIMELINE_MAX as u64 + 10) {
            t.insert(msg("lobby", seq, &format!("id{seq:08}")));
        }
        assert_eq!(t.stored().count(), TIMELINE_MAX);
        assert_eq!(t.stored().next().unwrap().seq, Seq(11));
    }
}
