//! The approver's inbox: the pending requests a caller may decide, and for one of them what an
//! approver needs to judge it (the ticket as last seen, the requester's recent history with the
//! same access, who holds it now, the policies that make it eligible and that let the caller
//! decide, and whether the caller must first sign in again with a second factor).

use std::collections::BTreeMap;

use super::{Caller, Engine, requests::requesting_side};
use crate::{
    Result,
    catalog::{Principal, PrincipalKind, PrincipalStatus, Risk},
    grant::{Grant, GrantState},
    id::PrincipalId,
    policy::{Action, Resource},
    request::{Approval, Request, RequestState},
    store::{GrantFilter, RequestFilter},
};

/// Pending requests read for the inbox at most.
const MAX_PENDING: u32 = 2_000;
/// Earlier requests shown of the requester's history.
const HISTORY: usize = 5;

/// One request as its approver sees it.
#[derive(Debug, Clone)]
pub struct InboxEntry {
    pub request: Request,
    pub approvals: Vec<Approval>,
    pub approvals_required: u32,
    pub risk: Risk,
    /// The requester's latest earlier requests for the same access, newest first.
    pub history: Vec<Request>,
    /// Live grants of the same entitlements now (who else holds it).
    pub holders: Vec<Grant>,
    /// The policies that make the request eligible now.
    pub eligible_by: Vec<String>,
    /// The policies that let the caller decide (with a second factor, if it needs one).
    pub decide_by: Vec<String>,
    /// The caller may decide only after signing in again with a second factor.
    pub needs_step_up: bool,
    /// The ticket as its source last reported it (by webhook or the poller), if it has.
    pub ticket_now: Option<crate::ticket::Ticket>,
}

