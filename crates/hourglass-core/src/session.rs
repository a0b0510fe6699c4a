//! Sign-in sessions of people: kept in the store, so that any replica serves them and ending one
//! ends it everywhere.
//!
//! The session id is a random secret that only the browser holds (in a cookie); the store keeps
//! its SHA-256 (`id_hash`), never the id. A session ends at the first of: its absolute expiry
//! (set at sign-in), an idle gap longer than the configured idle timeout, sign-out, or its person
//! no longer being active. A fresh id is made at every sign-in, so an id planted before sign-in
//! is never promoted.

use serde::{Deserialize, Serialize};

use crate::{GrantDuration, Timestamp, id::PrincipalId};

/// A session as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 (hex) of the session id.
    pub id_hash: String,
    pub principal: PrincipalId,
    /// Whether the sign-in used a second factor.
    pub mfa: bool,
    /// How the person signed in (`demo`, `oidc`), for the audit.
    pub via: String,
    pub created_at: Timestamp,
    /// The last request seen (updated at most once a minute).
    pub last_seen_at: Timestamp,
    /// The absolute end, whatever the activity.
    pub expires_at: Timestamp,
}

/// Session lifetimes, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSettings {
    /// A session unused this long ends.
    pub idle: GrantDuration,
    /// A session ends this long after sign-in, however active.
    pub absolute: GrantDuration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            idle: GrantDuration::from_secs(30 * 60),
            absolute: GrantDuration::from_secs(12 * 3600),
        }
    }
}

impl Session {
    /// Whether it is still valid at `now` (not past its absolute end, not idle too long).
    pub fn is_live(&self, now: Timestamp, idle: GrantDuration) -> bool {
        now < self.expires_at && now < self.last_seen_at.plus(idle)
    }

    /// A short public name for logs and the audit (never the id, never the whole hash).
    pub fn handle(&self) -> String {
        format!("ses_{}", self.id_hash.get(..16).unwrap_or(&self.id_hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_at_its_absolute_end_or_when_idle_too_long() {
        let t = |s: i64| Timestamp::from_unix_millis(s * 1000);
        let s = Session {
            id_hash: "ab".repeat(32),
            principal: PrincipalId::new("alice").unwrap(),
            mfa: false,
            via: "demo".into(),
            created_at: t(0),
            last_seen_at: t(100),
            expires_at: t(1_000),
        };
        let idle = GrantDuration::from_secs(300);
        assert!(s.is_live(t(399), idle));
        assert!(!s.is_live(t(400), idle), "idle for the whole timeout");
        let busy = Session {
            last_seen_at: t(990),
            ..s.clone()
        };
        assert!(
            !busy.is_live(t(1_000), idle),
            "absolute end, however active"
        );
        assert_eq!(s.handle(), format!("ses_{}", "ab".repeat(8)));
    }
}
