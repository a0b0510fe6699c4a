//! What the lifecycle state machines did, and what happened to keys and identities, typed:
//! [`Event`], and the one function that turns it into its audit record.
//! `tests/golden_events.rs` holds those records byte for byte, so chains written by earlier
//! versions keep verifying.

use crate::{
    Timestamp,
    audit::AuditRecord,
    catalog::{PrincipalKind, PrincipalStatus},
    event::EventKind,
    id::{GrantId, KeyId, PrincipalId, RequestId, ReviewId},
    identity::Authority,
    state::{GrantState, RequestState},
};

/// What a lifecycle state machine did ([`crate::request::Request::apply`],
/// [`crate::grant::Grant::apply`], [`crate::review::Review::close`]), or what happened to an
/// API key, typed.
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
    /// An API key was issued (`replaces`: the key a rotation retires).
    KeyCreated {
        key: KeyId,
        actor: String,
        identity: PrincipalId,
        prefix: Option<String>,
        expires_at: Timestamp,
        replaces: Option<KeyId>,
    },
    /// A key was rotated out; it works until `valid_until`.
    KeyRotated {
        key: KeyId,
        actor: String,
        identity: PrincipalId,
        replaced_by: KeyId,
        valid_until: Timestamp,
    },
    /// A key was revoked.
    KeyRevoked {
        key: KeyId,
        actor: String,
        identity: PrincipalId,
        reason: Option<String>,
    },
    /// A token declared in the configuration was recorded as a key at start.
    KeyDeclared {
        key: KeyId,
        identity: PrincipalId,
    },
    /// An identity was suspended: by whom and as what (none: the configuration at start), why,
    /// and for an agent what the kill switch ended (grants revoked, requests cancelled).
    IdentitySuspended {
        identity: PrincipalId,
        actor: String,
        authority: Option<Authority>,
        reason: Option<String>,
        stripped: Option<(usize, usize)>,
    },
    /// A suspended identity was resumed.
    IdentityResumed {
        identity: PrincipalId,
        actor: String,
        authority: Authority,
        reason: Option<String>,
    },
    /// A ticket source reported a ticket's state (`reopened`: a reopening confirmed by a lookup
    /// in the source).
    TicketReported {
        source: String,
        reference: String,
        status: String,
        open: bool,
        updated: Timestamp,
        via: String,
        assignee: Option<String>,
        reopened: bool,
    },
    /// Someone opened a closed ticket's binding again (nothing ended comes back).
    TicketReopened {
        source: String,
        reference: String,
        actor: PrincipalId,
        reason: String,
    },
    /// A ticket closed: what was bound to it ended in the same commit.
    TicketClosed {
        source: String,
        reference: String,
        status: String,
        via: String,
        grants: Vec<GrantId>,
        requests: Vec<RequestId>,
    },
    /// A person signed in; `handle` is the session's public handle (never its id). `issuer` and
    /// `subject`: the identity provider's account, for a single sign-on.
    SessionStarted {
        principal: PrincipalId,
        handle: String,
        via: String,
        mfa: bool,
        expires_at: Timestamp,
        source_ip: Option<String>,
        issuer: Option<String>,
        subject: Option<String>,
    },
    /// A sign-in was refused: who tried, as far as is known (`name`), and why. The refusal
    /// budget adds the source address.
    SessionRefused {
        name: Option<String>,
        code: String,
        reason: String,
        via: Option<String>,
        issuer: Option<String>,
        subject: Option<String>,
    },
    /// A session ended.
    SessionEnded {
        principal: PrincipalId,
        handle: String,
        reason: String,
    },
    /// A workload (`by`, acting for itself or with an agent in `act`) exchanged an identity token
    /// for an entitlement; the subject of the record is the request it made. Never the token:
    /// its issuer, subject, id and the well-known claims.
    TokenExchanged {
        by: PrincipalId,
        request: RequestId,
        entitlement: String,
        issuer: String,
        subject: String,
        jti: String,
        duration: crate::GrantDuration,
        policy_ids: Vec<String>,
        policy_hash: String,
        claims: std::collections::BTreeMap<String, String>,
        act: Vec<PrincipalId>,
        /// The acting agent's token: its issuer, id, and the policies that allowed it.
        actor: Option<(String, String, Vec<String>)>,
        ticket: Option<String>,
    },
    /// A valid identity token asked for what policy refuses: for its subject (`act: None`), or
    /// for the agent acting with it.
    ExchangeRefused {
        by: PrincipalId,
        entitlement: String,
        policy_ids: Vec<String>,
        policy_hash: String,
        act: Option<PrincipalId>,
    },
    /// An identity token was refused (the refusal budget adds the source address).
    TokenRefused {
        code: String,
        reason: String,
        issuer: Option<String>,
    },
    /// An identity was created through the API (by an administrator or, for a workload or
    /// agent, an owner).
    IdentityCreated {
        identity: PrincipalId,
        actor: String,
        kind: PrincipalKind,
        owner: Option<String>,
        groups: Vec<String>,
    },
    /// A person was created at their first single sign-on, with the provider's groups (those
    /// that are not valid names here are dropped and counted).
    IdentityCreatedAtSignIn {
        identity: PrincipalId,
        groups: Vec<String>,
        groups_dropped: usize,
        via: String,
        issuer: String,
        subject: String,
    },
    /// An identity declared in the configuration was recorded at start.
    IdentityDeclared {
        identity: PrincipalId,
        kind: PrincipalKind,
        owner: Option<String>,
    },
    /// An identity declared in the configuration changed there.
    IdentityUpdated {
        identity: PrincipalId,
        kind: PrincipalKind,
        owner: Option<String>,
        groups: Vec<String>,
        status: PrincipalStatus,
    },
    /// A person was bound to the identity-provider account they first signed in with.
    IdentitySignInBound {
        identity: PrincipalId,
        issuer: String,
        subject: String,
    },
    /// An administrator unbound a person from that account (`was`: `issuer#subject`).
    IdentitySignInUnbound {
        identity: PrincipalId,
        actor: String,
        was: String,
    },
    /// Hourglass signed an access token for an active grant at its holder's ask; never the
    /// token itself.
    TokenIssued {
        grant: GrantId,
        actor: String,
        jti: String,
        expires_at: Timestamp,
        audience: Option<String>,
        act: Vec<PrincipalId>,
    },
    /// An identity was offboarded, with what went with it.
    IdentityOffboarded {
        identity: PrincipalId,
        actor: String,
        reason: String,
        grants_revoked: usize,
        keys_revoked: usize,
        requests_cancelled: usize,
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
            Event::KeyCreated { .. } => EventKind::KeyCreated,
            Event::KeyRotated { .. } => EventKind::KeyRotated,
            Event::KeyRevoked { .. } => EventKind::KeyRevoked,
            Event::KeyDeclared { .. } => EventKind::KeyDeclared,
            Event::IdentitySuspended { .. } => EventKind::IdentitySuspended,
            Event::IdentityResumed { .. } => EventKind::IdentityResumed,
            Event::IdentityOffboarded { .. } => EventKind::IdentityOffboarded,
            Event::IdentityCreated { .. } | Event::IdentityCreatedAtSignIn { .. } => {
                EventKind::IdentityCreated
            }
            Event::IdentityDeclared { .. } => EventKind::IdentityDeclared,
            Event::IdentityUpdated { .. } => EventKind::IdentityUpdated,
            Event::IdentitySignInBound { .. } => EventKind::IdentitySignInBound,
            Event::IdentitySignInUnbound { .. } => EventKind::IdentitySignInUnbound,
            Event::TokenIssued { .. } => EventKind::TokenIssued,
            Event::TokenExchanged { .. } => EventKind::TokenExchanged,
            Event::ExchangeRefused { .. } => EventKind::ExchangeRefused,
            Event::TokenRefused { .. } => EventKind::TokenRefused,
            Event::SessionStarted { .. } => EventKind::SessionStarted,
            Event::SessionRefused { .. } => EventKind::SessionRefused,
            Event::SessionEnded { .. } => EventKind::SessionEnded,
            Event::TicketReported { .. } => EventKind::TicketReported,
            Event::TicketReopened { .. } => EventKind::TicketReopened,
            Event::TicketClosed { .. } => EventKind::TicketClosed,
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
            Event::KeyCreated {
                key,
                actor,
                identity,
                prefix,
                expires_at,
                replaces,
            } => {
                let r = AuditRecord::new(at, actor, kind, key.as_str())
                    .with("identity", identity)
                    .with("prefix", prefix.as_deref().unwrap_or(""))
                    .with("expires_at", expires_at);
                match replaces {
                    Some(old) => r.with("replaces", old),
                    None => r,
                }
            }
            Event::KeyRotated {
                key,
                actor,
                identity,
                replaced_by,
                valid_until,
            } => AuditRecord::new(at, actor, kind, key.as_str())
                .with("identity", identity)
                .with("replaced_by", replaced_by)
                .with("valid_until", valid_until),
            Event::KeyRevoked {
                key,
                actor,
                identity,
                reason,
            } => {
                let r = AuditRecord::new(at, actor, kind, key.as_str()).with("identity", identity);
                match reason {
                    Some(why) => r.with("reason", why),
                    None => r,
                }
            }
            Event::KeyDeclared { key, identity } => {
                AuditRecord::new(at, "system", kind, key.as_str()).with("identity", identity)
            }
            Event::IdentitySuspended {
                identity,
                actor,
                authority,
                reason,
                stripped,
            } => {
                let mut r = AuditRecord::new(at, actor, kind, identity.as_str());
                if let Some(a) = authority {
                    r = r.with("authority", a.as_str());
                }
                if let Some(why) = reason {
                    r = r.with("reason", why);
                }
                if let Some((grants, requests)) = stripped {
                    r = r
                        .with("grants_revoked", grants)
                        .with("requests_cancelled", requests);
                }
                r
            }
            Event::IdentityResumed {
                identity,
                actor,
                authority,
                reason,
            } => {
                let r = AuditRecord::new(at, actor, kind, identity.as_str())
                    .with("authority", authority.as_str());
                match reason {
                    Some(why) => r.with("reason", why),
                    None => r,
                }
            }
            Event::IdentityOffboarded {
                identity,
                actor,
                reason,
                grants_revoked,
                keys_revoked,
                requests_cancelled,
            } => AuditRecord::new(at, actor, kind, identity.as_str())
                .with("reason", reason)
                .with("grants_revoked", grants_revoked)
                .with("keys_revoked", keys_revoked)
                .with("requests_cancelled", requests_cancelled),
            Event::IdentityCreated {
                identity,
                actor,
                kind: principal_kind,
                owner,
                groups,
            } => AuditRecord::new(at, actor, kind, identity.as_str())
                .with("kind", principal_kind.as_str())
                .with("owner", owner.as_deref().unwrap_or(""))
                .with("groups", groups.join(",")),
            Event::IdentityCreatedAtSignIn {
                identity,
                groups,
                groups_dropped,
                via,
                issuer,
                subject,
            } => AuditRecord::new(at, "system", kind, identity.as_str())
                .with("kind", PrincipalKind::Human.as_str())
                .with("groups", groups.join(","))
                .with("groups_dropped", groups_dropped)
                .with("via", via)
                .with("issuer", issuer)
                .with("subject", subject),
            Event::IdentityDeclared {
                identity,
                kind: principal_kind,
                owner,
            } => AuditRecord::new(at, "system", kind, identity.as_str())
                .with("kind", principal_kind.as_str())
                .with("owner", owner.as_deref().unwrap_or("")),
            Event::IdentityUpdated {
                identity,
                kind: principal_kind,
                owner,
                groups,
                status,
            } => AuditRecord::new(at, "system", kind, identity.as_str())
                .with("kind", principal_kind.as_str())
                .with("owner", owner.as_deref().unwrap_or(""))
                .with("groups", groups.join(","))
                .with("status", status.as_str()),
            Event::IdentitySignInBound {
                identity,
                issuer,
                subject,
            } => AuditRecord::new(at, "system", kind, identity.as_str())
                .with("issuer", issuer)
                .with("subject", subject),
            Event::IdentitySignInUnbound {
                identity,
                actor,
                was,
            } => AuditRecord::new(at, actor, kind, identity.as_str()).with("was", was),
            Event::TokenIssued {
                grant,
                actor,
                jti,
                expires_at,
                audience,
                act,
            } => {
                let mut r = AuditRecord::new(at, actor, kind, grant.as_str())
                    .with("jti", jti)
                    .with("expires_at", expires_at);
                if let Some(aud) = audience {
                    r = r.with("audience", aud);
                }
                if !act.is_empty() {
                    let names: Vec<&str> = act.iter().map(PrincipalId::as_str).collect();
                    r = r.with("act", names.join(","));
                }
                r
            }
            Event::TokenExchanged {
                by,
                request,
                entitlement,
                issuer,
                subject,
                jti,
                duration,
                policy_ids,
                policy_hash,
                claims,
                act,
                actor,
                ticket,
            } => {
                let mut r = AuditRecord::new(at, by.as_str(), kind, request.as_str())
                    .with("entitlement", entitlement)
                    .with("issuer", issuer)
                    .with("subject", subject)
                    .with("jti", jti)
                    .with("duration", duration)
                    .with("policy_ids", policy_ids.join(","))
                    .with("policy_hash", policy_hash);
                for (k, v) in &claims {
                    r = r.with(&format!("claim.{k}"), v);
                }
                if !act.is_empty() {
                    let names: Vec<String> = act.iter().map(ToString::to_string).collect();
                    r = r.with("act", names.join(","));
                }
                if let Some((issuer, jti, policies)) = actor {
                    r = r
                        .with("actor_issuer", issuer)
                        .with("actor_jti", jti)
                        .with("actor_policy_ids", policies.join(","));
                }
                if let Some(t) = ticket {
                    r = r.with("ticket", t);
                }
                r
            }
            Event::ExchangeRefused {
                by,
                entitlement,
                policy_ids,
                policy_hash,
                act,
            } => {
                let r = AuditRecord::new(at, by.as_str(), kind, entitlement);
                match act {
                    None => r
                        .with("policy_ids", policy_ids.join(","))
                        .with("policy_hash", policy_hash),
                    Some(agent) => r
                        .with("act", agent)
                        .with("actor_policy_ids", policy_ids.join(","))
                        .with("policy_hash", policy_hash),
                }
            }
            Event::TokenRefused {
                code,
                reason,
                issuer,
            } => {
                let r = AuditRecord::new(at, "anonymous", kind, "exchange")
                    .with("code", code)
                    .with("reason", reason);
                match issuer {
                    Some(i) => r.with("issuer", i),
                    None => r,
                }
            }
            Event::SessionStarted {
                principal,
                handle,
                via,
                mfa,
                expires_at,
                source_ip,
                issuer,
                subject,
            } => {
                let mut r = AuditRecord::new(at, principal.as_str(), kind, handle)
                    .with("via", via)
                    .with("mfa", mfa)
                    .with("expires_at", expires_at);
                for (key, value) in [
                    ("source_ip", source_ip),
                    ("issuer", issuer),
                    ("subject", subject),
                ] {
                    if let Some(v) = value {
                        r = r.with(key, v);
                    }
                }
                r
            }
            Event::SessionRefused {
                name,
                code,
                reason,
                via,
                issuer,
                subject,
            } => {
                let who = name.filter(|n| !n.is_empty());
                let mut r =
                    AuditRecord::new(at, "anonymous", kind, who.as_deref().unwrap_or("(unknown)"))
                        .with("code", code)
                        .with("reason", reason);
                for (key, value) in [("via", via), ("issuer", issuer), ("subject", subject)] {
                    if let Some(v) = value {
                        r = r.with(key, v);
                    }
                }
                r
            }
            Event::SessionEnded {
                principal,
                handle,
                reason,
            } => AuditRecord::new(at, principal.as_str(), kind, handle).with("reason", reason),
            Event::TicketReported {
                source,
                reference,
                status,
                open,
                updated,
                via,
                assignee,
                reopened,
            } => {
                let mut r = AuditRecord::new(at, format!("ticket:{source}"), kind, reference)
                    .with("source", &source)
                    .with("status", status)
                    .with("open", open)
                    .with("updated", updated)
                    .with("via", via);
                if let Some(a) = assignee {
                    r = r.with("assignee", a);
                }
                if reopened {
                    r = r.with("reopened", format!("confirmed by a lookup in {source}"));
                }
                r
            }
            Event::TicketReopened {
                source,
                reference,
                actor,
                reason,
            } => AuditRecord::new(at, actor.as_str(), kind, reference)
                .with("source", source)
                .with("reason", reason),
            Event::TicketClosed {
                source,
                reference,
                status,
                via,
                grants,
                requests,
            } => {
                let join = |ids: Vec<String>| ids.join(",");
                AuditRecord::new(at, format!("ticket:{source}"), kind, reference)
                    .with("source", source)
                    .with("status", status)
                    .with("via", via)
                    .with(
                        "grants",
                        join(grants.iter().map(ToString::to_string).collect()),
                    )
                    .with(
                        "requests",
                        join(requests.iter().map(ToString::to_string).collect()),
                    )
            }
        }
    }
}
