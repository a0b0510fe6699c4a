//! Domain values → wire types.

use hourglass_api::{
    self as api, ApprovalView, AuditEventView, GrantView, RequestView, ReviewView,
};
use hourglass_core::{
    catalog::{PrincipalKind, PrincipalStatus},
    engine::RequestDetails,
    grant::{Grant, GrantState},
    id::AccessId,
    request::{Approval, ApprovalVia, Request, RequestState, Verdict},
    review::{Review, ReviewState},
};

/// The wire's name for what was asked for.
pub fn access_kind(a: &AccessId) -> api::AccessKind {
    match a {
        AccessId::Entitlement(_) => api::AccessKind::Entitlement,
        AccessId::Profile(_) => api::AccessKind::Profile,
    }
}

/// The wire's request state (every state mapped: a new one must be named on the wire).
pub fn request_state(s: RequestState) -> api::RequestState {
    match s {
        RequestState::Pending => api::RequestState::Pending,
        RequestState::Approved => api::RequestState::Approved,
        RequestState::Fulfilled => api::RequestState::Fulfilled,
        RequestState::Denied => api::RequestState::Denied,
        RequestState::Cancelled => api::RequestState::Cancelled,
        RequestState::Expired => api::RequestState::Expired,
        RequestState::Failed => api::RequestState::Failed,
    }
}

/// The wire's grant state.
pub fn grant_state(s: GrantState) -> api::GrantState {
    match s {
        GrantState::Provisioning => api::GrantState::Provisioning,
        GrantState::Active => api::GrantState::Active,
        GrantState::Revoking => api::GrantState::Revoking,
        GrantState::Revoked => api::GrantState::Revoked,
        GrantState::Failed => api::GrantState::Failed,
    }
}

pub fn request(r: &Request) -> RequestView {
    RequestView {
        id: r.id.to_string(),
        requester: r.requester.to_string(),
        acting: r.actors.iter().map(ToString::to_string).collect(),
        task: r.task.clone(),
        entitlement: r.access.name().to_owned(),
        kind: access_kind(&r.access),
        duration: r.duration.to_string(),
        reason: r.reason.clone(),
        ticket: r.ticket.clone(),
        state: request_state(r.state),
        state_reason: r.state_reason.clone(),
        created_at: r.created_at.to_string(),
        updated_at: r.updated_at.to_string(),
        decide_by: r.decide_by.to_string(),
        policy_hash: r.policy_hash.clone(),
        grant_id: r.grant_id.as_ref().map(ToString::to_string),
        break_glass: r.break_glass,
        starts_at: r.starts_at.map(|t| t.to_string()),
        extends: r.extends.as_ref().map(ToString::to_string),
        approvals: None,
        approvals_required: None,
        grant: None,
        grants: None,
    }
}

pub fn details(d: &RequestDetails) -> RequestView {
    RequestView {
        approvals: Some(d.approvals.iter().map(approval).collect()),
        approvals_required: Some(d.approvals_required),
        grant: d.grants.first().map(grant),
        grants: Some(d.grants.iter().map(grant).collect()),
        ..request(&d.request)
    }
}

pub fn approval(a: &Approval) -> ApprovalView {
    ApprovalView {
        approver: a.approver.clone(),
        verdict: match a.verdict {
            Verdict::Approve => api::Verdict::Approve,
            Verdict::Deny => api::Verdict::Deny,
        },
        via: match a.via {
            ApprovalVia::Human => api::ApprovalVia::Human,
            ApprovalVia::Policy => api::ApprovalVia::Policy,
            ApprovalVia::BreakGlass => api::ApprovalVia::BreakGlass,
        },
        policy_ids: a.policy_ids.clone(),
        policy_hash: a.policy_hash.clone(),
        comment: a.comment.clone(),
        at: a.at.to_string(),
    }
}

pub fn grant(g: &Grant) -> GrantView {
    GrantView {
        id: g.id.to_string(),
        request_id: g.request_id.to_string(),
        principal: g.principal.to_string(),
        entitlement: g.entitlement.to_string(),
        target: g.target.to_string(),
        state: grant_state(g.state),
        starts_at: g.starts_at.to_string(),
        expires_at: g.expires_at.to_string(),
        activated_at: g.activated_at.map(|t| t.to_string()),
        revoke_due_at: g.revoke_due_at.map(|t| t.to_string()),
        ended_at: g.ended_at.map(|t| t.to_string()),
        end_reason: g.end_reason.clone(),
        credential_issued: g.credential_fingerprint.is_some(),
        credential_fingerprint: g.credential_fingerprint.clone(),
        break_glass: g.break_glass,
    }
}

pub fn reload(r: &hourglass_core::engine::ReloadReport) -> hourglass_api::ReloadView {
    hourglass_api::ReloadView {
        changed: r.old_hash != r.new_hash,
        old_hash: r.old_hash.clone(),
        new_hash: r.new_hash.clone(),
        cancelled_requests: r.cancelled.iter().map(ToString::to_string).collect(),
        revoked_grants: r.revoked.iter().map(ToString::to_string).collect(),
    }
}

