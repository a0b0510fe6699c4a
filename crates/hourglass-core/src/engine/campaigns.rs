//! Access review campaigns (see [`crate::campaign`]): starting one with its items, deciding
//! items, reminders and the deadline's default action, and the target work removals queue.
//!
//! Administrators of every entitlement start and follow campaigns; each item is decided by its
//! reviewer (or an administrator), never by the person it is about, never by an agent.

use std::collections::{BTreeMap, HashMap};

use tracing::{info, instrument, warn};

use super::{Caller, Engine, retry_on_conflict};
use crate::{
    Error, GrantDuration, Result, Timestamp,
    audit::AuditRecord,
    campaign::{
        Campaign, CampaignItem, CampaignScope, CampaignState, DefaultAction, Effect,
        EligibilityEntry, ItemDecision, Progress, Reviewer, ReviewerRule, Work,
    },
    catalog::{Principal, PrincipalKind, PrincipalStatus},
    connector::Holding,
    event::EventKind,
    id::{CampaignId, CampaignItemId, PrincipalId, TargetId},
    identity::{Authority, Identity, StatusSetBy},
    policy::{Action, Resource, TicketFacts},
    store::{Commit, ItemFilter},
};

/// The most items one campaign holds.
pub const MAX_ITEMS: usize = 20_000;
const MAX_NAME: usize = 200;
const MAX_NOTE: usize = 2_000;
/// Attempts at removing standing privilege before it is given up (and shown as failed).
const MAX_ATTEMPTS: u32 = 8;
/// How long one worker holds an item's target work.
const WORK_LEASE_MS: i64 = 60_000;
/// Items decided by the deadline in one commit.
const BATCH: u32 = 200;

/// What an administrator asks for when starting a campaign.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub name: String,
    pub scope: CampaignScope,
    pub reviewers: ReviewerRule,
    pub default_action: DefaultAction,
    /// From now to the deadline.
    pub duration: GrantDuration,
    /// Reviewers with undecided items are reminded this long before the deadline.
    pub remind_before: Option<GrantDuration>,
}

/// An access review started once in every period of `every` (periods counted from the Unix
/// epoch), by the first replica to look in that period.
#[derive(Debug, Clone)]
pub struct ScheduledCampaign {
    pub every: GrantDuration,
    pub campaign: NewCampaign,
}

impl ScheduledCampaign {
    /// The period `at` falls in, and when the next one starts.
    fn period(&self, at: Timestamp) -> (i64, Timestamp) {
        let every = self.every.as_millis().max(1);
        let n = at.unix_millis().div_euclid(every);
        (
            n,
            Timestamp::from_unix_millis((n + 1).saturating_mul(every)),
        )
    }

    /// The campaign's id in period `n`: ordered by the period's start, and the same on every
    /// replica, so only one starts it.
    fn id(&self, n: i64) -> CampaignId {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{}\n{n}", self.campaign.name).as_bytes());
        let mut bits = [0u8; 10];
        bits.copy_from_slice(&digest[..10]);
        let start = Timestamp::from_unix_millis(n.saturating_mul(self.every.as_millis().max(1)));
        CampaignId::derived(start, bits)
    }
}

/// A campaign with how far it has come.
#[derive(Debug, Clone)]
pub struct CampaignStatus {
    pub campaign: Campaign,
    pub progress: Progress,
}

/// An item before it has an id and a reviewer.
struct Draft {
    principal: Option<Principal>,
    access: Option<String>,
    target: Option<String>,
    holder: Option<String>,
    privilege: Option<String>,
}

impl Engine {
    /// Starts an access review: its items are enumerated now, each with its reviewer.
    #[instrument(skip_all, fields(principal = %caller.principal.id))]
    pub async fn start_campaign(&self, caller: &Caller, new: NewCampaign) -> Result<Campaign> {
        self.require_admin_of_all(caller, crate::ErrorCode::CampaignNotAllowed)?;
        let now = self.clock.now();
        self.open_campaign(
            caller.principal.id.as_str(),
            CampaignId::generate(now)?,
            new,
        )
        .await
    }

