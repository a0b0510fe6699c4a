//! Time as a parameter. Every read of the current time goes through [`Clock`]; the system
//! clock lives in the server, and tests use a clock they move by hand. Waiting until a moment is
//! part of the clock too, so that a test clock wakes sleepers when it is moved forward and no
//! test ever sleeps for an expiry.

use std::{fmt, future::Future, pin::Pin};

use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::GrantDuration;

/// A moment, as whole milliseconds since the Unix epoch (UTC). Milliseconds round-trip exactly
/// through every store, which the audit hash relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_unix_millis(ms: i64) -> Self {
        Timestamp(ms)
    }
    pub const fn unix_millis(self) -> i64 {
        self.0
    }
    pub fn from_offset_datetime(t: OffsetDateTime) -> Self {
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
    }
    pub fn to_offset_datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
    /// Parses RFC 3339 (`2026-11-23T10:00:00Z`).
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        OffsetDateTime::parse(s, &Rfc3339)
            .ok()
            .map(Self::from_offset_datetime)
    }
    pub fn plus(self, d: GrantDuration) -> Self {
        Timestamp(self.0.saturating_add(d.as_millis()))
    }
    pub fn plus_millis(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }
    /// Milliseconds from `earlier` to `self` (negative if `earlier` is later).
    pub fn millis_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
    /// Hour of day and weekday in UTC, for policy context.
    pub fn hour_and_weekday(self) -> (u8, String) {
        let t = self.to_offset_datetime();
        (t.hour(), t.weekday().to_string())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_offset_datetime().format(&Rfc3339) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "@{}ms", self.0),
        }
    }
}

/// A boxed future, so that `Clock` stays object safe.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// The source of time.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// Completes once `now() >= deadline`. A test clock completes it when moved past it.
    fn sleep_until(&self, deadline: Timestamp) -> Sleep<'_>;
}
