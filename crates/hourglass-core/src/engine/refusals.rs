//! Audited refusals within a budget. A refusal is worth a record (a refused identity token, a
//! replay, a request that policy refused), but a flood of them must not flood the chain: each
//! source (an IPv4 address, or an IPv6 /64, since one host holds a whole /64) and the whole
//! server get a budget of records a minute. Past it, refusals are counted instead, and the count
//! is recorded once, as `audit.refusals_suppressed`, with the next refusal after that minute.
//!
//! The budget is per process (a shared budget in the ledger is the write-path work of later).

use std::{collections::HashMap, net::IpAddr, sync::Mutex};

use super::{Engine, identities::KeyRefused};
use crate::{ErrorCode, Result, Timestamp, audit::AuditRecord, store::Commit};

/// Records one source may cause a minute.
pub const PER_SOURCE_PER_MINUTE: u32 = 30;
/// Records all sources together may cause a minute.
pub const GLOBAL_PER_MINUTE: u32 = 300;

/// Where a refused key or token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthVia {
    /// The HTTP API (`/v1/…`).
    Api,
    /// The MCP endpoint.
    Mcp,
    /// SCIM provisioning.
    Scim,
}

impl AuthVia {
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthVia::Api => "api",
            AuthVia::Mcp => "mcp",
            AuthVia::Scim => "scim",
        }
    }
}

/// A refused API key or bearer token, as the audit records it: never the key or the token,
/// but what identifies it (a key's public prefix and whose key it is, a token's issuer and
/// subject) and why.
#[derive(Debug, Clone)]
pub struct AuthRefusal {
    pub via: AuthVia,
    pub code: ErrorCode,
    pub reason: String,
    pub key_prefix: Option<String>,
    pub identity: Option<String>,
    pub issuer: Option<String>,
    pub subject: Option<String>,
}

impl AuthRefusal {
    /// A refusal with only its code and reason.
    pub fn new(via: AuthVia, code: ErrorCode, reason: impl Into<String>) -> Self {
        AuthRefusal {
            via,
            code,
            reason: reason.into(),
            key_prefix: None,
            identity: None,
            issuer: None,
            subject: None,
        }
    }

    /// A refused API key.
    pub fn key(via: AuthVia, key: KeyRefused) -> Self {
        AuthRefusal {
            key_prefix: key.key_prefix,
            identity: key.identity,
            ..AuthRefusal::new(via, ErrorCode::AuthInvalid, key.reason)
        }
    }
}

/// Seconds until the budget's next minute begins (1 to 60): what a throttled caller is told to
/// wait (`Retry-After`).
pub fn seconds_to_next_minute(now: Timestamp) -> u64 {
    let into = now.unix_millis().rem_euclid(60_000) / 1000;
    u64::try_from(60 - into).unwrap_or(60)
}

/// How one refusal was charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Audited.
    Audited,
    /// Audited, and the last one of its source (or of the server) this minute.
    AuditedLast,
    /// Over the budget: counted, not audited. A caller may answer 429.
    Over,
}

#[derive(Debug, Default)]
struct Minute {
    minute: i64,
    global: u32,
    by_source: HashMap<String, u32>,
    suppressed: u64,
}

/// The budget of one process.
#[derive(Debug, Default)]
pub(super) struct RefusalBudget {
    state: Mutex<Minute>,
}

/// What a source is counted as: an IPv4 address, an IPv6 /64, or `unknown`.
pub fn source_key(ip: Option<&str>) -> String {
    match ip.and_then(|i| i.parse::<IpAddr>().ok()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        None => "unknown".into(),
    }
}

impl RefusalBudget {
    /// Charges a refusal from `source` at `now`. Also returns, once, how many refusals went
    /// unaudited in an earlier minute (and which).
    fn charge(&self, source: &str, now: Timestamp) -> (Charge, Option<(i64, u64)>) {
        let minute = now.unix_millis().div_euclid(60_000);
        let mut m = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut earlier = None;
        if m.minute != minute {
            if m.suppressed > 0 {
                earlier = Some((m.minute, m.suppressed));
            }
            *m = Minute {
                minute,
                ..Minute::default()
            };
        }
        let used = m.by_source.get(source).copied().unwrap_or(0);
        if used >= PER_SOURCE_PER_MINUTE || m.global >= GLOBAL_PER_MINUTE {
            m.suppressed += 1;
            return (Charge::Over, earlier);
        }
        m.by_source.insert(source.to_owned(), used + 1);
        m.global += 1;
        let last = used + 1 == PER_SOURCE_PER_MINUTE || m.global == GLOBAL_PER_MINUTE;
        (
            if last {
                Charge::AuditedLast
            } else {
                Charge::Audited
            },
            earlier,
        )
    }
}

