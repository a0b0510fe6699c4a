//! Grants and their state machine.
//!
//! ```text
//! provisioning ──provisioned──▶ active ──expire / revoke──▶ revoking ──confirmed──▶ revoked
//!      └──revoke / window closed / policy now denies──▶ revoking ──confirmed──▶ failed
//! ```
//! A grant that never became active ends `failed` once its cleanup is confirmed; one that was
//! active ends `revoked`. `revoking` is left only when the target confirms: a revocation that
//! keeps failing stays `revoking` and is reported as overdue, never shown as revoked.

use serde::{Deserialize, Serialize};

pub use crate::state::GrantState;

use crate::{
    Error, Result, Timestamp,
    id::{EntitlementId, GrantId, PrincipalId, RequestId, TargetId},
    lifecycle::Event,
};

/// The elevated state in a target, for the window `[starts_at, expires_at)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: GrantId,
    pub request_id: RequestId,
    pub principal: PrincipalId,
    pub entitlement: EntitlementId,
    pub target: TargetId,
    pub state: GrantState,
    pub starts_at: Timestamp,
    pub expires_at: Timestamp,
    pub created_at: Timestamp,
    pub activated_at: Option<Timestamp>,
    /// When revocation became due (the expiry, or the moment someone revoked).
    pub revoke_due_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub end_reason: Option<String>,
    /// What the connector needs to undo the grant (names it created), never a secret.
    pub handle: Option<serde_json::Value>,
    /// SHA-256 fingerprint of a credential the grant issued; the credential itself is not kept.
    pub credential_fingerprint: Option<String>,
    /// The requester's public key, for connectors that certify one (copied from the request).
    pub public_key: Option<String>,
    /// Granted through break-glass (copied from the request): re-checked against `BreakGlass`.
    pub break_glass: bool,
    pub version: i64,
}

/// A change to a grant.
#[derive(Debug, Clone, PartialEq)]
pub enum GrantCommand {
    /// The connector confirmed the access exists.
    Activate {
        handle: Option<serde_json::Value>,
        credential_fingerprint: Option<String>,
    },
    /// The window closed (`due_at` = `expires_at`).
    Expire,
    /// Someone or something ends the grant early (or a provisioning that cannot finish).
    Revoke { actor: String, reason: String },
    /// The connector confirmed the access is gone.
    ConfirmRevoked,
    /// An approved extension moves the end (only of an active grant, only later).
    Extend {
        expires_at: Timestamp,
        request: crate::id::RequestId,
    },
    /// After a restore from a backup, the end the target enforces replaces the older end the
    /// restored ledger holds (only of an active grant, only later; the caller caps it).
    AdoptTargetEnd {
        expires_at: Timestamp,
        target: String,
    },
}

impl Grant {
    /// Applies a command, returning the new grant and what happened (its audit record is
    /// [`Event::record`] at `at`), or why not.
    pub fn apply(&self, cmd: GrantCommand, at: Timestamp) -> Result<(Grant, Event)> {
        use GrantState::*;
        let mut next = self.clone();
        let id = self.id.clone();
        let event = match (self.state, cmd) {
            (
                Provisioning,
                GrantCommand::Activate {
                    handle,
                    credential_fingerprint,
                },
            ) => {
                next.state = Active;
                next.activated_at = Some(at);
                next.handle = handle;
                next.credential_fingerprint = credential_fingerprint;
                Event::GrantActivated {
                    grant: id,
                    expires_at: self.expires_at,
                }
            }
            (Active, GrantCommand::Expire) => {
                next.state = Revoking;
                next.revoke_due_at = Some(self.expires_at);
                next.end_reason = Some("expired".into());
                Event::GrantExpired {
                    grant: id,
                    expires_at: self.expires_at,
                }
            }
            (Provisioning | Active, GrantCommand::Revoke { actor, reason }) => {
                next.state = Revoking;
                next.revoke_due_at = Some(at);
                next.end_reason = Some(reason.clone());
                Event::GrantRevokeRequested {
                    grant: id,
                    actor,
                    from: self.state,
                    reason,
                }
            }
            (Revoking, GrantCommand::ConfirmRevoked) => {
                let was_active = self.activated_at.is_some();
                next.state = if was_active { Revoked } else { Failed };
                next.ended_at = Some(at);
                let lag_ms = at.millis_since(self.revoke_due_at.unwrap_or(at)).max(0);
                let reason = self.end_reason.clone().unwrap_or_else(|| "revoked".into());
                if was_active {
                    Event::GrantRevoked {
                        grant: id,
                        lag_ms,
                        reason,
                    }
                } else {
                    Event::GrantFailed {
                        grant: id,
                        lag_ms,
                        reason,
                    }
                }
            }
            (
                Active,
                GrantCommand::Extend {
                    expires_at,
                    request,
                },
            ) if expires_at > self.expires_at && self.expires_at > at => {
                next.expires_at = expires_at;
                Event::GrantExtended {
                    grant: id,
                    request,
                    from: self.expires_at,
                    to: expires_at,
                }
            }
            (Active, GrantCommand::AdoptTargetEnd { expires_at, target })
                if expires_at > self.expires_at =>
            {
                next.expires_at = expires_at;
                Event::GrantEndRestored {
                    grant: id,
                    from: self.expires_at,
                    to: expires_at,
                    target,
                }
            }
            (state, cmd) => {
                return Err(Error::conflict(
                    crate::ErrorCode::GrantInvalidTransition,
                    format!(
                        "grant {} is {}; {} is not possible",
                        self.id,
                        state.as_str(),
                        match cmd {
                            GrantCommand::Activate { .. } => "activate",
                            GrantCommand::Expire => "expire",
                            GrantCommand::Revoke { .. } => "revoke",
                            GrantCommand::ConfirmRevoked => "confirm revocation",
                            GrantCommand::Extend { .. } => "extend",
                            GrantCommand::AdoptTargetEnd { .. } => "adopt the target's end",
                        }
                    ),
                ));
            }
        };
        Ok((next, event))
    }

