//! Requests and their state machine.
//!
//! ```text
//! pending ──approve (quorum)──▶ approved ──grant created──▶ fulfilled
//!    │ └─deny──▶ denied           └─cancel / fail──▶ cancelled / failed
//!    ├─cancel──▶ cancelled
//!    └─decide_by passed──▶ expired
//! ```
//! [`Request::apply`] is pure: it returns the new request and the audit record of the change,
//! or an error for an illegal transition. Terminal states accept nothing.

use serde::{Deserialize, Serialize};

pub use crate::state::RequestState;

use crate::{
    Error, GrantDuration, Result, Timestamp,
    id::{AccessId, GrantId, PrincipalId, RequestId},
    lifecycle::Event,
};

/// A request for an entitlement or a task profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: RequestId,
    pub requester: PrincipalId,
    /// What is asked for; a profile's grants are one per entitlement, granted and revoked
    /// together.
    pub access: AccessId,
    pub duration: GrantDuration,
    pub reason: String,
    pub ticket: Option<String>,
    pub state: RequestState,
    /// Why it reached its state (deny reason, cancel note, failure).
    pub state_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// A pending request expires at this moment if nobody decided.
    pub decide_by: Timestamp,
    /// The hash of the policy set that judged eligibility.
    pub policy_hash: String,
    pub grant_id: Option<GrantId>,
    /// The requester's public key (OpenSSH format), for connectors that certify one.
    pub public_key: Option<String>,
    /// An emergency request: granted at once where `BreakGlass` permits, then reviewed.
    pub break_glass: bool,
    /// Whether the requester's authentication included a second factor (kept so that later
    /// re-checks judge the same facts).
    pub mfa: bool,
    /// Where the request came from.
    pub source_ip: Option<String>,
    /// A scheduled start (`request --at`); `None` starts when approved.
    pub starts_at: Option<Timestamp>,
    /// For an extension: the active grant to lengthen by `duration` (judged by `Extend`).
    pub extends: Option<GrantId>,
    /// The task the request belongs to: an id the asker gave (an agent's unit of work, say
    /// `INC-7-triage`); every grant of the task ends together when the agent releases it. An
    /// agent's request names its ticket or its task.
    pub task: Option<String>,
    /// The agents acting for the requester (a token exchange with delegation, or an agent
    /// asking through MCP with a person's delegated token), outermost actor first (RFC 8693
    /// `act` chain). Empty when nobody delegated.
    pub actors: Vec<PrincipalId>,
    /// For a token exchange: the verified token facts it was judged on (and the acting agent's),
    /// so that re-checks at activation and policy reload ask `Exchange` with the same facts.
    pub exchange: Option<ExchangeFacts>,
    /// What the ticket source said about `ticket` when the request was made (`None` when no
    /// source owns the reference), so that re-checks judge the same facts.
    pub ticket_facts: Option<crate::policy::TicketFacts>,
    /// Optimistic-concurrency version as read from the store (0 = not stored yet).
    pub version: i64,
}

/// The token facts an exchange was judged on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeFacts {
    pub token: crate::policy::WorkloadToken,
    /// The acting agent's token, with delegation.
    pub actor_token: Option<crate::policy::WorkloadToken>,
}

/// A change to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestCommand {
    /// The quorum is reached (by people or by an `AutoApprove` policy).
    Approve {
        actor: String,
    },
    Deny {
        actor: PrincipalId,
        reason: String,
    },
    /// Withdrawn by the requester or an administrator, or by `system` after a policy change.
    Cancel {
        actor: String,
        note: Option<String>,
    },
    /// Nobody decided before `decide_by`.
    Expire,
    /// The grant exists now.
    Fulfil {
        grant_id: GrantId,
    },
    Fail {
        reason: String,
    },
}

impl Request {
    /// Who asked, as people read it: `alice`, or `support-bot for alice` when an agent asked
    /// for alice.
    pub fn who(&self) -> String {
        if self.actors.is_empty() {
            self.requester.to_string()
        } else {
            let agents: Vec<&str> = self.actors.iter().map(PrincipalId::as_str).collect();
            format!("{} for {}", agents.join(" for "), self.requester)
        }
    }

