//! [`Source`]: typed reads of configuration values (flags, numbers in a
//! range, durations, lists, secrets), each error naming its key.

use std::fmt;
use std::time::Duration;

use super::{ConfigError, Secret, parse_duration};

/// Where values come from: the environment overlaying the file, or a map in
/// tests.
pub(crate) trait Lookup: Fn(&str) -> Option<String> {}

impl<F: Fn(&str) -> Option<String>> Lookup for F {}

/// Reads typed values through a lookup, naming the key in every error.
pub(crate) struct Source<F> {
    lookup: F,
}

impl<F: Lookup> Source<F> {
    pub(crate) fn new(lookup: F) -> Self {
        Self { lookup }
    }

    pub(crate) fn get(&self, key: &str) -> Option<String> {
        (self.lookup)(key)
    }

    pub(crate) fn flag(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key).as_deref() {
            None => Ok(default),
            Some("false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(_) => Err(ConfigError::new(key, "expected true or false")),
        }
    }

    pub(crate) fn number<N>(&self, key: &str, range: std::ops::RangeInclusive<N>, default: N) -> Result<N, ConfigError>
    where
        N: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(raw) = self.get(key) else { return Ok(default) };
        raw.trim().parse().ok().filter(|n| range.contains(n)).ok_or_else(|| {
            ConfigError::new(key, format!("expected a whole number from {} to {}", range.start(), range.end()))
        })
    }

    pub(crate) fn duration(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<Duration>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(raw) = self.get(key) else { return Ok(default) };
        let parsed = parse_duration(raw.trim()).map_err(|reason| ConfigError::new(key, reason))?;
        if !range.contains(&parsed) {
            return Err(ConfigError::new(key, format!("must be from {:?} to {:?}", range.start(), range.end())));
        }
        Ok(parsed)
    }

    pub(crate) fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub(crate) fn secrets(&self, key: &str, min_len: usize) -> Result<Vec<Secret>, ConfigError> {
        let items: Vec<Secret> = self.list(key).into_iter().map(Secret::new).collect();
        if items.iter().any(|s| s.expose().len() < min_len) {
            return Err(ConfigError::new(key, format!("each entry must be at least {min_len} characters")));
        }
        Ok(items)
    }
}
