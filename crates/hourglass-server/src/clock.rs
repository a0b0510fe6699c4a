//! The system clock (the one place that reads the OS time) and, for tests of the real binary,
//! a clock read from a file (cargo feature `test-clock`, never in release builds).

use std::time::Duration;

use hourglass_core::{Clock, Timestamp, clock::Sleep};

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // The one system clock.
    fn now(&self) -> Timestamp {
        Timestamp::from_offset_datetime(time::OffsetDateTime::now_utc())
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep<'_> {
        let wait = deadline.millis_since(self.now()).max(0);
        Box::pin(tokio::time::sleep(Duration::from_millis(
            u64::try_from(wait).unwrap_or(0),
        )))
    }
}

/// Time read from a file holding Unix milliseconds, so that a test can move the clock of a
/// server running as a separate process. Sleeping polls the file.
#[cfg(feature = "test-clock")]
#[derive(Debug, Clone)]
pub struct FileClock {
    pub path: std::path::PathBuf,
}

#[cfg(feature = "test-clock")]
impl Clock for FileClock {
    fn now(&self) -> Timestamp {
        let ms = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        Timestamp::from_unix_millis(ms)
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep<'_> {
        Box::pin(async move {
            while self.now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    }
}