pub fn review(r: &Review) -> ReviewView {
    ReviewView {
        id: r.id.to_string(),
        request_id: r.request_id.to_string(),
        grant_id: r.grant_id.to_string(),
        principal: r.principal.to_string(),
        entitlement: r.access.name().to_owned(),
        kind: access_kind(&r.access),
        reason: r.reason.clone(),
        state: match r.state {
            ReviewState::Open => api::ReviewState::Open,
            ReviewState::Closed => api::ReviewState::Closed,
        },
        opened_at: r.opened_at.to_string(),
        closed_at: r.closed_at.map(|t| t.to_string()),
        closed_by: r.closed_by.as_ref().map(ToString::to_string),
        comment: r.comment.clone(),
    }
}

/// An audit event as the API and `audit export` show it.
pub fn audit_event(e: hourglass_core::audit::AuditEvent) -> AuditEventView {
    AuditEventView {
        seq: e.seq,
        at: e.record.at.to_string(),
        actor: e.record.actor,
        action: e.record.action,
        subject: e.record.subject,
        details: e.record.details,
        prev_hash: e.prev_hash,
        hash: e.hash,
    }
}

/// Whole days from `from` to `now`.
fn days(from: hourglass_core::Timestamp, now: hourglass_core::Timestamp) -> u64 {
    u64::try_from(now.millis_since(from) / 86_400_000).unwrap_or(0)
}

pub fn key(
    k: &hourglass_core::identity::ApiKey,
    now: hourglass_core::Timestamp,
) -> hourglass_api::KeyView {
    hourglass_api::KeyView {
        id: k.id.to_string(),
        identity: k.principal.to_string(),
        prefix: k.prefix.clone(),
        origin: k.origin.as_str().to_owned(),
        state: k.state_at(now).to_owned(),
        created_at: k.created_at.to_string(),
        expires_at: k.expires_at.map(|t| t.to_string()),
        revoked_at: k.revoked_at.map(|t| t.to_string()),
        last_used_at: k.last_used_at.map(|t| t.to_string()),
        replaced_by: k.replaced_by.as_ref().map(ToString::to_string),
        age_days: days(k.created_at, now),
    }
}

pub fn identity(
    i: &hourglass_core::identity::Identity,
    keys: &[hourglass_core::identity::ApiKey],
    grants: &[Grant],
    owner_status: Option<hourglass_core::catalog::PrincipalStatus>,
    now: hourglass_core::Timestamp,
) -> hourglass_api::IdentityView {
    let p = &i.principal;
    hourglass_api::IdentityView {
        name: p.id.to_string(),
        kind: match p.kind {
            PrincipalKind::Human => api::PrincipalKind::Human,
            PrincipalKind::Workload => api::PrincipalKind::Workload,
            PrincipalKind::Agent => api::PrincipalKind::Agent,
        },
        owner: p.owner.clone(),
        groups: p.groups.clone(),
        status: match p.status {
            PrincipalStatus::Active => api::PrincipalStatus::Active,
            PrincipalStatus::Suspended => api::PrincipalStatus::Suspended,
            PrincipalStatus::Offboarded => api::PrincipalStatus::Offboarded,
        },
        status_reason: i.status_reason.clone(),
        origin: i.origin.as_str().to_owned(),
        created_at: i.created_at.to_string(),
        last_seen_at: i.last_seen_at.map(|t| t.to_string()),
        keys: keys.iter().map(|k| key(k, now)).collect(),
        grants: grants.iter().map(|g| g.id.to_string()).collect(),
        owner_status: owner_status.map(|s| s.as_str().to_owned()),
    }
}

pub fn inventory(
    e: &hourglass_core::engine::InventoryEntry,
    now: hourglass_core::Timestamp,
) -> hourglass_api::IdentityView {
    identity(&e.identity, &e.keys, &e.live_grants, e.owner_status, now)
}

/// What a caller may ask for, and what asking would do.
pub fn offer(o: hourglass_core::engine::Offer) -> hourglass_api::OfferView {
    let outcome = if o.needs_ticket {
        "needs_ticket"
    } else if o.auto_up_to.is_some() {
        "at_once"
    } else {
        "needs_approval"
    };
    hourglass_api::OfferView {
        name: o.name,
        kind: if o.profile { "profile" } else { "entitlement" }.to_owned(),
        description: o.description,
        risk: o.risk.as_str().to_owned(),
        default_duration: o.default_duration.to_string(),
        max_duration: o.max_duration.to_string(),
        outcome: outcome.to_owned(),
        auto_up_to: o.auto_up_to.map(|d| d.to_string()),
        approvals_required: o.approvals_required,
        break_glass: o.break_glass,
        needs_public_key: o.needs_public_key,
    }
}

