//! Random bytes and random hex ids: visitor ids, form client ids, storage
//! keys, CSP nonces.

use rand::RngCore;

/// `N` random bytes from the thread's generator.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A random id of `2 * N` hex characters.
pub fn random_hex<const N: usize>() -> String {
    hex::encode(random_bytes::<N>())
}
