//! API keys: the credentials backends present to the publish API.
//!
//! Kept as SHA-256 digests and compared in constant time, so that checking
//! a presented key says nothing about the configured ones.

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::Secret;

/// The configured API keys, kept as digests so that comparing a presented
/// key takes the same time whatever its length or content.
#[derive(Clone, Default)]
pub struct ApiKeys(Vec<[u8; 32]>);

impl ApiKeys {
    pub fn new(keys: &[Secret]) -> Self {
        Self(keys.iter().map(|k| Sha256::digest(k.expose().as_bytes()).into()).collect())
    }

    /// Which of the keys `presented` is; compares with every key, in
    /// constant time.
    pub fn find(&self, presented: &str) -> Option<usize> {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // 1-based position of the match, 0 for none, chosen without branching.
        let mut position = 0u32;
        for (i, key) in self.0.iter().enumerate() {
            let candidate = u32::try_from(i + 1).unwrap_or(u32::MAX);
            position = u32::conditional_select(&position, &candidate, key.ct_eq(&presented));
        }
        (position as usize).checked_sub(1)
    }

    /// A short name for key `index` that says nothing about the key: it
    /// scopes idempotency keys, so that two backends with keys of their own
    /// that happen to use the same idempotency key (database ids, say) never
    /// suppress each other's publishes.
    pub fn scope(&self, index: usize) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"herald-idempotency-scope\0");
        hasher.update(self.0[index]);
        hex::encode(&hasher.finalize()[..6])
    }

    pub fn accepts(&self, presented: &str) -> bool {
        self.find(presented).is_some()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_match_exactly() {
        let keys = ApiKeys::new(&[Secret::new("key-one-key-one-1"), Secret::new("key-two-key-two-2")]);
        assert!(keys.accepts("key-one-key-one-1"));
        assert!(keys.accepts("key-two-key-two-2"));
        assert!(!keys.accepts("key-one-key-one-"));
        assert!(!keys.accepts(""));
        assert!(!ApiKeys::default().accepts("anything"));
        assert_eq!(keys.find("key-two-key-two-2"), Some(1));
        assert_eq!(keys.find("key-one-key-one-1"), Some(0));
    }
}