/// The answer of "why was anyone elevated", for the wire.
pub fn why(a: &hourglass_core::engine::WhyAnswer) -> hourglass_api::WhyView {
    hourglass_api::WhyView {
        head_seq: a.head_seq,
        head_hash: a.head_hash.clone(),
        elevated: a
            .elevations
            .iter()
            .map(|e| {
                let g = &e.grant;
                hourglass_api::ElevationView {
                    grant_id: g.id.to_string(),
                    principal: g.principal.to_string(),
                    entitlement: g.entitlement.to_string(),
                    target: g.target.to_string(),
                    request_id: g.request_id.to_string(),
                    acting: e
                        .request
                        .iter()
                        .flat_map(|r| r.actors.iter().map(ToString::to_string))
                        .collect(),
                    reason: e
                        .request
                        .as_ref()
                        .map(|r| r.reason.clone())
                        .unwrap_or_default(),
                    ticket: e.request.as_ref().and_then(|r| r.ticket.clone()),
                    break_glass: g.break_glass,
                    active_from: g.activated_at.map(|t| t.to_string()).unwrap_or_default(),
                    active_until: g.ended_at.map(|t| t.to_string()),
                    end_reason: g.end_reason.clone(),
                    story: e
                        .story
                        .iter()
                        .map(|ev| hourglass_api::StoryLineView {
                            seq: ev.seq,
                            at: ev.record.at.to_string(),
                            action: ev.record.action.clone(),
                            actor: ev.record.actor.clone(),
                            subject: ev.record.subject.clone(),
                            details: ev.record.details.clone(),
                        })
                        .collect(),
                }
            })
            .collect(),
    }
}

/// An access review as the API shows it.
pub fn campaign(
    c: &hourglass_core::campaign::Campaign,
    p: Option<&hourglass_core::campaign::Progress>,
) -> api::CampaignView {
    use hourglass_core::campaign::{CampaignState, DefaultAction};
    api::CampaignView {
        id: c.id.to_string(),
        name: c.name.clone(),
        scope: campaign_scope(c.scope),
        reviewers: c.reviewers.to_string(),
        default_action: match c.default_action {
            DefaultAction::Keep => api::DefaultAction::Keep,
            DefaultAction::Remove => api::DefaultAction::Remove,
        },
        state: match c.state {
            CampaignState::Open => api::CampaignState::Open,
            CampaignState::Closed => api::CampaignState::Closed,
        },
        created_by: c.created_by.clone(),
        created_at: c.created_at.to_string(),
        deadline: c.deadline.to_string(),
        remind_at: c.remind_at.map(|t| t.to_string()),
        closed_at: c.closed_at.map(|t| t.to_string()),
        progress: p.map(|p| api::CampaignProgress {
            total: p.total,
            decided: p.decided,
            keep: p.keep,
            remove: p.remove,
            convert: p.convert,
            by_default: p.by_default,
            work_pending: p.work_pending,
            work_failed: p.work_failed,
        }),
    }
}

fn campaign_scope(s: hourglass_core::campaign::CampaignScope) -> api::CampaignScope {
    use hourglass_core::campaign::CampaignScope;
    match s {
        CampaignScope::Eligibility => api::CampaignScope::Eligibility,
        CampaignScope::Standing => api::CampaignScope::Standing,
        CampaignScope::Identities => api::CampaignScope::Identities,
    }
}

/// The wire decision in the engine's terms.
pub fn item_decision(d: api::ItemDecision) -> hourglass_core::campaign::ItemDecision {
    use hourglass_core::campaign::ItemDecision;
    match d {
        api::ItemDecision::Keep => ItemDecision::Keep,
        api::ItemDecision::Remove => ItemDecision::Remove,
        api::ItemDecision::Convert => ItemDecision::Convert,
    }
}

/// One item of an access review as the API shows it.
pub fn campaign_item(i: &hourglass_core::campaign::CampaignItem) -> api::CampaignItemView {
    use hourglass_core::campaign::{ItemDecision, Work};
    api::CampaignItemView {
        id: i.id.to_string(),
        campaign: i.campaign.to_string(),
        kind: campaign_scope(i.kind),
        principal: i.principal.as_ref().map(ToString::to_string),
        access: i.access.clone(),
        target: i.target.clone(),
        holder: i.holder.clone(),
        privilege: i.privilege.clone(),
        reviewer: i.reviewer.to_string(),
        decision: i.decision.map(|d| match d {
            ItemDecision::Keep => api::ItemDecision::Keep,
            ItemDecision::Remove => api::ItemDecision::Remove,
            ItemDecision::Convert => api::ItemDecision::Convert,
        }),
        decided_by: i.decided_by.clone(),
        decided_at: i.decided_at.map(|t| t.to_string()),
        note: i.note.clone(),
        work: match i.work {
            Work::None => api::ItemWork::None,
            Work::Pending => api::ItemWork::Pending,
            Work::Done => api::ItemWork::Done,
            Work::Failed => api::ItemWork::Failed,
        },
        attempts: i.attempts,
        last_error: i.last_error.clone(),
    }
}
