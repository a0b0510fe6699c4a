//! The catalogue: what a person may ask for now, and what will happen when they do, judged by
//! the policy set in force (the web app's request page).
//!
//! For each entitlement and profile, `Request` is asked at its default duration: permitted
//! outright, or only with an open ticket (asked again with a verified open ticket in the
//! context), or not at all (then it is not offered). The longest duration `AutoApprove` lets
//! through at once is found among a ladder of durations up to the maximum (policies that
//! approve at once are bounded by duration, so the ladder is searched by halves), and
//! `BreakGlass` is asked too. These are answers for now: time-of-day and on-call conditions may
//! answer differently later, and the request itself is judged again when it is made.

use super::{Caller, Engine};
use crate::{
    Error, GrantDuration, Result,
    catalog::Risk,
    id::PrincipalId,
    policy::{Action, Decision, DecisionContext, Resource, TicketFacts},
};

/// One action judged for `explain`.
#[derive(Debug, Clone)]
pub struct Explained {
    pub action: Action,
    pub decision: Decision,
}

/// Durations tried for "approved at once up to …", besides the maximum.
const LADDER_SECS: [u64; 9] = [
    300,
    900,
    1_800,
    3_600,
    2 * 3_600,
    4 * 3_600,
    8 * 3_600,
    12 * 3_600,
    24 * 3_600,
];

/// One thing a person may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The entitlement (`target/name`) or profile name.
    pub name: String,
    pub profile: bool,
    pub description: String,
    pub risk: Risk,
    pub default_duration: GrantDuration,
    pub max_duration: GrantDuration,
    /// Distinct approvals needed when it is not approved at once.
    pub approvals_required: u32,
    /// Approved at once (by an `AutoApprove` policy) for durations up to this.
    pub auto_up_to: Option<GrantDuration>,
    /// Policy permits asking only with an open ticket.
    pub needs_ticket: bool,
    /// Policy permits break-glass for it.
    pub break_glass: bool,
    /// The target issues SSH certificates: the request needs the person's public key.
    pub needs_public_key: bool,
}

impl Engine {
    /// What `caller` may ask for now, by name (entitlements, then profiles).
    pub async fn catalogue(&self, caller: &Caller) -> Result<Vec<Offer>> {
        let now = self.clock.now();
        let ticket = TicketFacts {
            reference: "TICKET-1".into(),
            status: Some("open".into()),
            assignee: Some(caller.principal.id.to_string()),
            priority: None,
            source: None,
            verified: true,
        };
        let reviewed = self.reviewed(&caller.principal.id).await?;
        let mut out = Vec::new();
        let resources = self
            .catalog
            .entitlements()
            .map(Resource::Entitlement)
            .chain(self.catalog.profiles().map(Resource::Profile));
        for resource in resources {
            let base = self.context(
                Some(caller),
                &caller.principal.id,
                resource.default_duration(),
                None,
                now,
            );
            let at = |ctx: &DecisionContext, action: Action| -> Result<bool> {
                let d = self.decide(action, &caller.principal, resource, ctx)?;
                Ok(self
                    .with_reviews(action, &caller.principal.id, &reviewed, resource, d)
                    .allowed)
            };
            let (ctx, needs_ticket) = if at(&base, Action::Request)? {
                (base, false)
            } else {
                let mut with = base.clone();
                with.ticket = Some(ticket.clone());
                if !at(&with, Action::Request)? {
                    continue;
                }
                (with, true)
            };
            let auto_up_to = self.auto_up_to(caller, resource, &ctx)?;
            let mut bg = ctx.clone();
            bg.break_glass = true;
            let break_glass = at(&bg, Action::BreakGlass)?;
            let (profile, description, risk, needs_public_key) = match resource {
                Resource::Entitlement(e) => (
                    false,
                    e.description.clone(),
                    e.risk,
                    self.catalog
                        .target(&e.target)
                        .is_some_and(|t| t.connector == "ssh"),
                ),
                Resource::Profile(p) => (
                    true,
                    p.description.clone(),
                    p.risk,
                    p.entitlements.iter().any(|id| {
                        self.catalog
                            .entitlement(id)
                            .and_then(|e| self.catalog.target(&e.target))
                            .is_some_and(|t| t.connector == "ssh")
                    }),
                ),
            };
            out.push(Offer {
                name: resource.name().to_owned(),
                profile,
                description,
                risk,
                default_duration: resource.default_duration(),
                max_duration: resource.max_duration(),
                approvals_required: resource.approvals_required(),
                auto_up_to,
                needs_ticket,
                break_glass,
                needs_public_key,
            });
        }
        Ok(out)
    }

