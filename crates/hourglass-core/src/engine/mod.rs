//! The engine: the use cases of Hourglass, written against the ports.
//!
//! Each use case reads what it needs, runs the pure state machines, and hands the resulting
//! rows, job changes and audit records to the store as one [`Commit`]. If a concurrent writer
//! got there first the commit fails as a whole with `StoreConflict`, and the use case starts
//! again from fresh reads (a few times, then it reports the conflict). Nothing here calls a
//! connector except the job execution in [`jobs`], which only workers run.

mod admission;
mod agents;
mod campaigns;
mod catalogue;
mod credentials;
mod directory;
mod exchange;
mod extend;
mod hygiene;
mod identities;
mod inbox;
mod jobs;
mod keys;
mod notify;
mod profiles;
mod reads;
mod reconcile;
mod refusals;
mod reload;
mod requests;
mod restore;
mod reviews;
mod sessions;
mod submit;
mod tickets;
mod why;

use std::{
    collections::BTreeMap,
    sync::{Arc, PoisonError, RwLock},
};

pub use crate::directory::{DirectorySettings, Leave};
pub use agents::{Explanation, TOOLS, ToolCall, ToolOutcome};
pub use campaigns::{CampaignStatus, DEADLINE, MAX_ITEMS, NewCampaign, ScheduledCampaign};
pub use catalogue::{Explained, Offer};
pub use directory::{DirectoryWrite, members_of};
pub use exchange::{DelegationClaims, ExchangeRequest, Exchanged, PresentedToken, TOKEN_CONNECTOR};
pub use hygiene::Finding;
pub use identities::{Declared, InventoryEntry, KeyRefused, NewIdentity, Offboarded};
pub use inbox::InboxEntry;
pub use jobs::{JobOutcome, JobReport};
pub use keys::{IssuedKey, KeyPolicy, same_digest, secret_hash};
pub use notify::{Delivery, DeliveryReport};
pub use reads::{AuditFound, AuditSearch, Change};
pub use reconcile::{Drift, DriftKind, ReconcileReport, Standing, TargetStanding};
pub use refusals::{
    AuthRefusal, AuthVia, Charge, GLOBAL_PER_MINUTE, PER_SOURCE_PER_MINUTE, seconds_to_next_minute,
};
pub use reload::ReloadReport;
pub use requests::RequestDetails;
pub use restore::{RESTORE_ACTOR, RestoreReport};
pub use sessions::{BearerToken, SignIn, SignInAttempt, SignInOutcome, csrf_token, is_csrf_token};
pub use submit::NewRequest;
pub use tickets::{TicketClosed, TicketPoll, TicketReport};
pub use why::{Elevation, MAX_ELEVATIONS, MAX_EXPORT, WhyAnswer, WhyQuestion, Window, Windows};

use crate::{
    Clock, Error, GrantDuration, Result, Timestamp,
    backoff::Backoff,
    catalog::{Catalog, Entitlement, Principal},
    connector::Connector,
    id::{AccessId, PrincipalId, TargetId},
    policy::{
        Action, ContextFacts, Decision, DecisionContext, PolicyDecider, PolicyQuery, Resource,
        TicketFacts,
    },
    store::{Commit, Store},
};

/// Tells the workers that there is new work, so they need not poll.
pub trait Wake: Send + Sync {
    /// A job was scheduled or rescheduled.
    fn jobs_changed(&self);
    /// A new expiry or request deadline exists, possibly earlier than the one being waited on.
    fn deadlines_changed(&self);
    /// Notifications were queued.
    fn notifications_changed(&self) {}
    /// Another process put a different policy set in force.
    fn policy_changed(&self) {}
    /// An access review started, or queued target work.
    fn campaigns_changed(&self) {}
}

/// Who is calling, as authenticated by the server.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// Whether the authentication included a second factor.
    pub mfa: bool,
    pub source_ip: Option<String>,
    /// The person an agent acts for (a token whose `act` names the agent): what it asks is
    /// asked for them, judged for both, and shown as "agent for person".
    pub on_behalf_of: Option<Principal>,
}

impl Caller {
    /// Whether the caller answers for `id`: it is `id`, or it is an agent acting for `id`.
    pub fn answers_for(&self, id: &PrincipalId) -> bool {
        self.principal.id == *id || self.on_behalf_of.as_ref().is_some_and(|p| p.id == *id)
    }
}

