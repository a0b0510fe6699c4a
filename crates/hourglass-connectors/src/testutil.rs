//! Helpers shared by the connectors' tests.

use hourglass_core::{
    Timestamp,
    catalog::PrincipalKind,
    connector::GrantSpec,
    id::{EntitlementId, GrantId, PrincipalId, TargetId},
};

/// The real time: targets (PostgreSQL's `VALID UNTIL`, `ssh-keygen`) judge validity by it.
#[allow(clippy::disallowed_methods)]
pub fn wall_clock() -> Timestamp {
    Timestamp::from_offset_datetime(time::OffsetDateTime::now_utc())
}

/// A grant of `entitlement` to `principal`, from now for `minutes`.
pub fn spec(
    principal: &str,
    entitlement: &str,
    params: serde_json::Value,
    minutes: i64,
) -> GrantSpec {
    let at = wall_clock();
    let ent = EntitlementId::new(entitlement).unwrap();
    GrantSpec {
        grant_id: GrantId::generate(at).unwrap(),
        principal: PrincipalId::new(principal).unwrap(),
        principal_kind: PrincipalKind::Human,
        target: TargetId::new(ent.target()).unwrap(),
        entitlement: ent,
        starts_at: at,
        expires_at: at.plus_millis(minutes * 60_000),
        params,
        handle: None,
        public_key: None,
    }
}

/// A clock that stays where it is put.
pub struct FixedClock(pub std::sync::Mutex<Timestamp>);

impl FixedClock {
    pub fn at(t: Timestamp) -> std::sync::Arc<Self> {
        std::sync::Arc::new(FixedClock(std::sync::Mutex::new(t)))
    }
    pub fn set(&self, t: Timestamp) {
        *self.0.lock().unwrap() = t;
    }
}

impl hourglass_core::Clock for FixedClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
    fn sleep_until(&self, _deadline: Timestamp) -> hourglass_core::clock::Sleep<'_> {
        Box::pin(std::future::pending())
    }
}
