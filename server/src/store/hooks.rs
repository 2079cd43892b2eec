//! The webhook queue: deliveries waiting in MongoDB, so that a restart
//! (or a crash) loses none, and any node may send any of them.
//!
//! One collection, `webhook_queue`, a document per event and receiver:
//! `{_id: "<event id>/<receiver>", receiver, body, attempts, next_at,
//! lease_until, created}`. A node takes a due delivery by leasing it
//! (`lease_until`, one atomic update), so two nodes never send one at
//! once; a node that dies holding a lease lets it lapse, and another sends
//! it. Sent: deleted. Failed: leased no more, due again after a backoff.

use mongodb::bson::{DateTime, doc};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use crate::store::{Bounds, StoreError, insert_failures};

/// One delivery of one event to one receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    #[serde(rename = "_id")]
    pub id: String,
    /// The event's id, the same for every receiver (what they deduplicate on).
    pub event_id: String,
    pub event: String,
    pub receiver: i32,
    /// The JSON body, as sent.
    pub body: String,
    pub attempts: i32,
    pub next_at: DateTime,
    pub lease_until: DateTime,
    pub created: DateTime,
}

/// Handle to the queue. Cheap to clone.
#[derive(Clone)]
pub struct HookQueue {
    deliveries: Collection<Delivery>,
    bounds: Bounds,
}

impl HookQueue {
    pub fn new(db: &Database, bounds: Bounds) -> Self {
        Self { deliveries: db.collection("webhook_queue"), bounds }
    }

    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let index = IndexModel::builder()
            .keys(doc! {"receiver": 1, "next_at": 1})
            .options(IndexOptions::builder().name("receiver_due".to_owned()).build())
            .build();
        self.bounds.run(async { Ok(self.deliveries.create_index(index).await.map(drop)?) }).await
    }

    /// Queues `deliveries` (one insert); one already queued (same id) is
    /// left as it is.
    pub async fn push(&self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        self.bounds
            .run(async {
                let result = self.deliveries.insert_many(deliveries).ordered(false).await.map(drop);
                let failures = insert_failures(result)?;
                match failures.values().find(|e| e.code != crate::store::DUPLICATE_KEY) {
                    Some(other) => Err(StoreError::Refused(other.message.clone())),
                    None => Ok(()),
                }
            })
            .await
    }

    /// Leases the delivery due first to one of `receivers`, until
    /// `lease_until`; `None` when nothing is due.
    pub async fn take(&self, receivers: &[i32], lease_until: DateTime) -> Result<Option<Delivery>, StoreError> {
        if receivers.is_empty() {
            return Ok(None);
        }
        let now = DateTime::now();
        self.bounds
            .run(async {
                Ok(self
                    .deliveries
                    .find_one_and_update(
                        doc! {"receiver": {"$in": receivers}, "next_at": {"$lte": now}, "lease_until": {"$lte": now}},
                        doc! {"$set": {"lease_until": lease_until}},
                    )
                    .sort(doc! {"next_at": 1})
                    .return_document(ReturnDocument::After)
                    .await?)
            })
            .await
    }

    /// The delivery was sent: out of the queue.
    pub async fn sent(&self, id: &str) -> Result<(), StoreError> {
        self.bounds.run(async { Ok(self.deliveries.delete_one(doc! {"_id": id}).await.map(drop)?) }).await
    }

    /// The delivery failed: due again at `next_at`, no longer leased.
    pub async fn failed(&self, id: &str, attempts: i32, next_at: DateTime) -> Result<(), StoreError> {
        self.bounds
            .run(async {
                let update =
                    doc! {"$set": {"attempts": attempts, "next_at": next_at, "lease_until": DateTime::from_millis(0)}};
                Ok(self.deliveries.update_one(doc! {"_id": id}, update).await.map(drop)?)
            })
            .await
    }

    /// How many deliveries wait.
    pub async fn count(&self) -> Result<u64, StoreError> {
        self.bounds.run(async { Ok(self.deliveries.count_documents(doc! {}).await?) }).await
    }
}