    /// Starts the scheduled campaigns not yet started in their current period; returns how
    /// many it started. Another replica that started one first wins (the id is the period's).
    pub async fn start_scheduled_campaigns(&self) -> Result<usize> {
        let mut started = 0;
        for s in &self.settings.scheduled_campaigns {
            let (n, _) = s.period(self.clock.now());
            let id = s.id(n);
            if self.store.get_campaign(&id).await?.is_some() {
                continue;
            }
            match self.open_campaign("schedule", id, s.campaign.clone()).await {
                Ok(_) => started += 1,
                Err(Error::StoreConflict) => {}
                // One schedule that cannot start (too many items, a store error) is logged and
                // tried again at the next pass; it stops no other campaign's work.
                Err(e) => {
                    warn!(campaign = %s.campaign.name, error = %e, "a scheduled access review could not start");
                }
            }
        }
        Ok(started)
    }

    /// When the next scheduled period starts, if any campaign is scheduled.
    fn next_scheduled(&self) -> Option<Timestamp> {
        let now = self.clock.now();
        self.settings
            .scheduled_campaigns
            .iter()
            .map(|s| s.period(now).1)
            .min()
    }

    /// Checks `new`, enumerates its items and commits the campaign under `id`, started by
    /// `by` (a principal, or `schedule`).
    async fn open_campaign(&self, by: &str, id: CampaignId, new: NewCampaign) -> Result<Campaign> {
        let name = new.name.trim().to_owned();
        if name.is_empty() {
            return Err(Error::invalid(
                crate::ErrorCode::CampaignInvalid,
                "name",
                "a campaign needs a name",
            ));
        }
        crate::text::check(&name, MAX_NAME)
            .map_err(|m| Error::invalid(crate::ErrorCode::CampaignInvalid, "name", m))?;
        let hour = GrantDuration::from_secs(3600);
        if new.duration < hour || new.duration > GrantDuration::from_secs(366 * 86_400) {
            return Err(Error::invalid(
                crate::ErrorCode::CampaignInvalid,
                "duration",
                "a campaign runs for at least an hour and at most 366 days",
            ));
        }
        if let Some(r) = new.remind_before
            && (r.as_millis() == 0 || r >= new.duration)
        {
            return Err(Error::invalid(
                crate::ErrorCode::CampaignInvalid,
                "remind_before",
                "a reminder comes before the deadline and after the start",
            ));
        }
        let now = self.clock.now();
        let identities = self.store.list_identities().await?;
        let (drafts, unreachable) = match new.scope {
            CampaignScope::Eligibility => {
                (self.eligibility_drafts(&identities, now).await?, Vec::new())
            }
            CampaignScope::Standing => self.standing_drafts(&identities).await?,
            CampaignScope::Identities => (self.identity_drafts(&identities).await?, Vec::new()),
        };
        if drafts.len() > MAX_ITEMS {
            return Err(Error::invalid(
                crate::ErrorCode::CampaignTooLarge,
                "scope",
                format!(
                    "this campaign would have {} items, more than the {MAX_ITEMS} one campaign holds",
                    drafts.len()
                ),
            ));
        }
        let known: HashMap<&str, &Principal> = identities
            .iter()
            .map(|i| (i.principal.id.as_str(), &i.principal))
            .collect();
        let mut items = Vec::with_capacity(drafts.len());
        for d in drafts {
            let reviewer = reviewer_for(&new.reviewers, d.principal.as_ref(), &known);
            items.push(CampaignItem {
                id: CampaignItemId::generate(now)?,
                campaign: id.clone(),
                kind: new.scope,
                principal: d.principal.map(|p| p.id),
                access: d.access,
                target: d.target,
                holder: d.holder,
                privilege: d.privilege,
                reviewer,
                decision: None,
                decided_by: None,
                decided_at: None,
                note: None,
                work: Work::None,
                run_at: None,
                attempts: 0,
                last_error: None,
                version: 0,
            });
        }
        items.sort_by(|a, b| a.id.cmp(&b.id));
        let deadline = now.plus(new.duration);
        let campaign = Campaign {
            id: id.clone(),
            name,
            scope: new.scope,
            reviewers: new.reviewers,
            default_action: new.default_action,
            state: CampaignState::Open,
            created_by: by.to_owned(),
            created_at: now,
            deadline,
            remind_at: new
                .remind_before
                .map(|r| deadline.plus_millis(-r.as_millis())),
            reminded: false,
            closed_at: None,
            items: u32::try_from(items.len()).unwrap_or(u32::MAX),
            version: 0,
        };
        let mut started = AuditRecord::new(now, by, EventKind::CampaignStarted, id.as_str())
            .with("name", &campaign.name)
            .with("scope", campaign.scope.as_str())
            .with("reviewers", campaign.reviewers.to_string())
            .with("default_action", campaign.default_action.as_str())
            .with("deadline", deadline)
            .with("items", items.len());
        if !unreachable.is_empty() {
            started = started.with("unreachable", unreachable.join(","));
        }
        info!(campaign = %id, items = items.len(), scope = %campaign.scope, "access review started");
        self.commit(Commit {
            campaigns: vec![campaign.clone()],
            campaign_items: items,
            audit: vec![started],
            ..Commit::default()
        })
        .await?;
        self.wake.campaigns_changed();
        Ok(Campaign {
            version: 1,
            ..campaign
        })
    }