/// The rule that refuses agents every decision that is not asking for themselves, named as
/// the determining policy of such a refusal.
pub const AGENTS_NEVER_DECIDE: &str = "hourglass:agents-never-decide";

/// Per-principal quotas (per-entitlement ones live on the entitlement).
#[derive(Debug, Clone, Copy)]
pub struct Quotas {
    /// Grants one principal may hold (provisioning or active) at once.
    pub principal_live_grants: u32,
    /// Requests one principal may make in an hour.
    pub principal_requests_per_hour: u32,
    /// Grants one agent may hold at once (an agent asks in loops: its own, tighter limits).
    pub agent_live_grants: u32,
    /// Requests one agent may make in an hour.
    pub agent_requests_per_hour: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            principal_live_grants: 25,
            principal_requests_per_hour: 60,
            agent_live_grants: 5,
            agent_requests_per_hour: 20,
        }
    }
}

impl Quotas {
    /// The limits that apply to `kind`: (live grants, requests an hour).
    pub fn for_kind(&self, kind: crate::catalog::PrincipalKind) -> (u32, u32) {
        match kind {
            crate::catalog::PrincipalKind::Agent => (
                self.agent_live_grants.min(self.principal_live_grants),
                self.agent_requests_per_hour
                    .min(self.principal_requests_per_hour),
            ),
            _ => (self.principal_live_grants, self.principal_requests_per_hour),
        }
    }
}

/// Engine settings, from configuration.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// How long a pending request waits for a decision before it expires.
    pub pending_ttl: GrantDuration,
    /// The longest break-glass grant (an entitlement's own maximum may be shorter).
    pub break_glass_max: GrantDuration,
    /// Open break-glass reviews one principal may have before another break-glass is refused.
    pub break_glass_open_reviews: u32,
    pub quotas: Quotas,
    /// A grant still not provisioned this long after its start is given up (and a profile's
    /// other grants are rolled back).
    pub provision_timeout: GrantDuration,
    pub backoff: Backoff,
    /// How long a claimed job's lease lasts.
    pub lease_ms: i64,
    /// This worker's name in leases.
    pub worker_id: String,
    /// API key lifetimes and rotation.
    pub keys: KeyPolicy,
    /// Who hears about what, and how deliveries are retried.
    pub notify: crate::notify::NotifySettings,
    /// How long sign-in sessions last.
    pub sessions: crate::session::SessionSettings,
    /// How the directory's changes act on principals.
    pub directory: DirectorySettings,
    /// Access reviews started on a schedule (`[[campaigns]]`).
    pub scheduled_campaigns: Vec<campaigns::ScheduledCampaign>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            pending_ttl: GrantDuration::from_secs(24 * 3600),
            break_glass_max: GrantDuration::from_secs(3600),
            break_glass_open_reviews: 3,
            quotas: Quotas::default(),
            provision_timeout: GrantDuration::from_secs(15 * 60),
            backoff: Backoff::default(),
            lease_ms: 60_000,
            worker_id: "hourglass".into(),
            keys: KeyPolicy::default(),
            notify: crate::notify::NotifySettings::default(),
            sessions: crate::session::SessionSettings::default(),
            directory: DirectorySettings::default(),
            scheduled_campaigns: Vec::new(),
        }
    }
}

/// The ports the engine runs on.
pub struct EnginePorts {
    pub store: Arc<dyn Store>,
    pub policy: Arc<dyn PolicyDecider>,
    pub clock: Arc<dyn Clock>,
    pub catalog: Arc<Catalog>,
    pub connectors: BTreeMap<TargetId, Arc<dyn Connector>>,
    pub wake: Arc<dyn Wake>,
    /// Seals the credentials grants issue before they are stored.
    pub credentials: Arc<dyn crate::credential::CredentialSeal>,
    /// Local time and on-call facts for policy context.
    pub facts: Arc<dyn ContextFacts>,
    /// Ticket systems that check references and report closures.
    pub tickets: crate::ticket::TicketSources,
    /// Notification destinations by name (routes name them).
    pub notifiers: BTreeMap<String, Arc<dyn crate::notify::Notifier>>,
}