    /// Applies a command, returning the new request and what happened (its audit record is
    /// [`Event::record`] at `at`), or why not.
    pub fn apply(&self, cmd: RequestCommand, at: Timestamp) -> Result<(Request, Event)> {
        use RequestState::*;
        let request = self.id.clone();
        let (to, reason, grant, event) = match cmd {
            RequestCommand::Approve { actor } if self.state == Pending => (
                Approved,
                None,
                None,
                Event::RequestApproved { request, actor },
            ),
            RequestCommand::Deny { actor, reason } if self.state == Pending => (
                Denied,
                Some(reason.clone()),
                None,
                Event::RequestDenied {
                    request,
                    actor,
                    reason,
                },
            ),
            RequestCommand::Cancel { actor, note } if matches!(self.state, Pending | Approved) => (
                Cancelled,
                note.clone(),
                None,
                Event::RequestCancelled {
                    request,
                    actor,
                    from: self.state,
                    note,
                },
            ),
            RequestCommand::Expire if self.state == Pending => (
                Expired,
                Some("no decision before the deadline".to_owned()),
                None,
                Event::RequestExpired { request },
            ),
            RequestCommand::Fulfil { grant_id } if self.state == Approved => (
                Fulfilled,
                None,
                Some(grant_id.clone()),
                Event::RequestFulfilled {
                    request,
                    grant: grant_id,
                },
            ),
            RequestCommand::Fail { reason } if self.state == Approved => (
                Failed,
                Some(reason.clone()),
                None,
                Event::RequestFailed { request, reason },
            ),
            cmd => {
                return Err(Error::conflict(
                    crate::ErrorCode::RequestInvalidTransition,
                    format!(
                        "request {} is {}; {} is not possible",
                        self.id,
                        self.state.as_str(),
                        command_name(&cmd)
                    ),
                ));
            }
        };
        let mut next = self.clone();
        next.state = to;
        next.updated_at = at;
        if reason.is_some() {
            next.state_reason = reason;
        }
        if grant.is_some() {
            next.grant_id = grant;
        }
        Ok((next, event))
    }
}

fn command_name(cmd: &RequestCommand) -> &'static str {
    match cmd {
        RequestCommand::Approve { .. } => "approve",
        RequestCommand::Deny { .. } => "deny",
        RequestCommand::Cancel { .. } => "cancel",
        RequestCommand::Expire => "expire",
        RequestCommand::Fulfil { .. } => "fulfil",
        RequestCommand::Fail { .. } => "fail",
    }
}

/// Who decided: a person, policy with no human, or break-glass (no decision; reviewed later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalVia {
    Human,
    Policy,
    BreakGlass,
}

impl ApprovalVia {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalVia::Human => "human",
            ApprovalVia::Policy => "policy",
            ApprovalVia::BreakGlass => "break_glass",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            ApprovalVia::Human,
            ApprovalVia::Policy,
            ApprovalVia::BreakGlass,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Deny,
}