    /// Whether the access may exist in the target now (it is, or may be being, provisioned).
    pub fn may_hold_access(&self) -> bool {
        matches!(
            self.state,
            GrantState::Provisioning | GrantState::Active | GrantState::Revoking
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A grant being provisioned (other modules' tests start from it too).
    pub(crate) fn provisioning() -> Grant {
        let at = Timestamp::from_unix_millis(1_000);
        Grant {
            id: GrantId::generate(at).unwrap(),
            request_id: RequestId::generate(at).unwrap(),
            principal: PrincipalId::new("alice").unwrap(),
            entitlement: EntitlementId::new("demo/x").unwrap(),
            target: TargetId::new("demo").unwrap(),
            state: GrantState::Provisioning,
            starts_at: at,
            expires_at: at.plus_millis(60_000),
            created_at: at,
            activated_at: None,
            revoke_due_at: None,
            ended_at: None,
            end_reason: None,
            handle: None,
            credential_fingerprint: None,
            public_key: None,
            break_glass: false,
            version: 1,
        }
    }

    #[test]
    fn active_grant_expires_then_is_revoked_with_lag() {
        let g = provisioning();
        let (g, _) = g
            .apply(
                GrantCommand::Activate {
                    handle: None,
                    credential_fingerprint: None,
                },
                Timestamp::from_unix_millis(1_100),
            )
            .unwrap();
        let (g, ev) = g
            .apply(GrantCommand::Expire, Timestamp::from_unix_millis(61_050))
            .unwrap();
        assert_eq!(g.state, GrantState::Revoking);
        assert_eq!(g.revoke_due_at, Some(g.expires_at));
        assert_eq!(ev.kind(), crate::event::EventKind::GrantExpired);
        let (g, ev) = g
            .apply(
                GrantCommand::ConfirmRevoked,
                Timestamp::from_unix_millis(61_300),
            )
            .unwrap();
        assert_eq!(g.state, GrantState::Revoked);
        assert!(matches!(ev, Event::GrantRevoked { lag_ms: 300, .. }));
    }

    #[test]
    fn never_active_grant_ends_failed() {
        let at = Timestamp::from_unix_millis(2_000);
        let (g, _) = provisioning()
            .apply(
                GrantCommand::Revoke {
                    actor: "alice".into(),
                    reason: "no longer needed".into(),
                },
                at,
            )
            .unwrap();
        let (g, ev) = g.apply(GrantCommand::ConfirmRevoked, at).unwrap();
        assert_eq!(g.state, GrantState::Failed);
        assert_eq!(ev.kind(), crate::event::EventKind::GrantFailed);
    }

    #[test]
    fn a_provisioning_grant_cannot_expire_and_a_revoked_one_accepts_nothing() {
        let at = Timestamp::from_unix_millis(2_000);
        assert!(provisioning().apply(GrantCommand::Expire, at).is_err());
        let (g, _) = provisioning()
            .apply(
                GrantCommand::Revoke {
                    actor: "a".into(),
                    reason: "r".into(),
                },
                at,
            )
            .unwrap();
        let (g, _) = g.apply(GrantCommand::ConfirmRevoked, at).unwrap();
        for cmd in [
            GrantCommand::Expire,
            GrantCommand::ConfirmRevoked,
            GrantCommand::Revoke {
                actor: "a".into(),
                reason: "r".into(),
            },
            GrantCommand::Activate {
                handle: None,
                credential_fingerprint: None,
            },
        ] {
            assert_eq!(
                g.apply(cmd, at).unwrap_err().code(),
                "grant.invalid_transition"
            );
        }
    }

    /// Any sequence of commands at any later moments: each accepted step makes exactly the
    /// move the lifecycle allows and records it with the matching event; each refused one
    /// changes nothing; the end never moves earlier; a grant ends once, as `revoked` only if it
    /// was ever active, and nothing moves it after.
    mod lifecycle_properties {
        use proptest::prelude::*;

        use super::*;
        use crate::event::EventKind;

        #[derive(Debug, Clone)]
        enum Step {
            Activate,
            Expire,
            Revoke,
            Confirm,
            Extend(i64),
        }

        fn step() -> impl Strategy<Value = (Step, i64)> {
            (
                prop_oneof![
                    Just(Step::Activate),
                    Just(Step::Expire),
                    Just(Step::Revoke),
                    Just(Step::Confirm),
                    (-30_000i64..120_000).prop_map(Step::Extend),
                ],
                0i64..40_000,
            )
        }

        proptest! {
            #[test]
            fn every_path_through_the_lifecycle_is_one_the_design_allows(
                steps in proptest::collection::vec(step(), 1..24)
            ) {
                let mut g = provisioning();
                let mut at = g.created_at;
                let mut ended = false;
                for (s, dt) in steps {
                    at = at.plus_millis(dt);
                    let cmd = match &s {
                        Step::Activate => GrantCommand::Activate { handle: None, credential_fingerprint: None },
                        Step::Expire => GrantCommand::Expire,
                        Step::Revoke => GrantCommand::Revoke { actor: "alice".into(), reason: "done".into() },
                        Step::Confirm => GrantCommand::ConfirmRevoked,
                        Step::Extend(by) => GrantCommand::Extend {
                            expires_at: g.expires_at.plus_millis(*by),
                            request: RequestId::generate(at).unwrap(),
                        },
                    };
                    let before = g.clone();
                    match g.apply(cmd, at) {
                        Ok((next, ev)) => {
                            let ev = ev.record(at);
                            prop_assert!(!ended, "a terminal grant moved: {:?}", before.state);
                            prop_assert_eq!(&ev.subject, before.id.as_str());
                            let kind = ev.kind().unwrap();
                            use GrantState::*;
                            let expected = match (before.state, next.state) {
                                (Provisioning, Active) => EventKind::GrantActivated,
                                (Active, Revoking) if matches!(s, Step::Expire) => EventKind::GrantExpired,
                                (Provisioning | Active, Revoking) => EventKind::GrantRevokeRequested,
                                (Revoking, Revoked) => EventKind::GrantRevoked,
                                (Revoking, Failed) => EventKind::GrantFailed,
                                (Active, Active) => EventKind::GrantExtended,
                                (from, to) => {
                                    prop_assert!(false, "move {from:?} -> {to:?} is not in the lifecycle");
                                    unreachable!()
                                }
                            };
                            prop_assert_eq!(kind, expected);
                            prop_assert!(next.expires_at >= before.expires_at, "the end moved earlier");
                            if matches!(next.state, Revoked | Failed) {
                                prop_assert_eq!(next.ended_at, Some(at));
                                prop_assert_eq!(next.state == Revoked, before.activated_at.is_some());
                                ended = true;
                            } else {
                                prop_assert_eq!(next.ended_at, None);
                            }
                            if next.state == Revoking {
                                prop_assert!(next.revoke_due_at.is_some());
                            }
                            g = next;
                        }
                        Err(e) => {
                            prop_assert_eq!(e.code(), crate::ErrorCode::GrantInvalidTransition);
                            prop_assert_eq!(&g, &before);
                        }
                    }
                }
            }
        }
    }
}