/// The use cases of Hourglass.
pub struct Engine {
    store: Arc<dyn Store>,
    /// Replaced whole by a reload; every decision reads the set in force at that moment.
    policy: RwLock<Arc<dyn PolicyDecider>>,
    clock: Arc<dyn Clock>,
    catalog: Arc<Catalog>,
    connectors: BTreeMap<TargetId, Arc<dyn Connector>>,
    wake: Arc<dyn Wake>,
    credentials: Arc<dyn crate::credential::CredentialSeal>,
    facts: Arc<dyn ContextFacts>,
    tickets: crate::ticket::TicketSources,
    notifiers: BTreeMap<String, Arc<dyn crate::notify::Notifier>>,
    settings: EngineSettings,
    /// How many refusals are audited a minute (per process).
    refusals: refusals::RefusalBudget,
}

/// How often a use case re-reads and retries after a concurrent change.
const CONFLICT_RETRIES: usize = 8;

impl Engine {
    /// Builds an engine; every entitlement's target must have a connector.
    pub fn new(ports: EnginePorts, settings: EngineSettings) -> Result<Self> {
        for e in ports.catalog.entitlements() {
            if !ports.connectors.contains_key(&e.target) {
                return Err(Error::internal(format!(
                    "entitlement {} names target {} which has no connector",
                    e.id, e.target
                )));
            }
        }
        Ok(Engine {
            store: ports.store,
            policy: RwLock::new(ports.policy),
            clock: ports.clock,
            catalog: ports.catalog,
            connectors: ports.connectors,
            wake: ports.wake,
            credentials: ports.credentials,
            facts: ports.facts,
            tickets: ports.tickets,
            notifiers: ports.notifiers,
            settings,
            refusals: refusals::RefusalBudget::default(),
        })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
    pub fn key_policy(&self) -> KeyPolicy {
        self.settings.keys
    }
    pub fn policy_hash(&self) -> String {
        self.policy().policy_hash()
    }

    /// The policy set in force.
    fn policy(&self) -> Arc<dyn PolicyDecider> {
        Arc::clone(&self.policy.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The decision context at `at` for access by `subject` (whose on-call status counts).
    fn context(
        &self,
        caller: Option<&Caller>,
        subject: &PrincipalId,
        duration: GrantDuration,
        ticket: Option<&TicketFacts>,
        at: Timestamp,
    ) -> DecisionContext {
        let (hour, weekday) = self.facts.local_time(at);
        DecisionContext {
            duration_secs: duration.as_secs(),
            hour,
            weekday,
            mfa: caller.is_some_and(|c| c.mfa),
            break_glass: false,
            oncall: self.facts.on_call(subject, at),
            ticket: ticket.cloned(),
            source_ip: caller.and_then(|c| c.source_ip.clone()),
            requester: None,
            token: None,
            actor: None,
        }
    }

    /// The context for judging a stored request again (at approval, activation or a policy
    /// reload): now, with the caller facts recorded when it was made.
    fn recheck_context(&self, req: &crate::request::Request, at: Timestamp) -> DecisionContext {
        let mut ctx = self.context(
            None,
            &req.requester,
            req.duration,
            ticket_facts_of(req).as_ref(),
            at,
        );
        ctx.mfa = req.mfa;
        ctx.source_ip.clone_from(&req.source_ip);
        ctx.break_glass = req.break_glass;
        ctx
    }

    /// Judges a stored request again now under the policy set in force: `Extend` (on the
    /// grant's new total) for an extension, `BreakGlass` for an emergency, `Exchange` (on the
    /// recorded token facts) for a token exchange, else `Request`.
    /// `false` when its requester or entitlement is gone.
    async fn still_permitted(&self, req: &crate::request::Request, at: Timestamp) -> Result<bool> {
        let (Some(p), Ok(resource)) = (
            self.principal(&req.requester).await?,
            self.resource_of(&req.access),
        ) else {
            return Ok(false);
        };
        let mut ctx = self.recheck_context(req, at);
        if let Some(x) = &req.exchange {
            return self.still_exchangeable(req, x, &p, resource, ctx).await;
        }
        // An agent that asked for someone must still be there, and still be allowed.
        let actor = match req.actors.first() {
            None => None,
            Some(a) => match self.principal(a).await? {
                Some(agent) if agent.status == crate::catalog::PrincipalStatus::Active => {
                    Some(agent)
                }
                _ => return Ok(false),
            },
        };
        let action = match &req.extends {
            Some(gid) => {
                let Some(g) = self.store.get_grant(gid).await? else {
                    return Ok(false);
                };
                let end = g.expires_at.plus(req.duration);
                ctx.duration_secs =
                    u64::try_from(end.millis_since(g.starts_at) / 1000).unwrap_or(0);
                Action::Extend
            }
            None if req.break_glass => Action::BreakGlass,
            None => Action::Request,
        };
        let reviewed = self.reviewed_with(&p.id, actor.as_ref()).await?;
        Ok(self
            .decide_for(action, &p, actor.as_ref(), resource, &ctx, &reviewed)?
            .allowed)
    }

    /// What access reviews decided about `who`'s eligibility (consulted at every `Request`).
    pub(super) async fn reviewed(&self, who: &PrincipalId) -> Result<crate::campaign::Reviewed> {
        Ok(crate::campaign::Reviewed {
            entries: self.store.eligibility_of(who).await?,
        })
    }

    /// What reviews decided about `who` and the agent acting for them, if any.
    pub(super) async fn reviewed_with(
        &self,
        who: &PrincipalId,
        actor: Option<&Principal>,
    ) -> Result<crate::campaign::Reviewed> {
        let mut r = self.reviewed(who).await?;
        if let Some(a) = actor {
            r.entries.extend(self.store.eligibility_of(&a.id).await?);
        }
        Ok(r)
    }

    /// A decision of `action` for `who` with what reviews decided applied
    /// ([`crate::campaign::Reviewed::apply`]): a removal refuses asking, breaking glass and
    /// extending; an addition permits asking where policy had no permit and no `forbid`.
    fn with_reviews(
        &self,
        action: Action,
        who: &PrincipalId,
        reviewed: &crate::campaign::Reviewed,
        resource: Resource<'_>,
        d: Decision,
    ) -> Decision {
        if reviewed.entries.is_empty() {
            return d;
        }
        let mut names = vec![resource.name()];
        if let Resource::Profile(_) = resource {
            names.extend(self.members(resource).iter().map(|e| e.id.as_str()));
        }
        reviewed.apply(action, who, &names, d)
    }

    /// A decision for `subject` with `actor` (an agent) acting for it: the subject judged with
    /// the agent in `context.actor`, and the agent on its own; both must allow. The refusing
    /// decision when one refuses, else both sets of determining policies.
    fn decide_for(
        &self,
        action: Action,
        subject: &Principal,
        actor: Option<&Principal>,
        resource: Resource<'_>,
        context: &DecisionContext,
        reviewed: &crate::campaign::Reviewed,
    ) -> Result<Decision> {
        let mut ctx = context.clone();
        ctx.actor = actor.cloned();
        let d = self.decide(action, subject, resource, &ctx)?;
        let mut d = self.with_reviews(action, &subject.id, reviewed, resource, d);
        let Some(agent) = actor else { return Ok(d) };
        if !d.allowed {
            return Ok(d);
        }
        ctx.actor = None;
        let own = self.decide(action, agent, resource, &ctx)?;
        let own = self.with_reviews(action, &agent.id, reviewed, resource, own);
        if !own.allowed {
            return Ok(own);
        }
        d.policy_ids.extend(own.policy_ids);
        d.errors.extend(own.errors);
        Ok(d)
    }

    /// A policy decision; a profile is judged on each of its entitlements too
    /// ([`crate::policy::decide_with_members`]).
    fn decide(
        &self,
        action: Action,
        principal: &Principal,
        resource: Resource<'_>,
        context: &DecisionContext,
    ) -> Result<Decision> {
        // Agents ask; they never decide. Whatever a policy set permits, an agent does not
        // approve or deny, break glass, or administer (see and revoke others' access, manage
        // identities, read the audit): on every path, since every path asks here.
        if principal.kind == crate::catalog::PrincipalKind::Agent
            && matches!(
                action,
                Action::Approve | Action::BreakGlass | Action::Administer
            )
        {
            return Ok(Decision {
                allowed: false,
                policy_ids: vec![AGENTS_NEVER_DECIDE.to_owned()],
                policy_hash: self.policy().policy_hash(),
                errors: Vec::new(),
            });
        }
        crate::policy::decide_with_members(
            self.policy().as_ref(),
            PolicyQuery {
                action,
                principal,
                resource,
                context,
            },
            &self.members(resource),
        )
    }

    /// Whether `principal` may administer `resource` (see and revoke anyone's access to it).
    fn may_administer(
        &self,
        principal: &Principal,
        resource: Resource<'_>,
        at: Timestamp,
    ) -> Result<bool> {
        let ctx = self.context(None, &principal.id, resource.default_duration(), None, at);
        Ok(self
            .decide(Action::Administer, principal, resource, &ctx)?
            .allowed)
    }

    /// The entitlement or profile called `name` (one namespace, never both: checked at start).
    fn resource_named(&self, name: &str) -> Option<Resource<'_>> {
        let name = name.trim();
        crate::id::EntitlementId::new(name)
            .ok()
            .and_then(|id| self.catalog.entitlement(&id))
            .map(Resource::Entitlement)
            .or_else(|| {
                crate::id::ProfileId::new(name)
                    .ok()
                    .and_then(|id| self.catalog.profile(&id))
                    .map(Resource::Profile)
            })
    }

    /// The entitlement or profile named by `access`, as configured now.
    fn resource_of(&self, access: &AccessId) -> Result<Resource<'_>> {
        match access {
            AccessId::Entitlement(e) => self.catalog.entitlement(e).map(Resource::Entitlement),
            AccessId::Profile(p) => self.catalog.profile(p).map(Resource::Profile),
        }
        .ok_or_else(|| {
            Error::conflict(
                crate::ErrorCode::AccessRemoved,
                format!("{} {access} is no longer configured", access.kind()),
            )
        })
    }

    /// The entitlements that `resource` grants: itself, or a profile's members.
    fn members<'a>(&'a self, resource: Resource<'a>) -> Vec<&'a Entitlement> {
        match resource {
            Resource::Entitlement(e) => vec![e],
            Resource::Profile(p) => p
                .entitlements
                .iter()
                .filter_map(|e| self.catalog.entitlement(e))
                .collect(),
        }
    }

    /// Records a no-human approval of `request` (by policy, by a token exchange, or by
    /// break-glass, as `via_label` says) in `commit`, and returns it approved.
    fn approve_without_human(
        request: &crate::request::Request,
        approver: &str,
        via: crate::request::ApprovalVia,
        via_label: &str,
        decision: &Decision,
        commit: &mut Commit,
        now: Timestamp,
    ) -> Result<crate::request::Request> {
        commit.approvals.push(crate::request::Approval {
            request_id: request.id.clone(),
            approver: approver.to_owned(),
            verdict: crate::request::Verdict::Approve,
            via,
            policy_ids: decision.policy_ids.clone(),
            policy_hash: decision.policy_hash.clone(),
            comment: None,
            at: now,
        });
        let (approved, ev) = request.apply(
            crate::request::RequestCommand::Approve {
                actor: approver.to_owned(),
            },
            now,
        )?;
        commit.audit.push(
            ev.record(now)
                .with("via", via_label)
                .with("policy_ids", decision.policy_ids.join(","))
                .with("policy_hash", &decision.policy_hash),
        );
        Ok(approved)
    }

    /// Writes a unit of work, with the notifications its audit records call for.
    async fn commit(&self, mut commit: Commit) -> Result<Option<u64>> {
        self.route(&mut commit);
        let queued = !commit.notifications.is_empty();
        let seq = self.store.commit(commit).await?;
        if queued {
            self.wake.notifications_changed();
        }
        Ok(seq)
    }
}

/// What policy sees of a stored request's ticket: what its source said when the request was
/// made, or only the reference when no source owns it.
fn ticket_facts_of(req: &crate::request::Request) -> Option<TicketFacts> {
    req.ticket_facts.clone().or_else(|| {
        req.ticket.as_ref().map(|t| TicketFacts {
            reference: t.clone(),
            ..TicketFacts::default()
        })
    })
}

/// Runs `f` again after a store conflict, a bounded number of times.
/// (A plain closure returning a future rather than an async closure: the futures of async
/// closures cannot yet be shown to be `Send`, which the server's tasks need.)
async fn retry_on_conflict<T, F, Fut>(mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut last = Error::StoreConflict;
    for _ in 0..CONFLICT_RETRIES {
        match f().await {
            Err(Error::StoreConflict) => last = Error::StoreConflict,
            other => return other,
        }
    }
    Err(match last {
        Error::StoreConflict => Error::conflict(
            crate::ErrorCode::StoreBusy,
            "the object kept changing while this was decided; try again",
        ),
        e => e,
    })
}