impl Engine {
    /// Audits a refused API key or bearer token within the budget; past it, the caller may
    /// answer 429 ([`Charge::Over`]) with [`seconds_to_next_minute`] as `Retry-After`.
    pub async fn record_auth_refusal(
        &self,
        r: AuthRefusal,
        source_ip: Option<&str>,
    ) -> Result<Charge> {
        let mut ev = AuditRecord::new(
            self.clock.now(),
            "anonymous",
            crate::event::EventKind::AuthRefused,
            r.via.as_str(),
        )
        .with("code", r.code.as_str())
        .with("reason", r.reason);
        for (key, value) in [
            ("key_prefix", r.key_prefix),
            ("identity", r.identity),
            ("issuer", r.issuer),
            ("subject", r.subject),
        ] {
            if let Some(v) = value {
                ev = ev.with(key, v);
            }
        }
        self.record_refusal(ev, source_ip).await
    }

    /// Audits a refusal `record` from `source_ip` within the budget; see the module doc. The
    /// last record a source gets this minute says that more are not audited.
    pub async fn record_refusal(
        &self,
        mut record: AuditRecord,
        source_ip: Option<&str>,
    ) -> Result<Charge> {
        let now = self.clock.now();
        let (charge, earlier) = self.refusals.charge(&source_key(source_ip), now);
        let mut commit = Commit::default();
        if let Some((minute, count)) = earlier {
            commit.audit.push(
                AuditRecord::new(now, "system", crate::event::EventKind::AuditRefusalsSuppressed, "refusals")
                    .with("count", count)
                    .with(
                        "minute",
                        Timestamp::from_unix_millis(minute.saturating_mul(60_000)),
                    )
                    .with(
                        "why",
                        format!(
                            "over the budget of {PER_SOURCE_PER_MINUTE} a source or {GLOBAL_PER_MINUTE} in all a minute"
                        ),
                    ),
            );
        }
        if charge != Charge::Over {
            if let Some(ip) = source_ip {
                record = record.with("source_ip", ip);
            }
            if charge == Charge::AuditedLast {
                record = record.with(
                    "budget",
                    "further refusals from this source this minute are not audited",
                );
            }
            commit.audit.push(record);
        }
        if !commit.audit.is_empty() {
            self.commit(commit).await?;
        }
        Ok(charge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_and_the_server_have_a_budget_a_minute_and_what_passed_it_is_counted() {
        let b = RefusalBudget::default();
        let t = |s: i64| Timestamp::from_unix_millis(s * 1000);
        for i in 1..PER_SOURCE_PER_MINUTE {
            assert_eq!(b.charge("a", t(0)).0, Charge::Audited, "{i}");
        }
        assert_eq!(b.charge("a", t(1)).0, Charge::AuditedLast);
        assert_eq!(b.charge("a", t(2)).0, Charge::Over);
        assert_eq!(b.charge("a", t(3)).0, Charge::Over);
        // Another source still has its own.
        assert_eq!(b.charge("b", t(4)).0, Charge::Audited);
        // The next minute: audited again, and the two over the budget are reported once.
        assert_eq!(b.charge("a", t(60)), (Charge::Audited, Some((0, 2))));
        assert_eq!(b.charge("a", t(61)), (Charge::Audited, None));
        // The whole server: many sources, one budget.
        let g = RefusalBudget::default();
        let mut over = 0;
        for i in 0..(GLOBAL_PER_MINUTE + 10) {
            if g.charge(&format!("10.0.0.{}", i % 200), t(0)).0 == Charge::Over {
                over += 1;
            }
        }
        assert_eq!(over, 10);
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_64() {
        assert_eq!(
            source_key(Some("2001:db8:1:2:aaaa::1")),
            source_key(Some("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            source_key(Some("2001:db8:1:2::1")),
            source_key(Some("2001:db8:1:3::1"))
        );
        assert_eq!(source_key(Some("::ffff:10.0.0.1")), "10.0.0.1");
        assert_eq!(source_key(Some("10.0.0.1")), "10.0.0.1");
        assert_eq!(source_key(None), "unknown");
    }
}
