//! Token exchange (RFC 8693): a workload proves its identity with a verified token and gets an
//! entitlement with no human in the loop, if `Exchange` permits it. Each exchange is a request
//! and a grant like any other (audited, listed, revocable), and the token's id is remembered
//! until it expires so that the same token is never exchanged twice.
//!
//! Delegation: an agent acting for someone presents its own token too. Both the subject and
//! the agent must be permitted (the grant never exceeds what either may have), and the grant
//! ends no later than either token. Grants of a `token` target are active in the same commit
//! (the server signs the token); others are provisioned by the workers as usual.
//!
//! Holding someone's token is not consent: the subject's token must name the agent in `may_act`
//! or have been issued for delegation (its issuer's `delegation_audience`), and a delegation token
//! is never exchanged without the agent's own token beside it, so the grant always records who
//! acted. A token that already carries `act` is a delegation result, never a subject or actor.

use tracing::{info, instrument, warn};

use super::{Engine, retry_on_conflict};
use crate::{
    Error, GrantDuration, Result, Timestamp,
    catalog::{MIN_DURATION, Principal},
    grant::{Grant, GrantCommand},
    id::{EntitlementId, PrincipalId, RequestId},
    identity::TokenUse,
    job::JobAction,
    lifecycle::Event,
    policy::{Action, Resource, WorkloadToken},
    request::{ApprovalVia, Request, RequestState},
    store::{Commit, JobChange},
};

/// The connector kind whose grants are Hourglass-signed tokens.
pub const TOKEN_CONNECTOR: &str = "token";

/// One verified identity token, as the engine needs it.
#[derive(Debug, Clone)]
pub struct PresentedToken {
    /// The principal its issuer's mapping named (already checked to exist and be active).
    pub principal: Principal,
    pub facts: WorkloadToken,
    /// The issuer's URL and the token's id, remembered against replay.
    pub issuer_url: String,
    pub jti: String,
    pub expires_at: Timestamp,
    /// How the token stands on delegation.
    pub delegation: DelegationClaims,
}

/// What a token says about delegation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DelegationClaims {
    /// It carries `act`: someone already acts through it.
    pub carries_act: bool,
    /// Its `may_act`: the subject (`sub`) and, when named, issuer of whoever may act for it.
    pub may_act: Option<(String, Option<String>)>,
    /// It was issued for delegation (an audience of its issuer's `delegation_audience`).
    pub for_delegation: bool,
}

/// Whether the subject's token consents to `actor` acting for it: `may_act` names the actor's
/// token (its subject, and its issuer where the claim gives one), or the token was issued for
/// delegation.
fn consents(subject: &PresentedToken, actor: &PresentedToken) -> bool {
    subject.delegation.for_delegation
        || subject
            .delegation
            .may_act
            .as_ref()
            .is_some_and(|(sub, iss)| {
                *sub == actor.facts.subject && iss.as_ref().is_none_or(|i| *i == actor.issuer_url)
            })
}

/// The delegation rules, before anything is read or written.
fn check_delegation(x: &ExchangeRequest) -> Result<()> {
    for (t, which) in std::iter::once((&x.subject, "subject_token"))
        .chain(x.actor.as_ref().map(|a| (a, "actor_token")))
    {
        if t.delegation.carries_act {
            return Err(Error::forbidden(
                crate::ErrorCode::TokenAlreadyDelegated,
                format!("{which} carries act: a delegated token is not exchanged again"),
            ));
        }
    }
    match &x.actor {
        Some(a) if !consents(&x.subject, a) => Err(Error::forbidden(
            crate::ErrorCode::TokenDelegationNotConsented,
            format!(
                "the subject's token does not consent to {} acting for {}: it needs may_act naming the agent, or an audience issued for delegation",
                a.principal.id, x.subject.principal.id
            ),
        )),
        None if x.subject.delegation.for_delegation => Err(Error::forbidden(
            crate::ErrorCode::TokenDelegationNeedsActor,
            "this token was issued for delegation: it is exchanged only with the acting agent's own token (actor_token)",
        )),
        _ => Ok(()),
    }
}