    /// How policy judges `principal` on `access` now, action by action, at its default duration
    /// with no ticket and no second factor (`Approve`: of a request by someone else, a person in
    /// no group): an administrator's view of the policy set in force. Not `Exchange`, which is
    /// judged on a presented token's facts.
    pub async fn explain(
        &self,
        caller: &Caller,
        principal: &str,
        access: &str,
    ) -> Result<Vec<Explained>> {
        self.require_admin_of_all(caller, crate::ErrorCode::ExplainNotAllowed)?;
        let resource = self.resource_named(access).ok_or_else(|| {
            Error::invalid(
                crate::ErrorCode::ExplainAccessUnknown,
                "access",
                format!("no entitlement or profile named {:?}", access.trim()),
            )
        })?;
        let who = PrincipalId::new(principal.trim()).map_err(|m| {
            Error::invalid(crate::ErrorCode::ExplainPrincipalInvalid, "principal", m)
        })?;
        let p = self.principal(&who).await?.ok_or_else(|| {
            Error::invalid(
                crate::ErrorCode::ExplainPrincipalUnknown,
                "principal",
                format!("no identity named {who}"),
            )
        })?;
        let now = self.clock.now();
        let reviewed = self.reviewed(&p.id).await?;
        let mut out = Vec::new();
        // Exchange is judged on a presented token's facts, which an explanation has none of.
        for action in Action::ALL.into_iter().filter(|a| *a != Action::Exchange) {
            let mut ctx = self.context(None, &p.id, resource.default_duration(), None, now);
            ctx.break_glass = action == Action::BreakGlass;
            if action == Action::Approve {
                // A request by someone else, a person in no group.
                ctx.requester = Some(crate::catalog::Principal {
                    id: PrincipalId::new("someone-else")
                        .map_err(|m| Error::internal(m.to_string()))?,
                    kind: crate::catalog::PrincipalKind::Human,
                    owner: None,
                    groups: Vec::new(),
                    status: crate::catalog::PrincipalStatus::Active,
                    manager: None,
                    department: None,
                });
            }
            out.push(Explained {
                action,
                decision: self.with_reviews(
                    action,
                    &p.id,
                    &reviewed,
                    resource,
                    self.decide(action, &p, resource, &ctx)?,
                ),
            });
        }
        Ok(out)
    }

    /// The longest duration of the ladder (and the maximum) that `AutoApprove` lets through.
    fn auto_up_to(
        &self,
        caller: &Caller,
        resource: Resource<'_>,
        ctx: &DecisionContext,
    ) -> Result<Option<GrantDuration>> {
        let max = resource.max_duration().as_secs();
        let mut ladder: Vec<u64> = LADDER_SECS.iter().copied().filter(|s| *s < max).collect();
        ladder.push(max);
        let approves = |secs: u64| -> Result<bool> {
            let mut c = ctx.clone();
            c.duration_secs = secs;
            Ok(self
                .decide(Action::AutoApprove, &caller.principal, resource, &c)?
                .allowed)
        };
        if !approves(ladder[0])? {
            return Ok(None);
        }
        // The first rung approves; find the last that does.
        let (mut lo, mut hi) = (0, ladder.len() - 1);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if approves(ladder[mid])? {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(Some(GrantDuration::from_secs(ladder[lo])))
    }
}