    /// Who may ask for what now: every active identity against every entitlement and profile,
    /// as the catalogue judges it (with or without a ticket), reviews included.
    async fn eligibility_drafts(
        &self,
        identities: &[Identity],
        now: Timestamp,
    ) -> Result<Vec<Draft>> {
        let mut out = Vec::new();
        for i in identities {
            let p = &i.principal;
            if p.status != PrincipalStatus::Active {
                continue;
            }
            let reviewed = self.reviewed(&p.id).await?;
            let resources = self
                .catalog
                .entitlements()
                .map(Resource::Entitlement)
                .chain(self.catalog.profiles().map(Resource::Profile));
            for resource in resources {
                let mut ctx = self.context(None, &p.id, resource.default_duration(), None, now);
                let may = |ctx: &crate::policy::DecisionContext| -> Result<bool> {
                    let d = self.decide(Action::Request, p, resource, ctx)?;
                    Ok(self
                        .with_reviews(Action::Request, &p.id, &reviewed, resource, d)
                        .allowed)
                };
                let allowed = may(&ctx)? || {
                    ctx.ticket = Some(TicketFacts {
                        reference: "TICKET-1".into(),
                        status: Some("open".into()),
                        assignee: Some(p.id.to_string()),
                        priority: None,
                        source: None,
                        verified: true,
                    });
                    may(&ctx)?
                };
                if allowed {
                    out.push(Draft {
                        principal: Some(p.clone()),
                        access: Some(resource.name().to_owned()),
                        target: None,
                        holder: None,
                        privilege: None,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Standing privilege discovery finds now; the targets that could not be asked.
    async fn standing_drafts(&self, identities: &[Identity]) -> Result<(Vec<Draft>, Vec<String>)> {
        let by_name: HashMap<&str, &Principal> = identities
            .iter()
            .map(|i| (i.principal.id.as_str(), &i.principal))
            .collect();
        let mut out = Vec::new();
        let mut unreachable = Vec::new();
        for t in self.standing_now().await? {
            if let Some(e) = &t.error {
                warn!(target = %t.target, error = %e, "an access review could not ask a target what it holds");
                unreachable.push(t.target.clone());
                continue;
            }
            for s in t.standing {
                let principal = s
                    .principal
                    .as_deref()
                    .and_then(|p| by_name.get(p).map(|p| (*p).clone()));
                let entitlement = s
                    .entitlement
                    .clone()
                    .or_else(|| self.entitlement_granting(&t.target, &s.privilege));
                out.push(Draft {
                    access: principal.as_ref().and(entitlement),
                    principal,
                    target: Some(t.target.clone()),
                    holder: Some(s.holder),
                    privilege: Some(s.privilege),
                });
            }
        }
        Ok((out, unreachable))
    }

    /// The one entitlement of `target` whose parameters name `privilege` (a role it grants):
    /// what standing privilege converts to. None where none or several do.
    fn entitlement_granting(&self, target: &str, privilege: &str) -> Option<String> {
        fn names(v: &serde_json::Value, what: &str) -> bool {
            match v {
                serde_json::Value::String(s) => s == what,
                serde_json::Value::Array(a) => a.iter().any(|v| names(v, what)),
                serde_json::Value::Object(o) => o.values().any(|v| names(v, what)),
                _ => false,
            }
        }
        let mut found = self
            .catalog
            .entitlements()
            .filter(|e| e.target.as_str() == target && names(&e.params, privilege));
        match (found.next(), found.next()) {
            (Some(e), None) => Some(e.id.to_string()),
            _ => None,
        }
    }

    /// Workloads and agents that are not offboarded, with their owner and keys.
    async fn identity_drafts(&self, identities: &[Identity]) -> Result<Vec<Draft>> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for i in identities {
            let p = &i.principal;
            if p.kind == PrincipalKind::Human || p.status == PrincipalStatus::Offboarded {
                continue;
            }
            let keys = self
                .store
                .list_keys(Some(&p.id))
                .await?
                .iter()
                .filter(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|e| e > now))
                .count();
            out.push(Draft {
                principal: Some(p.clone()),
                access: None,
                target: None,
                holder: None,
                privilege: Some(format!(
                    "{} owned by {}, {} {keys} API key(s) in use",
                    p.kind.as_str(),
                    p.owner.as_deref().unwrap_or("nobody"),
                    p.status.as_str(),
                )),
            });
        }
        Ok(out)
    }

    /// Every campaign with its progress, newest first (administrators).
    pub async fn campaigns(&self, caller: &Caller) -> Result<Vec<CampaignStatus>> {
        self.require_admin_of_all(caller, crate::ErrorCode::CampaignNotAllowed)?;
        let mut out = Vec::new();
        for c in self.store.list_campaigns(None, 200).await? {
            let progress = self.store.campaign_progress(&c.id).await?;
            out.push(CampaignStatus {
                campaign: c,
                progress,
            });
        }
        Ok(out)
    }

    /// One campaign and a page of its items: every item for an administrator, the caller's own
    /// for a reviewer (someone with no item in it is told it does not exist).
    pub async fn campaign(
        &self,
        caller: &Caller,
        id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(CampaignStatus, Vec<CampaignItem>)> {
        let not_found = || {
            Error::not_found(
                crate::ErrorCode::CampaignNotFound,
                format!("no campaign {id}"),
            )
        };
        let cid = CampaignId::parse(id).ok_or_else(not_found)?;
        let campaign = self.store.get_campaign(&cid).await?.ok_or_else(not_found)?;
        let limit = limit.clamp(1, 1_000);
        let after = match after.map(str::trim).filter(|a| !a.is_empty()) {
            None => None,
            Some(a) => Some(CampaignItemId::parse(a).ok_or_else(|| {
                Error::invalid(
                    crate::ErrorCode::CampaignInvalid,
                    "after",
                    "an item id (itm_…)",
                )
            })?),
        };
        let admin = self.is_admin_of_all(caller);
        let items = if admin {
            self.store
                .campaign_items(&ItemFilter {
                    campaign: cid.clone(),
                    undecided: false,
                    reviewer: None,
                    after,
                    limit,
                })
                .await?
        } else {
            let mut mine = Vec::new();
            for reviewer in self.reviewer_names(caller) {
                mine.extend(
                    self.store
                        .campaign_items(&ItemFilter {
                            campaign: cid.clone(),
                            undecided: false,
                            reviewer: Some(reviewer),
                            after: after.clone(),
                            limit,
                        })
                        .await?,
                );
            }
            if mine.is_empty() {
                return Err(not_found());
            }
            mine.sort_by(|a, b| a.id.cmp(&b.id));
            mine.truncate(limit as usize);
            mine
        };
        let progress = self.store.campaign_progress(&cid).await?;
        Ok((CampaignStatus { campaign, progress }, items))
    }

    /// Open campaigns with items waiting for the caller.
    pub async fn my_reviews(&self, caller: &Caller) -> Result<Vec<(Campaign, Vec<CampaignItem>)>> {
        let mut out = Vec::new();
        for c in self
            .store
            .list_campaigns(Some(CampaignState::Open), 200)
            .await?
        {
            let mut mine = Vec::new();
            for reviewer in self.reviewer_names(caller) {
                mine.extend(
                    self.store
                        .campaign_items(&ItemFilter {
                            campaign: c.id.clone(),
                            undecided: true,
                            reviewer: Some(reviewer),
                            after: None,
                            limit: 500,
                        })
                        .await?,
                );
            }
            if !mine.is_empty() {
                mine.sort_by(|a, b| a.id.cmp(&b.id));
                out.push((c, mine));
            }
        }
        Ok(out)
    }

    fn is_admin_of_all(&self, caller: &Caller) -> bool {
        self.require_admin_of_all(caller, crate::ErrorCode::CampaignNotAllowed)
            .is_ok()
    }

    /// The reviewer names that are the caller: themselves, their groups, and the
    /// administrators if they are one. An agent reviews nothing.
    fn reviewer_names(&self, caller: &Caller) -> Vec<Reviewer> {
        if caller.principal.kind != PrincipalKind::Human || caller.on_behalf_of.is_some() {
            return Vec::new();
        }
        let mut out = vec![Reviewer::Person(caller.principal.id.clone())];
        out.extend(caller.principal.groups.iter().cloned().map(Reviewer::Group));
        if self.is_admin_of_all(caller) {
            out.push(Reviewer::Administrators);
        }
        out
    }

    /// Decides one item: keep, remove or convert. Acts in the same commit (a removal of
    /// eligibility is in force at once; standing privilege is queued for its connector; an
    /// identity is suspended with everything it holds).
    #[instrument(skip_all, fields(principal = %caller.principal.id, item = %id, decision = %decision))]
    pub async fn decide_item(
        &self,
        caller: &Caller,
        id: &str,
        decision: ItemDecision,
        note: Option<String>,
    ) -> Result<CampaignItem> {
        let note = note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        if let Some(n) = &note {
            crate::text::check(n, MAX_NOTE)
                .map_err(|m| Error::invalid(crate::ErrorCode::CampaignInvalid, "note", m))?;
        }
        let note = &note;
        retry_on_conflict(move || async move {
            let not_found = || {
                Error::not_found(crate::ErrorCode::CampaignItemNotFound, format!("no campaign item {id}"))
            };
            let iid = CampaignItemId::parse(id).ok_or_else(not_found)?;
            let item = self.store.get_campaign_item(&iid).await?.ok_or_else(not_found)?;
            let mine = self.reviewer_names(caller);
            let admin = mine.contains(&Reviewer::Administrators);
            if !admin && !mine.contains(&item.reviewer) {
                // Someone else's item: as if it did not exist, unless they may see the campaign.
                return Err(if caller.principal.kind != PrincipalKind::Human {
                    Error::forbidden(
                        crate::ErrorCode::CampaignItemNotYours,
                        "only people decide access reviews, never workloads or agents",
                    )
                } else {
                    not_found()
                });
            }
            if item.principal.as_ref() == Some(&caller.principal.id)
                || item.holder.as_deref() == Some(caller.principal.id.as_str())
            {
                return Err(Error::forbidden(
                    crate::ErrorCode::CampaignSelfReview,
                    format!("{} may not review their own access", caller.principal.id),
                ));
            }
            let campaign = self
                .store
                .get_campaign(&item.campaign)
                .await?
                .ok_or_else(|| Error::internal("a campaign item without its campaign"))?;
            let now = self.clock.now();
            if campaign.state == CampaignState::Closed || campaign.deadline <= now {
                return Err(Error::conflict(
                    crate::ErrorCode::CampaignClosed,
                    format!("campaign {} is closed (its deadline was {})", campaign.id, campaign.deadline),
                ));
            }
            if let Some(d) = item.decision {
                return Err(Error::conflict(
                    crate::ErrorCode::CampaignItemDecided,
                    format!("item {id} is already decided: {d}"),
                ));
            }
            if !item.allows(decision) {
                return Err(Error::invalid(
                    crate::ErrorCode::CampaignDecisionInvalid,
                    "decision",
                    "convert is for standing privilege whose holder is a known principal and whose entitlement is known",
                ));
            }
            let mut commit = Commit::default();
            let decided = self
                .decide_into(
                    &item,
                    decision,
                    caller.principal.id.as_str(),
                    note.as_deref(),
                    now,
                    &mut commit,
                )
                .await?;
            let queued = decided.work == Work::Pending;
            let revoked = !commit.jobs.is_empty();
            self.commit(commit).await?;
            if queued {
                self.wake.campaigns_changed();
            }
            if revoked {
                self.wake.jobs_changed();
            }
            Ok(CampaignItem {
                version: decided.version + 1,
                ..decided
            })
        })
        .await
    }

    /// Adds a decision and what it does to `commit`; `by` is a principal or `deadline`.
    async fn decide_into(
        &self,
        item: &CampaignItem,
        decision: ItemDecision,
        by: &str,
        note: Option<&str>,
        now: Timestamp,
        commit: &mut Commit,
    ) -> Result<CampaignItem> {
        let mut decided = item.clone();
        decided.decision = Some(decision);
        decided.decided_by = Some(by.to_owned());
        decided.decided_at = Some(now);
        decided.note = note.map(str::to_owned);
        let eligibility = |effect: Effect, kind: EventKind, commit: &mut Commit| {
            if let (Some(p), Some(access)) = (&item.principal, &item.access) {
                commit.eligibility.push(EligibilityEntry {
                    principal: p.clone(),
                    access: access.clone(),
                    effect,
                    item: item.id.clone(),
                    at: now,
                });
                commit.audit.push(
                    AuditRecord::new(now, by, kind, p.as_str())
                        .with("access", access)
                        .with("item", &item.id)
                        .with("campaign", &item.campaign),
                );
            }
        };
        match (item.kind, decision) {
            (_, ItemDecision::Keep) => {}
            (CampaignScope::Eligibility, _) => {
                eligibility(Effect::Removed, EventKind::EligibilityRemoved, commit);
            }
            (CampaignScope::Standing, d) => {
                decided.work = Work::Pending;
                decided.run_at = Some(now);
                if d == ItemDecision::Convert {
                    eligibility(Effect::Added, EventKind::EligibilityAdded, commit);
                }
            }
            (CampaignScope::Identities, _) => {
                if let Some(p) = &item.principal {
                    self.suspend_into(p, by, &item.campaign, now, commit)
                        .await?;
                }
            }
        }
        let mut ev = AuditRecord::new(now, by, EventKind::CampaignItemDecided, item.id.as_str())
            .with("campaign", &item.campaign)
            .with("kind", item.kind.as_str())
            .with("decision", decision.as_str())
            .with("reviewer", item.reviewer.to_string())
            .with("by_default", by == DEADLINE);
        for (k, v) in [
            (
                "principal",
                item.principal.as_ref().map(PrincipalId::as_str),
            ),
            ("access", item.access.as_deref()),
            ("target", item.target.as_deref()),
            ("holder", item.holder.as_deref()),
            ("privilege", item.privilege.as_deref()),
            ("note", note),
        ] {
            if let Some(v) = v {
                ev = ev.with(k, v);
            }
        }
        commit.audit.push(ev);
        commit.campaign_items.push(decided.clone());
        Ok(decided)
    }

    /// A workload or agent a review removed: suspended, its grants revoked, its requests
    /// cancelled and its keys revoked, in `commit`.
    async fn suspend_into(
        &self,
        id: &PrincipalId,
        by: &str,
        campaign: &CampaignId,
        now: Timestamp,
        commit: &mut Commit,
    ) -> Result<()> {
        let Some(identity) = self.store.get_identity(id).await? else {
            return Ok(());
        };
        if identity.principal.status == PrincipalStatus::Offboarded {
            return Ok(());
        }
        let why = format!("removed by access review {campaign}");
        let (grants, requests, _) = self
            .strip_into(id, by, &why, Some(&why), now, commit)
            .await?;
        if identity.principal.status == PrincipalStatus::Suspended {
            return Ok(());
        }
        let mut changed = identity.clone();
        changed.principal.status = PrincipalStatus::Suspended;
        changed.status_reason = Some(why.clone());
        changed.status_set_by = Some(StatusSetBy {
            actor: by.to_owned(),
            authority: Authority::Administrator,
        });
        commit.identities.push(changed);
        commit.audit.push(
            crate::lifecycle::Event::IdentitySuspended {
                identity: id.clone(),
                actor: by.to_owned(),
                authority: Some(Authority::Administrator),
                reason: Some(why),
                stripped: Some((grants.len(), requests.len())),
            }
            .record(now),
        );
        Ok(())
    }

    /// Reminders and deadlines of open campaigns, as of now. Returns how many items the
    /// deadline decided.
    pub async fn campaign_tick(&self) -> Result<usize> {
        self.start_scheduled_campaigns().await?;
        let now = self.clock.now();
        let mut decided = 0;
        for c in self
            .store
            .list_campaigns(Some(CampaignState::Open), 1_000)
            .await?
        {
            let done = if c.deadline <= now {
                self.close_at_deadline(&c.id).await.map(|n| decided += n)
            } else if !c.reminded && c.remind_at.is_some_and(|r| r <= now) {
                self.remind(&c.id).await
            } else {
                Ok(())
            };
            // One campaign that fails is logged and tried again; the others go on.
            if let Err(e) = done {
                warn!(campaign = %c.id, error = %e, "an access review's reminder or deadline failed; retrying");
            }
        }
        Ok(decided)
    }

    /// The earliest reminder or deadline of an open campaign (for the worker's sleep).
    pub async fn next_campaign_moment(&self) -> Result<Option<Timestamp>> {
        Ok(self
            .store
            .list_campaigns(Some(CampaignState::Open), 1_000)
            .await?
            .iter()
            .map(|c| match c.remind_at {
                Some(r) if !c.reminded => r.min(c.deadline),
                _ => c.deadline,
            })
            .chain(self.next_scheduled())
            .min())
    }

    async fn undecided(
        &self,
        id: &CampaignId,
        after: Option<CampaignItemId>,
    ) -> Result<Vec<CampaignItem>> {
        self.store
            .campaign_items(&ItemFilter {
                campaign: id.clone(),
                undecided: true,
                reviewer: None,
                after,
                limit: BATCH,
            })
            .await
    }

    /// Tells each reviewer with undecided items how many wait (once per campaign).
    async fn remind(&self, id: &CampaignId) -> Result<()> {
        retry_on_conflict(|| async {
            let Some(c) = self.store.get_campaign(id).await? else {
                return Ok(());
            };
            if c.reminded || c.state == CampaignState::Closed {
                return Ok(());
            }
            let mut waiting: BTreeMap<String, usize> = BTreeMap::new();
            let mut after = None;
            loop {
                let page = self.undecided(id, after.take()).await?;
                for i in &page {
                    *waiting.entry(i.reviewer.to_string()).or_default() += 1;
                }
                match page.last() {
                    Some(last) if page.len() == BATCH as usize => after = Some(last.id.clone()),
                    _ => break,
                }
            }
            let now = self.clock.now();
            let mut commit = Commit::default();
            for (reviewer, n) in &waiting {
                commit.audit.push(
                    AuditRecord::new(now, "system", EventKind::CampaignReminded, id.as_str())
                        .with("reviewer", reviewer)
                        .with("undecided", n)
                        .with("deadline", c.deadline),
                );
            }
            commit.campaigns.push(Campaign {
                reminded: true,
                ..c.clone()
            });
            self.commit(commit).await?;
            Ok(())
        })
        .await
    }

    /// Applies the default action to every undecided item, then closes the campaign.
    async fn close_at_deadline(&self, id: &CampaignId) -> Result<usize> {
        let mut decided = 0;
        loop {
            let n = retry_on_conflict(|| async {
                let Some(c) = self.store.get_campaign(id).await? else {
                    return Ok(0);
                };
                if c.state == CampaignState::Closed {
                    return Ok(0);
                }
                let page = self.undecided(id, None).await?;
                let now = self.clock.now();
                let action = match c.default_action {
                    DefaultAction::Keep => ItemDecision::Keep,
                    DefaultAction::Remove => ItemDecision::Remove,
                };
                let mut commit = Commit::default();
                for item in &page {
                    self.decide_into(item, action, DEADLINE, None, now, &mut commit)
                        .await?;
                }
                let n = page.len();
                if n == 0 {
                    let p = self.store.campaign_progress(id).await?;
                    commit.audit.push(
                        AuditRecord::new(now, "system", EventKind::CampaignClosed, id.as_str())
                            .with("total", p.total)
                            .with("keep", p.keep)
                            .with("remove", p.remove)
                            .with("convert", p.convert)
                            .with("by_default", p.by_default),
                    );
                    commit.campaigns.push(Campaign {
                        state: CampaignState::Closed,
                        closed_at: Some(now),
                        ..c
                    });
                }
                let queued = commit
                    .campaign_items
                    .iter()
                    .any(|i| i.work == Work::Pending);
                let revoked = !commit.jobs.is_empty();
                self.commit(commit).await?;
                if queued {
                    self.wake.campaigns_changed();
                }
                if revoked {
                    self.wake.jobs_changed();
                }
                Ok(n)
            })
            .await?;
            if n == 0 {
                info!(campaign = %id, decided, "access review closed at its deadline");
                return Ok(decided);
            }
            decided += n;
        }
    }

    /// Runs due target work (standing privilege a review removed): the connector removes it,
    /// discovery checks it is gone. Returns how many items were worked on.
    pub async fn run_campaign_work(&self) -> Result<usize> {
        let due = self.store.due_campaign_work(self.clock.now(), 20).await?;
        let mut worked = 0;
        for item in due {
            // Claim it for a lease from now: another worker that read it too loses the race.
            let claimed = CampaignItem {
                run_at: Some(self.clock.now().plus_millis(WORK_LEASE_MS)),
                ..item.clone()
            };
            match self
                .store
                .commit(Commit {
                    campaign_items: vec![claimed.clone()],
                    ..Commit::default()
                })
                .await
            {
                Ok(_) => {}
                Err(e) if e.code() == crate::ErrorCode::StoreConflict => continue,
                Err(e) => return Err(e),
            }
            let claimed = CampaignItem {
                version: claimed.version + 1,
                ..claimed
            };
            let outcome = self.remove_standing_now(&claimed).await;
            let now = self.clock.now();
            let attempt = claimed.attempts + 1;
            let mut settled = CampaignItem {
                attempts: attempt,
                ..claimed.clone()
            };
            let base = |kind: EventKind| {
                AuditRecord::new(now, "system", kind, claimed.id.as_str())
                    .with("campaign", &claimed.campaign)
                    .with("target", claimed.target.as_deref().unwrap_or(""))
                    .with("holder", claimed.holder.as_deref().unwrap_or(""))
                    .with("privilege", claimed.privilege.as_deref().unwrap_or(""))
                    .with("attempt", attempt)
            };
            let ev = match outcome {
                Ok(checked) => {
                    settled.work = Work::Done;
                    settled.run_at = None;
                    settled.last_error = None;
                    base(EventKind::StandingRemoved).with("checked", checked)
                }
                Err(error) => {
                    settled.last_error = Some(error.clone());
                    let mut ev = base(EventKind::StandingRemoveFailed).with("error", &error);
                    if attempt >= MAX_ATTEMPTS {
                        settled.work = Work::Failed;
                        settled.run_at = None;
                        warn!(item = %claimed.id, %error, "standing privilege could not be removed; given up");
                    } else {
                        let at = now.plus_millis(
                            i64::try_from(self.settings.backoff.delay_ms_random(attempt))
                                .unwrap_or(i64::MAX),
                        );
                        settled.run_at = Some(at);
                        ev = ev.with("retry_at", at);
                    }
                    ev
                }
            };
            match self
                .commit(Commit {
                    campaign_items: vec![settled],
                    audit: vec![ev],
                    ..Commit::default()
                })
                .await
            {
                Ok(_) => worked += 1,
                Err(e) if e.code() == crate::ErrorCode::StoreConflict => {}
                Err(e) => return Err(e),
            }
        }
        Ok(worked)
    }

    /// The earliest moment pending target work is due, if any.
    pub async fn next_campaign_work(&self) -> Result<Option<Timestamp>> {
        Ok(self
            .store
            .due_campaign_work(Timestamp::from_unix_millis(i64::MAX), 1)
            .await?
            .first()
            .and_then(|i| i.run_at))
    }

    /// Removes one holding in its target and checks by discovery that it is gone; the answer
    /// says what was checked, the error is for the audit (connectors keep secrets out).
    async fn remove_standing_now(
        &self,
        item: &CampaignItem,
    ) -> std::result::Result<String, String> {
        let (Some(target), Some(holder), Some(privilege)) =
            (&item.target, &item.holder, &item.privilege)
        else {
            return Err("the item names no holding".into());
        };
        let connector = TargetId::new(target)
            .ok()
            .and_then(|t| self.connectors.get(&t))
            .ok_or_else(|| format!("target {target} is no longer configured"))?;
        let holding = Holding {
            holder: holder.clone(),
            privilege: privilege.clone(),
            grant_id: None,
            principal: item.principal.as_ref().map(ToString::to_string),
            entitlement: item.access.clone(),
        };
        connector
            .remove_standing(&holding)
            .await
            .map_err(|e| e.message)?;
        let still = connector
            .discover()
            .await
            .map_err(|e| format!("removed, but discovery could not check: {}", e.message))?
            .iter()
            .any(|h| h.holder == *holder && h.privilege == *privilege && h.grant_id.is_none());
        if still {
            return Err(format!(
                "{holder} still holds {privilege} in {target} after its removal"
            ));
        }
        Ok(format!(
            "discovery of {target} no longer finds {holder} holding {privilege}"
        ))
    }
}

/// Who decides an item nobody decided by the deadline.
pub const DEADLINE: &str = "deadline";

/// The reviewer the rule gives for an item about `p` (administrators where it gives nobody,
/// and never the person the item is about).
fn reviewer_for(
    rule: &ReviewerRule,
    p: Option<&Principal>,
    known: &HashMap<&str, &Principal>,
) -> Reviewer {
    let manager = || {
        p.and_then(|p| p.manager.as_deref())
            .filter(|m| Some(*m) != p.map(|p| p.id.as_str()))
            .and_then(|m| PrincipalId::new(m).ok())
            .map_or(Reviewer::Administrators, Reviewer::Person)
    };
    match rule {
        ReviewerRule::Administrators => Reviewer::Administrators,
        ReviewerRule::Group(g) => Reviewer::Group(g.clone()),
        ReviewerRule::Manager => manager(),
        ReviewerRule::Owner => match p {
            Some(p) if p.kind != PrincipalKind::Human => match p.owner.as_deref() {
                Some(o) if known.contains_key(o) => {
                    PrincipalId::new(o).map_or(Reviewer::Administrators, Reviewer::Person)
                }
                Some(o) if !o.is_empty() => Reviewer::Group(o.to_owned()),
                _ => Reviewer::Administrators,
            },
            _ => manager(),
        },
    }
}
