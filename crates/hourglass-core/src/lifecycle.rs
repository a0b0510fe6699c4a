//! What the lifecycle state machines did, typed: [`Event`], and the one function that turns it
//! into its audit record. `tests/golden_events.rs` holds those records byte for byte, so chains
//! written by earlier versions keep verifying.

use crate::{
    Timestamp,
    audit::AuditRecord,
    event::EventKind,
    id::{GrantId, PrincipalId, RequestId, ReviewId},
    state::{GrantState, RequestState},
};

/// What a lifecycle state machine did ([`crate::request::Request::apply`],
/// [`crate::grant::Grant::apply`], [`crate::review::Review::close`]), typed.
///
/// A use case commits the event as its audit record through [`Event::record`], the one place
/// where a transition becomes the strings the chain hashes; `tests/golden_events.rs` holds
/// those bytes fixed, so chains written by earlier versions keep verifying. What only the use
/// case knows (the approval count, the job attempt, the policy that decided) it adds to the
/// record as catalogued details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    RequestApproved {
        request: RequestId,
        actor: String,
    },
    RequestDenied {
        request: RequestId,
        actor: PrincipalId,
        reason: String,
    },
    RequestCancelled {
        request: RequestId,
        actor: String,
        from: RequestState,
        note: Option<String>,
    },
    RequestExpired {
        request: RequestId,
    },
    RequestFulfilled {
        request: RequestId,
        grant: GrantId,
    },
    RequestFailed {
        request: RequestId,
        reason: String,
    },
    GrantActivated {
        grant: GrantId,
        expires_at: Timestamp,
    },
    GrantExpired {
        grant: GrantId,
        expires_at: Timestamp,
    },
    GrantRevokeRequested {
        grant: GrantId,
        actor: String,
        from: GrantState,
        reason: String,
    },
    /// The connector confirmed an active grant's access is gone.
    GrantRevoked {
        grant: GrantId,
        lag_ms: i64,
        reason: String,
    },
    /// The connector confirmed a grant that never became active left nothing behind.
    GrantFailed {
        grant: GrantId,
        lag_ms: i64,
        reason: String,
    },
    GrantExtended {
        grant: GrantId,
        request: RequestId,
        from: Timestamp,
        to: Timestamp,
    },
    /// After a restore: the target's later end replaced the restored ledger's.
    GrantEndRestored {
        grant: GrantId,
        from: Timestamp,
        to: Timestamp,
        target: String,
    },
    ReviewClosed {
        review: ReviewId,
        by: PrincipalId,
        request: RequestId,
        grant: GrantId,
        principal: PrincipalId,
        comment: String,
    },
}

impl Event {
    /// The kind of audit event this becomes.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::RequestApproved { .. } => EventKind::RequestApproved,
            Event::RequestDenied { .. } => EventKind::RequestDenied,
            Event::RequestCancelled { .. } => EventKind::RequestCancelled,
            Event::RequestExpired { .. } => EventKind::RequestExpired,
            Event::RequestFulfilled { .. } => EventKind::RequestFulfilled,
            Event::RequestFailed { .. } => EventKind::RequestFailed,
            Event::GrantActivated { .. } => EventKind::GrantActivated,
            Event::GrantExpired { .. } => EventKind::GrantExpired,
            Event::GrantRevokeRequested { .. } => EventKind::GrantRevokeRequested,
            Event::GrantRevoked { .. } => EventKind::GrantRevoked,
            Event::GrantFailed { .. } => EventKind::GrantFailed,
            Event::GrantExtended { .. } => EventKind::GrantExtended,
            Event::GrantEndRestored { .. } => EventKind::GrantEndRestored,
            Event::ReviewClosed { .. } => EventKind::ReviewClosed,
        }
    }

    /// The audit record of this event at `at`: actor, subject and details in the order every
    /// version has written them.
    pub fn record(self, at: Timestamp) -> AuditRecord {
        let kind = self.kind();
        let request_moved = |actor: &str, id: &RequestId, from: RequestState, to: RequestState| {
            AuditRecord::new(at, actor, kind, id.as_str())
                .with("from", from.as_str())
                .with("to", to.as_str())
        };
        match self {
            Event::RequestApproved { request, actor } => request_moved(
                &actor,
                &request,
                RequestState::Pending,
                RequestState::Approved,
            ),
            Event::RequestDenied {
                request,
                actor,
                reason,
            } => request_moved(
                actor.as_str(),
                &request,
                RequestState::Pending,
                RequestState::Denied,
            )
            .with("reason", reason),
            Event::RequestCancelled {
                request,
                actor,
                from,
                note,
            } => {
                let r = request_moved(&actor, &request, from, RequestState::Cancelled);
                match note {
                    Some(n) => r.with("reason", n),
                    None => r,
                }
            }
            Event::RequestExpired { request } => request_moved(
                "system",
                &request,
                RequestState::Pending,
                RequestState::Expired,
            )
            .with("reason", "no decision before the deadline"),
            Event::RequestFulfilled { request, grant } => request_moved(
                "system",
                &request,
                RequestState::Approved,
                RequestState::Fulfilled,
            )
            .with("grant", grant),
            Event::RequestFailed { request, reason } => request_moved(
                "system",
                &request,
                RequestState::Approved,
                RequestState::Failed,
            )
            .with("reason", reason),
            Event::GrantActivated { grant, expires_at }
            | Event::GrantExpired { grant, expires_at } => {
                AuditRecord::new(at, "system", kind, grant.as_str()).with("expires_at", expires_at)
            }
            Event::GrantRevokeRequested {
                grant,
                actor,
                from,
                reason,
            } => AuditRecord::new(at, actor, kind, grant.as_str())
                .with("from", from.as_str())
                .with("reason", reason),
            Event::GrantRevoked {
                grant,
                lag_ms,
                reason,
            }
            | Event::GrantFailed {
                grant,
                lag_ms,
                reason,
            } => AuditRecord::new(at, "system", kind, grant.as_str())
                .with("lag_ms", lag_ms)
                .with("reason", reason),
            Event::GrantExtended {
                grant,
                request,
                from,
                to,
            } => AuditRecord::new(at, "system", kind, grant.as_str())
                .with("request", request)
                .with("from", from)
                .with("to", to),
            Event::GrantEndRestored {
                grant,
                from,
                to,
                target,
            } => AuditRecord::new(at, "system:restore", kind, grant.as_str())
                .with("from", from)
                .with("to", to)
                .with("target", target),
            Event::ReviewClosed {
                review,
                by,
                request,
                grant,
                principal,
                comment,
            } => AuditRecord::new(at, by.as_str(), kind, review.as_str())
                .with("request", request)
                .with("grant", grant)
                .with("principal", principal)
                .with("comment", comment),
        }
    }
}