impl Engine {
    /// The pending requests `caller` may decide now (never their own, never one they stand on
    /// the asking side of), oldest first; and for each, whether a second factor is needed.
    pub async fn inbox(&self, caller: &Caller) -> Result<Vec<(Request, Risk, bool)>> {
        let pending = self
            .store
            .list_requests(&RequestFilter {
                state: Some(RequestState::Pending),
                limit: MAX_PENDING,
                ..RequestFilter::default()
            })
            .await?;
        // Requesters are read once each, however many requests they have waiting.
        let mut people = BTreeMap::new();
        let mut out = Vec::new();
        for req in pending {
            if let Some((risk, step_up)) = self.may_decide(caller, &req, &mut people).await? {
                out.push((req, risk, step_up));
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Who may decide request `id` now: the active people of the catalogue (never the
    /// requester, never someone on its asking side), each with whether a second factor is
    /// needed first; at most `limit`. For telling approvers directly: each decision is judged
    /// again when it is made.
    pub async fn approvers_of(&self, id: &str, limit: usize) -> Result<Vec<(PrincipalId, bool)>> {
        let req = self.load_request(id).await?;
        let mut people = BTreeMap::new();
        let mut out = Vec::new();
        for p in self.catalog.principals() {
            if out.len() >= limit {
                break;
            }
            if p.kind != PrincipalKind::Human {
                continue;
            }
            let Some(current) = self.principal(&p.id).await? else {
                continue;
            };
            if current.status != PrincipalStatus::Active {
                continue;
            }
            let caller = Caller {
                principal: current,
                mfa: false,
                source_ip: None,
                on_behalf_of: None,
            };
            if let Some((_, step_up)) = self.may_decide(&caller, &req, &mut people).await? {
                out.push((p.id.clone(), step_up));
            }
        }
        Ok(out)
    }

    /// Whether `caller` may decide `req`: `Some((risk, needs_step_up))`, or `None`. `people`
    /// caches the requesters read.
    async fn may_decide(
        &self,
        caller: &Caller,
        req: &Request,
        people: &mut BTreeMap<PrincipalId, Option<Principal>>,
    ) -> Result<Option<(Risk, bool)>> {
        if caller.principal.id == req.requester || req.state != RequestState::Pending {
            return Ok(None);
        }
        let Ok(resource) = self.resource_of(&req.access) else {
            return Ok(None);
        };
        let requester = match people.get(&req.requester) {
            Some(p) => p.clone(),
            None => {
                let p = self.principal(&req.requester).await?;
                people.insert(req.requester.clone(), p.clone());
                p
            }
        };
        let Some(requester) = requester else {
            return Ok(None);
        };
        if requesting_side(&caller.principal, &requester, &req.actors).is_some() {
            return Ok(None);
        }
        let now = self.clock.now();
        let mut ctx = self.context(
            Some(caller),
            &req.requester,
            req.duration,
            super::ticket_facts_of(req).as_ref(),
            now,
        );
        ctx.requester = Some(requester);
        let risk = risk_of(resource);
        if self
            .decide(Action::Approve, &caller.principal, resource, &ctx)?
            .allowed
        {
            return Ok(Some((risk, false)));
        }
        if caller.mfa {
            return Ok(None);
        }
        ctx.mfa = true;
        Ok(self
            .decide(Action::Approve, &caller.principal, resource, &ctx)?
            .allowed
            .then_some((risk, true)))
    }

    /// One request of the inbox, with what its approver needs to judge it. Not found unless
    /// `caller` may decide it now.
    pub async fn inbox_entry(&self, caller: &Caller, id: &str) -> Result<InboxEntry> {
        let request = self.visible_request(caller, id).await?;
        let Some((risk, needs_step_up)) = self
            .may_decide(caller, &request, &mut BTreeMap::new())
            .await?
        else {
            return Err(crate::Error::not_found(
                crate::ErrorCode::InboxNotFound,
                format!("request {id} is not waiting for your decision"),
            ));
        };
        let resource = self.resource_of(&request.access)?;
        let approvals = self.store.list_approvals(&request.id).await?;
        let history = self
            .store
            .list_requests(&RequestFilter {
                requester: Some(request.requester.clone()),
                limit: 200,
                ..RequestFilter::default()
            })
            .await?
            .into_iter()
            .filter(|r| r.access == request.access && r.id != request.id)
            .take(HISTORY)
            .collect();
        let entitlements: Vec<String> = match resource {
            Resource::Entitlement(e) => vec![e.id.to_string()],
            Resource::Profile(p) => p.entitlements.iter().map(ToString::to_string).collect(),
        };
        let holders = self
            .store
            .list_grants(&GrantFilter {
                state: Some(GrantState::Active),
                limit: 1_000,
                ..GrantFilter::default()
            })
            .await?
            .into_iter()
            .filter(|g| entitlements.contains(&g.entitlement.to_string()))
            .collect();
        let now = self.clock.now();
        let requester = self.principal(&request.requester).await?;
        let eligible_by = match &requester {
            Some(p) => {
                let ctx = self.recheck_context(&request, now);
                let action = if request.break_glass {
                    Action::BreakGlass
                } else {
                    Action::Request
                };
                let reviewed = self.reviewed(&p.id).await?;
                let d = self.decide(action, p, resource, &ctx)?;
                self.with_reviews(action, &p.id, &reviewed, resource, d)
                    .policy_ids
            }
            None => Vec::new(),
        };
        let mut ctx = self.context(
            Some(caller),
            &request.requester,
            request.duration,
            super::ticket_facts_of(&request).as_ref(),
            now,
        );
        ctx.requester = requester;
        ctx.mfa = ctx.mfa || needs_step_up;
        let decide_by = self
            .decide(Action::Approve, &caller.principal, resource, &ctx)?
            .policy_ids;
        let ticket_now = match (&request.ticket, &request.ticket_facts) {
            (Some(reference), Some(facts)) => match &facts.source {
                Some(source) => self.store.get_ticket(source, reference).await?,
                None => None,
            },
            _ => None,
        };
        Ok(InboxEntry {
            ticket_now,
            approvals_required: resource.approvals_required(),
            request,
            approvals,
            risk,
            history,
            holders,
            eligible_by,
            decide_by,
            needs_step_up,
        })
    }
}

fn risk_of(resource: Resource<'_>) -> Risk {
    match resource {
        Resource::Entitlement(e) => e.risk,
        Resource::Profile(p) => p.risk,
    }
}
