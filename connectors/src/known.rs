//! A value asked of a platform and taken as known for a while (the token's own account,
//! say): a connector lives through a sync's pulls and, kept by the server, through a
//! source's webhook deliveries, so a burst of them asks once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The value last asked, and when; none until first asked.
pub(crate) struct Known<T> {
    ttl: Duration,
    value: Mutex<Option<(Instant, T)>>,
}

impl<T: Clone> Known<T> {
    /// Known for `ttl` once asked.
    pub(crate) const fn new(ttl: Duration) -> Known<T> {
        Known {
            ttl,
            value: Mutex::new(None),
        }
    }

    /// The value, when it was asked less than the time to live ago.
    pub(crate) fn get(&self) -> Option<T> {
        let value = self.value.lock().ok()?;
        value
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, value)| value.clone())
    }

    /// The value, or what `ask` answers when it is not known (then kept; a failure is
    /// not). `ask` runs only then.
    pub(crate) async fn get_or_ask<E>(
        &self,
        ask: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        if let Some(value) = self.get() {
            return Ok(value);
        }
        let value = ask.await?;
        self.set(&value);
        Ok(value)
    }

    /// Keeps `value`, asked now.
    pub(crate) fn set(&self, value: &T) {
        self.set_at(value, Instant::now());
    }

    /// Keeps `value`, asked `at`.
    pub(crate) fn set_at(&self, value: &T, at: Instant) {
        if let Ok(mut known) = self.value.lock() {
            *known = Some((at, value.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Known;
    use std::time::{Duration, Instant};

    #[test]
    fn a_value_is_known_for_its_time_to_live() {
        let known = Known::new(Duration::from_secs(300));
        assert_eq!(known.get(), None);
        known.set(&"@rapport_bot");
        assert_eq!(known.get(), Some("@rapport_bot"));
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(301))
            .unwrap();
        known.set_at(&"@rapport_bot", long_ago);
        assert_eq!(known.get(), None);
    }
}
