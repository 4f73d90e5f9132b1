//! Time: the monotonic clock of idle expiry, leases and lazy touches, and
//! Unix time for the absolute timeout.
//!
//! The monotonic clock is tokio's ([`tokio::time::Instant`]), so tests can
//! run expiry and leases on paused time (`#[tokio::test(start_paused =
//! true)]`); outside such tests it is the operating system's monotonic
//! clock. The absolute timeout is measured in Unix time because the
//! creation time travels with the session through the stores to other
//! servers.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A monotonic clock in milliseconds, private to one session manager.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base: Instant,
}

impl Clock {
    /// A clock starting now. Inside a Tokio runtime with paused time it
    /// follows that runtime's clock.
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
        }
    }

    /// Milliseconds since the clock started, plus one: never 0, so that 0
    /// can mean "never" (e.g. a lease not armed).
    pub(crate) fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64 + 1
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Clock;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_time_and_is_never_zero() {
        let clock = Clock::new();
        assert_eq!(clock.now_ms(), 1);
        tokio::time::advance(Duration::from_millis(2500)).await;
        assert_eq!(clock.now_ms(), 2501);
        let later = Clock::new();
        assert_eq!(later.now_ms(), 1, "each clock starts at its own creation");
    }
}
