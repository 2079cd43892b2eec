//! How many connections listen to a channel across a cluster: the `online`
//! of a publish's answer.
//!
//! Each node keeps its own count of every channel's listeners in Redis, as
//! its entry under `{channel's bus name}:online` (see [`Entries`]): written
//! shortly after it changes (changes within [`COALESCE`] are one write),
//! again every third of `HERALD_PRESENCE_TTL`, and removed at zero. A
//! node's count is read fresh from memory, the others' from Redis, so the
//! sum is approximate: a count written by another node may be up to
//! [`COALESCE`] old, and a node that died counts until its entry expires.
//! While Redis does not answer, the count is this node's own.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;

use super::channel::Channel;
use super::presence::PresenceError;
use super::redis_presence::{Entries, REFRESH_CONCURRENCY};
use crate::config::Cluster;
use crate::sync::lock;

/// How long a node waits after a count changed before writing it, so that
/// a burst of connections costs one write per channel.
pub const COALESCE: Duration = Duration::from_millis(100);

/// This node's listener counts in Redis, and the cluster's sums.
pub struct Census {
    entries: Entries,
    prefix: String,
    /// Channels whose count changed since it was last written.
    dirty: Mutex<HashSet<Channel>>,
    /// Channels whose count this node may have in Redis.
    written: Mutex<HashSet<Channel>>,
    wake: Notify,
}

impl Census {
    pub fn new(cluster: &Cluster) -> Result<Arc<Self>, PresenceError> {
        Ok(Arc::new(Self {
            entries: Entries::new(cluster)?,
            prefix: cluster.prefix.clone(),
            dirty: Mutex::default(),
            written: Mutex::default(),
            wake: Notify::new(),
        }))
    }

    /// This node's count of `channel` changed.
    pub fn changed(&self, channel: &Channel) {
        if lock(&self.dirty).insert(channel.clone()) {
            self.wake.notify_one();
        }
    }

    /// The connections listening to `channel` on every node, given this
    /// node's `here` (which is written on the way).
    pub async fn count(&self, channel: &Channel, here: usize) -> usize {
        match self.write(channel, here).await {
            Ok(others) => here + others,
            Err(err) => {
                tracing::debug!(%err, %channel, "counting this node's connections only");
                here
            }
        }
    }

    /// Writes this node's count; the sum of the others'.
    async fn write(&self, channel: &Channel, count: usize) -> Result<usize, PresenceError> {
        let entry = if count == 0 { String::new() } else { count.to_string() };
        let base = format!("{}:online", channel.bus_name(&self.prefix));
        let synced = self.entries.sync(&base, &entry).await?;
        {
            let mut written = lock(&self.written);
            if count == 0 {
                written.remove(channel);
            } else {
                written.insert(channel.clone());
            }
        }
        Ok(synced.others.iter().filter_map(|(_, count)| count.parse::<usize>().ok()).sum())
    }

    /// Keeps this node's counts in Redis until `count` answers `None` (the
    /// node is gone): changed ones after [`COALESCE`], every one every
    /// third of the TTL. A count that could not be written is tried again
    /// with the next round.
    pub fn run(self: &Arc<Self>, count: impl Fn(&Channel) -> Option<usize> + Send + Sync + 'static) {
        let this = Arc::downgrade(self);
        let every = self.entries.ttl() / 3;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let Some(mut census) = this.upgrade() else { return };
                let everything = tokio::select! {
                    _ = ticks.tick() => true,
                    () = census.wake.notified() => false,
                };
                if !everything {
                    drop(census);
                    tokio::time::sleep(COALESCE).await;
                    let Some(again) = this.upgrade() else { return };
                    census = again;
                }
                let mut channels: HashSet<Channel> = std::mem::take(&mut *lock(&census.dirty));
                if everything {
                    channels.extend(lock(&census.written).iter().cloned());
                }
                let mut counts = Vec::with_capacity(channels.len());
                for channel in channels {
                    let Some(here) = count(&channel) else { return };
                    counts.push((channel, here));
                }
                let failed: Vec<Channel> = futures::stream::iter(counts)
                    .map(|(channel, here)| {
                        let census = &census;
                        async move { census.write(&channel, here).await.err().map(|_| channel) }
                    })
                    .buffer_unordered(REFRESH_CONCURRENCY)
                    .filter_map(std::future::ready)
                    .collect()
                    .await;
                lock(&census.dirty).extend(failed);
            }
        });
    }
}
