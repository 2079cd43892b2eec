//! Who may enter a room: the one rule the room page, `/add_message`, the
//! socket's `join` and `send` all apply ([`RoomAccess::check`]).
//!
//! A room is public (anyone) or private. It is private when its settings
//! say so (made through the API, stored in `room_settings`), or, when they
//! say nothing, when it matches `HERALD_PRIVATE_ROOMS`. A private room lets
//! in a signed-in user who is listed in its settings, whose token's `rooms`
//! claim matches it, or — when `HERALD_ROOM_AUTH_URL` is set — whom the
//! backend allows ([`backend`]). Nobody else: not a visitor without a
//! token, not a user the backend denies, not while the backend does not
//! answer.
//!
//! Every node keeps every room's settings in memory, so a check never waits
//! for the store: a node's own changes apply at once, and in a cluster each
//! node reads what the others changed from MongoDB each [`FOLLOW_EVERY`]
//! ([`RoomAccess::follow`]). A change that can shut users out
//! is told on [`RoomAccess::changes`], for the sockets already in the room
//! to be checked again.

pub mod backend;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use herald::protocol::ErrorReply;
use herald::room::RoomPatterns;
use herald::{Identity, RoomName, UserId};
use tokio::sync::broadcast;

use crate::config::RoomRules;
use crate::ops::metrics::{Metrics, RoomCheck};
use crate::store::StoreError;
use crate::store::rooms::{CHANGES_MAX, RoomSettings, RoomSettingsStore};
use crate::sync::lock;

use self::backend::{Answer, Backend};

/// How often a node reads the settings other nodes changed.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// How far back each read of changes reaches before the newest it has seen,
/// so that a write stamped by a node whose clock is behind is still found.
const CLOCK_SLACK_MS: i64 = 60_000;

/// Why a room stays shut. The text is safe to show the client (it says
/// nothing of the room's members).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this room is private: sign in with a token that grants it")]
    SignInRequired,
    #[error("you may not enter this room: {0}")]
    NotAllowed(String),
    #[error("the room's access check did not answer; try again")]
    Unavailable,
}

impl From<Refusal> for ErrorReply {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unavailable => ErrorReply::access_unavailable(),
            refused => ErrorReply::forbidden(refused.to_string()),
        }
    }
}

/// A check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Public,
    /// Private, and this user may enter.
    Member,
    Refused(Refusal),
}

impl Verdict {
    pub fn allowed(&self) -> Result<(), Refusal> {
        match self {
            Verdict::Public | Verdict::Member => Ok(()),
            Verdict::Refused(refusal) => Err(refusal.clone()),
        }
    }
}

/// A room's settings and what they come to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub settings: RoomSettings,
    /// Private, by its settings or the configured patterns.
    pub private: bool,
}

/// The room access rules. Cheap to clone.
#[derive(Clone)]
pub struct RoomAccess(Arc<Inner>);

struct Inner {
    private_rooms: RoomPatterns,
    settings: Mutex<HashMap<RoomName, RoomSettings>>,
    /// The newest `updated` among the settings read (milliseconds).
    newest_ms: AtomicI64,
    store: RoomSettingsStore,
    backend: Option<Backend>,
    changes: broadcast::Sender<RoomName>,
    metrics: Arc<Metrics>,
}

impl RoomAccess {
    /// The rules of `rules`, with every room's stored settings read now.
    pub async fn load(store: RoomSettingsStore, rules: &RoomRules, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        let access = Self(Arc::new(Inner {
            private_rooms: rules.private_rooms.clone(),
            settings: Mutex::new(HashMap::new()),
            newest_ms: AtomicI64::new(0),
            store,
            backend: rules.auth.clone().map(Backend::new),
            changes: broadcast::channel(256).0,
            metrics,
        }));
        // Every stored setting, a page of changes at a time.
        loop {
            let before = access.0.newest_ms.load(Ordering::Relaxed);
            let read = access.0.store.changed_since(before).await?;
            let full = read.len() >= CHANGES_MAX;
            access.apply(read);
            if !full || access.0.newest_ms.load(Ordering::Relaxed) == before {
                break;
            }
        }
        Ok(access)
    }