/// What a workload asks for.
#[derive(Debug, Clone)]
pub struct ExchangeRequest {
    pub subject: PresentedToken,
    /// The agent acting for the subject, if any.
    pub actor: Option<PresentedToken>,
    pub entitlement: String,
    /// `None` takes the entitlement's default.
    pub duration: Option<String>,
    pub ticket: Option<String>,
    pub reason: Option<String>,
    pub source_ip: Option<String>,
}

/// An exchange that went through.
#[derive(Debug, Clone)]
pub struct Exchanged {
    pub request: Request,
    pub grant: Grant,
    /// True when the grant is a signed token (active now); false when a connector provisions
    /// it (the caller waits for it to become active).
    pub signed_token: bool,
}

impl Engine {
    /// Judges a stored exchange again (at activation, at a policy reload) on the token facts
    /// it was made with: the subject with the agent in context, and the agent on its own
    /// token. An agent that is gone or inactive fails it.
    pub(super) async fn still_exchangeable(
        &self,
        req: &Request,
        facts: &crate::request::ExchangeFacts,
        subject: &Principal,
        resource: Resource<'_>,
        mut ctx: crate::policy::DecisionContext,
    ) -> Result<bool> {
        let actor = match req.actors.first() {
            None => None,
            Some(a) => match self.principal(a).await? {
                Some(p) if p.status == crate::catalog::PrincipalStatus::Active => Some(p),
                _ => return Ok(false),
            },
        };
        ctx.token = Some(facts.token.clone());
        ctx.actor.clone_from(&actor);
        if !self
            .decide(Action::Exchange, subject, resource, &ctx)?
            .allowed
        {
            return Ok(false);
        }
        match (actor, &facts.actor_token) {
            (Some(a), Some(t)) => {
                ctx.token = Some(t.clone());
                ctx.actor = None;
                Ok(self.decide(Action::Exchange, &a, resource, &ctx)?.allowed)
            }
            (None, None) => Ok(true),
            _ => Ok(false),
        }
    }

    /// Audits a refused identity token (bad signature, audience, issuer, expiry, algorithm,
    /// replay, delegation without consent…): who presented what, and why it was refused, never
    /// the token itself; within the refusal budget ([`Engine::record_refusal`]).
    pub async fn record_token_refusal(
        &self,
        code: &str,
        reason: &str,
        issuer: Option<&str>,
        source_ip: Option<&str>,
    ) -> Result<super::Charge> {
        let ev = Event::TokenRefused {
            code: code.to_owned(),
            reason: reason.to_owned(),
            issuer: issuer.map(str::to_owned),
        }
        .record(self.clock.now());
        self.record_refusal(ev, source_ip).await
    }