/// One decision on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub request_id: RequestId,
    /// The approver's name, or `policy` for an automatic approval.
    pub approver: String,
    pub verdict: Verdict,
    pub via: ApprovalVia,
    /// The policies that determined the decision (the approver's `Approve` permission, or the
    /// `AutoApprove` policies).
    pub policy_ids: Vec<String>,
    pub policy_hash: String,
    pub comment: Option<String>,
    pub at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn pending() -> Request {
        let at = Timestamp::from_unix_millis(1_000);
        Request {
            id: RequestId::generate(at).unwrap(),
            requester: PrincipalId::new("alice").unwrap(),
            access: AccessId::Entitlement(crate::id::EntitlementId::new("demo/x").unwrap()),
            duration: GrantDuration::from_secs(600),
            reason: "r".into(),
            ticket: None,
            state: RequestState::Pending,
            state_reason: None,
            created_at: at,
            updated_at: at,
            decide_by: at.plus_millis(1000),
            policy_hash: "h".into(),
            grant_id: None,
            public_key: None,
            break_glass: false,
            mfa: false,
            source_ip: None,
            starts_at: None,
            extends: None,
            actors: Vec::new(),
            exchange: None,
            ticket_facts: None,
            task: None,
            version: 1,
        }
    }

    #[test]
    fn legal_path_to_fulfilled() {
        let at = Timestamp::from_unix_millis(2_000);
        let (r, ev) = pending()
            .apply(
                RequestCommand::Approve {
                    actor: "bob".into(),
                },
                at,
            )
            .unwrap();
        assert_eq!(r.state, RequestState::Approved);
        assert_eq!(ev.kind(), crate::event::EventKind::RequestApproved);
        let g = GrantId::generate(at).unwrap();
        let (r, ev) = r
            .apply(
                RequestCommand::Fulfil {
                    grant_id: g.clone(),
                },
                at,
            )
            .unwrap();
        assert_eq!(r.state, RequestState::Fulfilled);
        assert_eq!(r.grant_id, Some(g));
        assert!(ev.record(at).details.iter().any(|(k, _)| k == "grant"));
    }

    #[test]
    fn terminal_states_accept_nothing() {
        let at = Timestamp::from_unix_millis(2_000);
        let bob = PrincipalId::new("bob").unwrap();
        let (cancelled, _) = pending()
            .apply(
                RequestCommand::Cancel {
                    actor: bob.to_string(),
                    note: None,
                },
                at,
            )
            .unwrap();
        for cmd in [
            RequestCommand::Approve {
                actor: "bob".into(),
            },
            RequestCommand::Deny {
                actor: bob.clone(),
                reason: "x".into(),
            },
            RequestCommand::Expire,
            RequestCommand::Cancel {
                actor: bob.to_string(),
                note: None,
            },
        ] {
            let err = cancelled.apply(cmd, at).unwrap_err();
            assert_eq!(err.code(), "request.invalid_transition");
        }
    }

    #[test]
    fn only_pending_requests_expire() {
        let at = Timestamp::from_unix_millis(2_000);
        let (approved, _) = pending()
            .apply(RequestCommand::Approve { actor: "p".into() }, at)
            .unwrap();
        assert!(approved.apply(RequestCommand::Expire, at).is_err());
        let (expired, _) = pending().apply(RequestCommand::Expire, at).unwrap();
        assert_eq!(expired.state, RequestState::Expired);
    }

    /// Any sequence of decisions: only the moves of the request lifecycle happen, each with the
    /// matching event naming where it came from and went; a refused command changes nothing; a
    /// decided request stays decided.
    mod lifecycle_properties {
        use proptest::prelude::*;

        use super::*;
        use crate::event::EventKind;

        proptest! {
            #[test]
            fn every_path_through_the_request_lifecycle_is_one_the_design_allows(
                steps in proptest::collection::vec(0u8..6, 1..16)
            ) {
                let mut r = pending();
                let mut at = r.created_at;
                for s in steps {
                    at = at.plus_millis(10);
                    let cmd = match s {
                        0 => RequestCommand::Approve { actor: "bob".into() },
                        1 => RequestCommand::Deny { actor: PrincipalId::new("bob").unwrap(), reason: "no".into() },
                        2 => RequestCommand::Cancel { actor: "alice".into(), note: None },
                        3 => RequestCommand::Expire,
                        4 => RequestCommand::Fulfil { grant_id: GrantId::generate(at).unwrap() },
                        _ => RequestCommand::Fail { reason: "target down".into() },
                    };
                    let before = r.clone();
                    match r.apply(cmd, at) {
                        Ok((next, ev)) => {
                            let ev = ev.record(at);
                            use RequestState::*;
                            let kind = ev.kind().unwrap();
                            let expected = match (before.state, next.state) {
                                (Pending, Approved) => EventKind::RequestApproved,
                                (Pending, Denied) => EventKind::RequestDenied,
                                (Pending | Approved, Cancelled) => EventKind::RequestCancelled,
                                (Pending, Expired) => EventKind::RequestExpired,
                                (Approved, Fulfilled) => EventKind::RequestFulfilled,
                                (Approved, Failed) => EventKind::RequestFailed,
                                (from, to) => {
                                    prop_assert!(false, "move {from:?} -> {to:?} is not in the lifecycle");
                                    unreachable!()
                                }
                            };
                            prop_assert_eq!(kind, expected);
                            let detail = |k: &str| ev.details.iter().find(|(d, _)| d == k).map(|(_, v)| v.clone());
                            prop_assert_eq!(detail("from"), Some(before.state.as_str().to_owned()));
                            prop_assert_eq!(detail("to"), Some(next.state.as_str().to_owned()));
                            prop_assert_eq!(next.updated_at, at);
                            if next.state == Fulfilled {
                                prop_assert!(next.grant_id.is_some());
                            }
                            r = next;
                        }
                        Err(e) => {
                            prop_assert_eq!(e.code(), crate::ErrorCode::RequestInvalidTransition);
                            prop_assert_eq!(&r, &before);
                        }
                    }
                }
            }
        }
    }
}