    /// Reads the other nodes' changes every [`FOLLOW_EVERY`], for as long
    /// as the rules are in use.
    pub fn follow(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(FOLLOW_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let access = RoomAccess(inner);
                let since = access.0.newest_ms.load(Ordering::Relaxed).saturating_sub(CLOCK_SLACK_MS);
                match access.0.store.changed_since(since).await {
                    Ok(read) => access.apply(read),
                    // The last settings read stay in force meanwhile.
                    Err(err) => tracing::warn!(%err, "reading rooms' settings failed"),
                }
            }
        });
    }

    /// Takes settings read from the store (or just written): newer ones
    /// replace what is known, and a room whose settings changed is told.
    fn apply(&self, read: Vec<(RoomName, RoomSettings)>) {
        let mut changed = Vec::new();
        {
            let mut settings = lock(&self.0.settings);
            for (room, new) in read {
                self.0.newest_ms.fetch_max(new.updated_ms, Ordering::Relaxed);
                match settings.get(&room) {
                    Some(known) if known.updated_ms > new.updated_ms || *known == new => {}
                    _ => {
                        settings.insert(room.clone(), new);
                        changed.push(room);
                    }
                }
            }
        }
        for room in changed {
            // Nobody listening is fine: then no socket needs checking.
            let _ = self.0.changes.send(room);
        }
    }

    /// Rooms whose settings changed: sockets in them are to be checked
    /// again. A receiver that falls behind misses some (it is told how
    /// many) and should check every room it has.
    pub fn changes(&self) -> broadcast::Receiver<RoomName> {
        self.0.changes.subscribe()
    }

    /// `room`'s settings and whether it is private.
    pub fn effective(&self, room: &RoomName) -> Effective {
        let settings = lock(&self.0.settings).get(room).cloned().unwrap_or_default();
        let private = settings.private.unwrap_or_else(|| self.0.private_rooms.matches(room));
        Effective { settings, private }
    }

    /// Writes `room`'s settings (in force on this node at once, on the
    /// others within [`FOLLOW_EVERY`]).
    pub async fn set(
        &self,
        room: &RoomName,
        private: Option<bool>,
        users: BTreeSet<UserId>,
    ) -> Result<Effective, StoreError> {
        let stored = self.0.store.put(room, private, users).await?;
        self.apply(vec![(room.clone(), stored)]);
        Ok(self.effective(room))
    }

    /// Whether `who` may enter `room` by what this node knows without
    /// asking (its settings, the patterns, the token's grants, a verdict of
    /// the backend it remembers): `Some(private)` if so, `None` if not or if
    /// only a new question to the backend could say. For listing rooms,
    /// which must not wait for the backend about each one.
    pub fn known_open(&self, room: &RoomName, who: Option<&Identity>) -> Option<bool> {
        let (private, listed) = self.private_and_listed(room, who);
        if !private {
            return Some(false);
        }
        let who = who?;
        let granted = listed
            || who.rooms.matches(room)
            || self.0.backend.as_ref().and_then(|b| b.remembered(who, room)) == Some(Answer::Allow);
        granted.then_some(true)
    }

    /// Whether `room` is private, and whether its settings list `who`: one
    /// look under the lock, nothing copied (a room may list a thousand
    /// users, and every send asks).
    fn private_and_listed(&self, room: &RoomName, who: Option<&Identity>) -> (bool, bool) {
        let settings = lock(&self.0.settings);
        let known = settings.get(room);
        let private = known.and_then(|s| s.private).unwrap_or_else(|| self.0.private_rooms.matches(room));
        let listed = who.is_some_and(|who| known.is_some_and(|s| s.users.contains(&who.user)));
        (private, listed)
    }

    /// Whether `who` (`None`: a visitor without a token) may enter `room`:
    /// read its messages, join it, post to it.
    pub async fn check(&self, room: &RoomName, who: Option<&Identity>) -> Verdict {
        let (private, listed) = self.private_and_listed(room, who);
        if !private {
            return Verdict::Public;
        }
        let verdict = self.check_private(room, listed, who).await;
        let outcome = match &verdict {
            (Verdict::Refused(Refusal::Unavailable), _) => RoomCheck::BackendUnavailable,
            (Verdict::Refused(_), _) => RoomCheck::Refused,
            (_, true) => RoomCheck::GrantedByBackend,
            (_, false) => RoomCheck::Granted,
        };
        self.0.metrics.room_check(outcome);
        verdict.0
    }

    /// A private room's verdict, and whether the backend gave it.
    async fn check_private(&self, room: &RoomName, listed: bool, who: Option<&Identity>) -> (Verdict, bool) {
        let Some(who) = who else { return (Verdict::Refused(Refusal::SignInRequired), false) };
        if listed || who.rooms.matches(room) {
            return (Verdict::Member, false);
        }
        let Some(backend) = &self.0.backend else {
            return (Verdict::Refused(Refusal::NotAllowed("your token does not grant it".to_owned())), false);
        };
        match backend.ask(who, room).await {
            Ok((Answer::Allow, _)) => (Verdict::Member, true),
            Ok((Answer::Deny(reason), _)) => (Verdict::Refused(Refusal::NotAllowed(reason)), false),
            Err(_) => (Verdict::Refused(Refusal::Unavailable), false),
        }
    }
}