    /// Exchanges a verified identity token for an entitlement.
    #[instrument(skip_all, fields(principal = %x.subject.principal.id, entitlement = %x.entitlement))]
    pub async fn exchange(&self, x: ExchangeRequest) -> Result<Exchanged> {
        check_delegation(&x)?;
        let now = self.clock.now();
        let ent = EntitlementId::new(x.entitlement.trim())
            .ok()
            .and_then(|id| self.catalog.entitlement(&id))
            .ok_or_else(|| {
                Error::invalid(
                    crate::ErrorCode::ExchangeEntitlementUnknown,
                    "resource",
                    format!("no entitlement named {:?}", x.entitlement),
                )
            })?;
        let resource = Resource::Entitlement(ent);
        let duration = match x.duration.as_deref().map(str::trim) {
            None | Some("") => ent.default_duration,
            Some(t) => t.parse::<GrantDuration>().map_err(|e| {
                Error::invalid(crate::ErrorCode::ExchangeDurationInvalid, "duration", e)
            })?,
        };
        if duration > ent.max_duration {
            return Err(Error::invalid(
                crate::ErrorCode::ExchangeDurationExceedsMax,
                "duration",
                format!(
                    "{duration} exceeds the maximum of {} for {}",
                    ent.max_duration, ent.id
                ),
            ));
        }
        // With delegation the grant ends no later than either token.
        let mut end = now.plus(duration);
        if let Some(a) = &x.actor {
            end = end.min(a.expires_at).min(x.subject.expires_at);
        }
        let granted =
            GrantDuration::from_secs(u64::try_from(end.millis_since(now) / 1000).unwrap_or(0));
        if granted < MIN_DURATION {
            return Err(Error::invalid(
                crate::ErrorCode::ExchangeTokensExpireTooSoon,
                "actor_token",
                format!("the presented tokens expire in under {MIN_DURATION}; get fresh ones"),
            ));
        }
        let reason = x
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map_or_else(
                || {
                    format!(
                        "token exchange by {} ({})",
                        x.subject.principal.id, x.subject.facts.issuer
                    )
                },
                str::to_owned,
            );
        crate::text::check(&reason, super::requests::MAX_REASON)
            .map_err(|m| Error::invalid(crate::ErrorCode::ExchangeReasonInvalid, "reason", m))?;
        let ticket = x
            .ticket
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        let subject = &x.subject.principal;
        // A machine has nobody to wait for: a ticket that cannot be checked refuses the exchange.
        let checked = self.check_ticket(subject, ticket.as_deref(), false).await?;
        if checked.unavailable.is_some() {
            return Err(Error::upstream(
                crate::ErrorCode::TicketUnavailable,
                "the ticket source did not answer, so the ticket cannot be checked; try again later",
            ));
        }
        let ticket_facts = checked.facts;
        let mut ctx = self.context(None, &subject.id, granted, ticket_facts.as_ref(), now);
        ctx.source_ip.clone_from(&x.source_ip);
        ctx.token = Some(x.subject.facts.clone());
        ctx.actor = x.actor.as_ref().map(|a| a.principal.clone());
        let decision = self.decide(Action::Exchange, subject, resource, &ctx)?;
        let refused = |policy_ids: Vec<String>, policy_hash: &str, act: Option<PrincipalId>| {
            Event::ExchangeRefused {
                by: subject.id.clone(),
                entitlement: ent.id.to_string(),
                policy_ids,
                policy_hash: policy_hash.to_owned(),
                act,
            }
            .record(now)
        };
        if !decision.allowed {
            warn!(policy_ids = ?decision.policy_ids, "exchange refused for the subject");
            self.record_refusal(
                refused(decision.policy_ids.clone(), &decision.policy_hash, None),
                x.source_ip.as_deref(),
            )
            .await?;
            return Err(Error::forbidden(
                crate::ErrorCode::ExchangeNotAllowed,
                format!(
                    "{} may not get {} by token exchange (policy)",
                    subject.id, ent.id
                ),
            ));
        }
        // The intersection: the agent must be allowed this too, judged on its own token.
        let mut actor_ids = Vec::new();
        let mut actor_policies = Vec::new();
        if let Some(a) = &x.actor {
            let mut actx = self.context(None, &a.principal.id, granted, ticket_facts.as_ref(), now);
            actx.source_ip.clone_from(&x.source_ip);
            actx.token = Some(a.facts.clone());
            let d = self.decide(Action::Exchange, &a.principal, resource, &actx)?;
            if !d.allowed {
                warn!(actor = %a.principal.id, policy_ids = ?d.policy_ids, "exchange refused for the acting agent");
                self.record_refusal(
                    refused(
                        d.policy_ids.clone(),
                        &d.policy_hash,
                        Some(a.principal.id.clone()),
                    ),
                    x.source_ip.as_deref(),
                )
                .await?;
                return Err(Error::forbidden(
                    crate::ErrorCode::ExchangeActorNotAllowed,
                    format!(
                        "{} may not get {} (policy), so it cannot get it for {}",
                        a.principal.id, ent.id, subject.id
                    ),
                ));
            }
            actor_policies = d.policy_ids;
            actor_ids.push(a.principal.id.clone());
        }
        let signed_token = self
            .catalog
            .target(&ent.target)
            .is_some_and(|t| t.connector == TOKEN_CONNECTOR);
        let out = retry_on_conflict(|| async {
            for t in std::iter::once(&x.subject).chain(x.actor.as_ref()) {
                if self.store.is_token_used(&t.issuer_url, &t.jti, now).await? {
                    return Err(Error::forbidden(
                        crate::ErrorCode::TokenReplayed,
                        format!("this {} token (jti {}) was already exchanged; get a fresh one", t.facts.issuer, t.jti),
                    ));
                }
            }
            let mut commit = Commit::default();
            // Like any request: the quotas, and no second grant in a target stacked on a live one.
            // A signed token is the exception: each exchange is its own short token (two CI
            // jobs of one pipeline each hold one), and nothing is created in a target.
            if signed_token {
                self.check_quotas(subject, ent, now).await?;
            } else {
                let superseded = self.admit(subject, resource, (now, end), false, now).await?;
                Self::cancel_into(
                    &superseded,
                    subject.id.as_str(),
                    "superseded by a token exchange",
                    now,
                    &mut commit,
                )?;
            }
            let request = Request {
                id: RequestId::generate(now)?,
                requester: subject.id.clone(),
                access: resource.access_id(),
                duration: granted,
                reason: reason.clone(),
                ticket: ticket.clone(),
                state: RequestState::Pending,
                state_reason: None,
                created_at: now,
                updated_at: now,
                decide_by: now,
                policy_hash: decision.policy_hash.clone(),
                grant_id: None,
                public_key: None,
                break_glass: false,
                mfa: false,
                source_ip: x.source_ip.clone(),
                starts_at: None,
                extends: None,
                actors: actor_ids.clone(),
                exchange: Some(crate::request::ExchangeFacts {
                    token: x.subject.facts.clone(),
                    actor_token: x.actor.as_ref().map(|a| a.facts.clone()),
                }),
                ticket_facts: ticket_facts.clone(),
                task: None,
                version: 0,
            };
            commit.audit.push(
                Event::TokenExchanged {
                    by: subject.id.clone(),
                    request: request.id.clone(),
                    entitlement: ent.id.to_string(),
                    issuer: x.subject.facts.issuer.clone(),
                    subject: x.subject.facts.subject.clone(),
                    jti: x.subject.jti.clone(),
                    duration: granted,
                    policy_ids: decision.policy_ids.clone(),
                    policy_hash: decision.policy_hash.clone(),
                    claims: x.subject.facts.claims.clone(),
                    act: actor_ids.clone(),
                    actor: x
                        .actor
                        .as_ref()
                        .map(|a| (a.facts.issuer.clone(), a.jti.clone(), actor_policies.clone())),
                    ticket: ticket.clone(),
                }
                .record(now),
            );
            let approved = Self::approve_without_human(
                &request,
                "policy",
                ApprovalVia::Policy,
                "exchange",
                &decision,
                &mut commit,
                now,
            )?;
            let fulfilled = self.open_grant(approved, resource, now, &mut commit)?;
            let mut grant = commit
                .grants
                .pop()
                .ok_or_else(|| Error::internal("an exchange opened no grant"))?;
            if signed_token {
                // Nothing to create in a target: active now, signed by the server.
                commit.jobs.retain(|j| !matches!(j, JobChange::Schedule { grant_id, action: JobAction::Provision, .. } if *grant_id == grant.id));
                let (active, ev) = grant.apply(
                    GrantCommand::Activate {
                        handle: None,
                        credential_fingerprint: None,
                    },
                    now,
                )?;
                commit.audit.push(ev.record(now).with("credential", "signed access token"));
                grant = active;
            }
            commit.grants.push(grant.clone());
            for t in std::iter::once(&x.subject).chain(x.actor.as_ref()) {
                commit.token_uses.push((
                    TokenUse {
                        issuer: t.issuer_url.clone(),
                        jti: t.jti.clone(),
                        expires_at: t.expires_at,
                    },
                    now,
                ));
            }
            self.commit(commit).await?;
            Ok(Exchanged {
                request: fulfilled,
                grant,
                signed_token,
            })
        })
        .await?;
        if out.signed_token {
            self.wake.deadlines_changed();
        } else {
            self.wake.jobs_changed();
        }
        info!(grant_id = %out.grant.id, signed = out.signed_token, "token exchanged");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        catalog::{PrincipalKind, PrincipalStatus},
        id::PrincipalId,
    };

