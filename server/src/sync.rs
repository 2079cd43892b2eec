//! The one way Herald takes a `std` mutex.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, poisoned or not. Herald's mutexes guard plain maps,
/// counters and buckets, never held across an `.await`; a panic elsewhere
/// while one was held leaves them consistent enough to keep serving
/// everyone else.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
