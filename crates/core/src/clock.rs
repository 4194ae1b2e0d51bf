//! The one clock every timer asks (DESIGN.md decision 4).
//!
//! Time is milliseconds since the Unix epoch. In manual mode time still runs, but
//! [`Clock::advance`] jumps it forward and wakes every sleeper whose deadline has passed, so a
//! test of a 12-hour visibility timeout or a 2-minute retry back-off takes milliseconds.
//! Nothing else in server code may read the wall clock or sleep (see `clippy.toml`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

#[derive(Debug)]
pub struct Clock {
    manual: bool,
    offset_ms: AtomicI64,
    advanced: Notify,
}

#[derive(Debug, PartialEq, Eq)]
pub struct NotManual;

impl Clock {
    pub fn real() -> Self {
        Clock {
            manual: false,
            offset_ms: AtomicI64::new(0),
            advanced: Notify::new(),
        }
    }

    pub fn manual() -> Self {
        Clock {
            manual: true,
            offset_ms: AtomicI64::new(0),
            advanced: Notify::new(),
        }
    }

    pub fn is_manual(&self) -> bool {
        self.manual
    }

    /// Milliseconds since the Unix epoch, as this clock sees them.
    #[allow(clippy::disallowed_methods)] // The one place that reads the wall clock.
    pub fn now_ms(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        wall + self.offset_ms.load(Ordering::Acquire)
    }

    /// The wall-clock reading (milliseconds since the epoch) of a moment this clock calls
    /// `clock_ms`. Processes outside tsumiki (function runtimes) read the machine's clock, so a
    /// deadline handed to them must be in its terms, or a manual clock that was advanced would
    /// give a function hours it does not have.
    pub fn to_wall_ms(&self, clock_ms: i64) -> i64 {
        clock_ms - self.offset_ms.load(Ordering::Acquire)
    }

    /// Moves time forward by `ms` and wakes every sleeper so due timers fire.
    pub fn advance_ms(&self, ms: i64) -> Result<(), NotManual> {
        if !self.manual {
            return Err(NotManual);
        }
        self.offset_ms.fetch_add(ms.max(0), Ordering::AcqRel);
        self.advanced.notify_waiters();
        Ok(())
    }

    /// Sleeps until this clock reads at least `deadline_ms`.
    #[allow(clippy::disallowed_methods)] // The one place that sleeps on the runtime's timer.
    pub async fn sleep_until(&self, deadline_ms: i64) {
        loop {
            // Register for an advance before reading the time, so an advance between the read
            // and the sleep is not missed.
            let notified = self.advanced.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.now_ms();
            if now >= deadline_ms {
                return;
            }
            let wait = Duration::from_millis((deadline_ms - now) as u64);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = &mut notified => {}
            }
        }
    }

    pub async fn sleep_ms(&self, ms: i64) {
        self.sleep_until(self.now_ms() + ms).await
    }

    /// A real-time pause that does not follow the clock; for back-off of internal machinery
    /// (not business timers).
    #[allow(clippy::disallowed_methods)]
    pub async fn pause_real(duration: Duration) {
        tokio::time::sleep(duration).await
    }
}

/// Measures how long real work took (a function's Duration, a cold start), not business time:
/// it follows the machine's monotonic clock even when the [`Clock`] is manual, because a
/// REPORT line of `Duration: 0 ms` would help no one.
#[derive(Clone, Copy, Debug)]
pub struct Stopwatch(std::time::Instant);

impl Stopwatch {
    #[allow(clippy::disallowed_methods)] // Measures durations; never decides when anything happens.
    pub fn start() -> Stopwatch {
        Stopwatch(std::time::Instant::now())
    }

    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Formats epoch milliseconds as ISO 8601 with millisecond precision, as AWS XML does.
pub fn iso8601_ms(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => "1970-01-01T00:00:00.000Z".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn advance_wakes_sleepers() {
        let clock = std::sync::Arc::new(Clock::manual());
        let c2 = clock.clone();
        let deadline = clock.now_ms() + 3_600_000;
        let sleeper = tokio::spawn(async move { c2.sleep_until(deadline).await });
        tokio::task::yield_now().await;
        clock.advance_ms(3_600_000).expect("manual clock");
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("sleeper woke")
            .expect("sleeper ran");
        assert!(clock.now_ms() >= deadline);
    }

    #[test]
    fn real_clock_refuses_advance() {
        assert_eq!(Clock::real().advance_ms(1), Err(NotManual));
    }

    #[test]
    fn formats() {
        assert_eq!(iso8601_ms(0), "1970-01-01T00:00:00.000Z");
    }
}