    fn token(name: &str, sub: &str, delegation: DelegationClaims) -> PresentedToken {
        PresentedToken {
            principal: Principal {
                id: PrincipalId::new(name).unwrap(),
                kind: PrincipalKind::Human,
                owner: None,
                groups: Vec::new(),
                status: PrincipalStatus::Active,
                manager: None,
                department: None,
            },
            facts: WorkloadToken {
                issuer: "idp".into(),
                subject: sub.into(),
                claims: Default::default(),
            },
            issuer_url: "https://idp".into(),
            jti: format!("{sub}-1"),
            expires_at: Timestamp::from_unix_millis(0),
            delegation,
        }
    }

    fn exchange(subject: DelegationClaims, actor: Option<DelegationClaims>) -> ExchangeRequest {
        ExchangeRequest {
            subject: token("alice", "alice", subject),
            actor: actor.map(|a| token("support-bot", "bot", a)),
            entitlement: "demo/read-logs".into(),
            duration: None,
            ticket: None,
            reason: None,
            source_ip: None,
        }
    }

    fn code(x: &ExchangeRequest) -> Option<&'static str> {
        check_delegation(x).err().map(|e| e.code().as_str())
    }

    #[test]
    fn delegation_needs_the_subjects_consent_to_that_actor() {
        let none = DelegationClaims::default();
        let may = |sub: &str, iss: Option<&str>| DelegationClaims {
            may_act: Some((sub.into(), iss.map(str::to_owned))),
            ..DelegationClaims::default()
        };
        // Alone, an ordinary token is the subject's own business.
        assert_eq!(code(&exchange(none.clone(), None)), None);
        // Holding it is not consent.
        assert_eq!(
            code(&exchange(none.clone(), Some(none.clone()))),
            Some("token.delegation_not_consented")
        );
        assert_eq!(code(&exchange(may("bot", None), Some(none.clone()))), None);
        assert_eq!(
            code(&exchange(
                may("bot", Some("https://idp")),
                Some(none.clone())
            )),
            None
        );
        assert_eq!(
            code(&exchange(
                may("bot", Some("https://other")),
                Some(none.clone())
            )),
            Some("token.delegation_not_consented")
        );
        assert_eq!(
            code(&exchange(may("another-agent", None), Some(none.clone()))),
            Some("token.delegation_not_consented")
        );
        let issued = DelegationClaims {
            for_delegation: true,
            ..DelegationClaims::default()
        };
        assert_eq!(code(&exchange(issued.clone(), Some(none.clone()))), None);
        assert_eq!(
            code(&exchange(issued, None)),
            Some("token.delegation_needs_actor")
        );
        let acted = DelegationClaims {
            carries_act: true,
            ..may("bot", None)
        };
        assert_eq!(
            code(&exchange(acted.clone(), Some(none.clone()))),
            Some("token.already_delegated")
        );
        assert_eq!(
            code(&exchange(may("bot", None), Some(acted))),
            Some("token.already_delegated")
        );
    }
}
