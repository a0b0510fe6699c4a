//! The store port.
//!
//! Every change goes through [`Store::commit`]: one [`Commit`] holds the new and changed rows,
//! the job changes and the audit records of one use case, and the store writes all of it in one
//! transaction or none of it. Rows carry the version they were read at; a row changed by someone
//! else since makes the whole commit fail with [`Error::StoreConflict`], and the engine re-reads
//! and decides again. Job changes are fenced by their lease token. The store appends audit
//! records to the chain (sequence, previous hash, hash) inside the same transaction.
//!
//! Reads that drive the workers are index-driven: the next due expiry, the next due job, the
//! grants that are due now (bounded by `limit`). Nothing loads every grant.

use async_trait::async_trait;

use crate::{
    Result, Timestamp,
    audit::{AuditEvent, AuditRecord},
    grant::{Grant, GrantState},
    id::NotificationId,
    id::{AccessId, EntitlementId, GrantId, KeyId, PrincipalId, RequestId, TargetId},
    identity::{ApiKey, Identity, TokenUse},
    job::{Job, JobAction},
    notify::{Notification, NotifierStats, Settle},
    request::{Approval, Request, RequestState},
    review::{Review, ReviewId, ReviewState},
    ticket::Ticket,
};

/// A change to a job row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobChange {
    /// Sets the grant's next action (inserting the row, or replacing the action of an existing
    /// one). An existing lease is kept: a job in flight is not run twice at once.
    Schedule {
        grant_id: GrantId,
        action: JobAction,
        run_at: Timestamp,
    },
    /// The leased job is done: delete it, if it still holds `action` under our lease.
    Complete {
        grant_id: GrantId,
        action: JobAction,
        lease_token: String,
    },
    /// Releases our lease and sets when and what to run next, if the job still holds
    /// `from_action` under our lease.
    Reschedule {
        grant_id: GrantId,
        lease_token: String,
        from_action: JobAction,
        action: JobAction,
        run_at: Timestamp,
        attempts: u32,
        last_error: Option<String>,
    },
    /// Gives up our lease without changing the job (someone changed it under us).
    Release {
        grant_id: GrantId,
        lease_token: String,
    },
}

/// One unit of work: written whole or not at all.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    /// Inserted when `version == 0`, else updated if still at `version`.
    pub requests: Vec<Request>,
    pub approvals: Vec<Approval>,
    /// Inserted when `version == 0`, else updated if still at `version`.
    pub grants: Vec<Grant>,
    pub jobs: Vec<JobChange>,
    /// Inserted when `version == 0`, else updated if still at `version`.
    pub reviews: Vec<Review>,
    /// Inserted when `version == 0`, else updated if still at `version`.
    pub identities: Vec<Identity>,
    /// Inserted when `version == 0`, else updated if still at `version`.
    pub keys: Vec<ApiKey>,
    /// Exchanged identity tokens; one already remembered and unexpired fails the commit with
    /// `StoreConflict` (a replay raced this one). Expired ones are forgotten on the way.
    pub token_uses: Vec<(TokenUse, Timestamp)>,
    /// Queued for delivery; one whose notifier already has its `dedup_key` is skipped.
    pub notifications: Vec<Notification>,
    /// What a ticket source reported: `(source, ticket)`, replacing what was remembered.
    pub tickets: Vec<(String, Ticket)>,
    /// New sign-in sessions. Sessions past their absolute end are forgotten on the way.
    pub sessions: Vec<crate::session::Session>,
    /// Sessions ended (by the hash of their id); ending one that is gone changes nothing.
    pub ended_sessions: Vec<String>,
    /// The policy set now in force (by hash), replacing the one before: every replica follows
    /// it.
    pub policy: Option<PolicyInForce>,
    /// Credentials to hand over once, replacing one the grant issued before. A grant in this
    /// commit that is no longer active loses its waiting credential, unseen.
    pub credentials: Vec<crate::credential::SealedCredential>,
    /// Credentials handed over: each deleted exactly as it was read, or the commit conflicts
    /// (another process handed it over first, or it was replaced or withdrawn meanwhile).
    pub credentials_taken: Vec<crate::credential::SealedCredential>,
    /// Directory entries: inserted when `version == 0`, else updated if still at `version`.
    pub directory: Vec<crate::directory::DirectoryEntry>,
    /// Directory entries deleted, if still at the version given.
    pub directory_removed: Vec<(crate::directory::DirectoryKind, String, i64)>,
    /// Access review campaigns: inserted when `version == 0`, else updated if still at
    /// `version`.
    pub campaigns: Vec<crate::campaign::Campaign>,
    /// Campaign items: inserted when `version == 0`, else updated if still at `version`.
    pub campaign_items: Vec<crate::campaign::CampaignItem>,
    /// Reviewed eligibility, replacing what the ledger held for the same principal and access.
    pub eligibility: Vec<crate::campaign::EligibilityEntry>,
    /// An archive checkpoint to record ([`Store::archive_audit`] writes it, with its record).
    pub archive: Option<crate::audit::Checkpoint>,
    pub audit: Vec<AuditRecord>,
}

impl Commit {
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
            && self.approvals.is_empty()
            && self.grants.is_empty()
            && self.reviews.is_empty()
            && self.jobs.is_empty()
            && self.identities.is_empty()
            && self.keys.is_empty()
            && self.token_uses.is_empty()
            && self.notifications.is_empty()
            && self.tickets.is_empty()
            && self.sessions.is_empty()
            && self.ended_sessions.is_empty()
            && self.credentials.is_empty()
            && self.credentials_taken.is_empty()
            && self.directory.is_empty()
            && self.directory_removed.is_empty()
            && self.campaigns.is_empty()
            && self.campaign_items.is_empty()
            && self.eligibility.is_empty()
            && self.archive.is_none()
            && self.policy.is_none()
            && self.audit.is_empty()
    }
}

/// The policy set in force, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInForce {
    /// The set's hash (`PolicyDecider::policy_hash`).
    pub hash: String,
    pub set_at: Timestamp,
    /// Who put it in force: a principal, or `system` (a start, a signal).
    pub set_by: String,
}

/// Which requests to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub state: Option<RequestState>,
    pub requester: Option<PrincipalId>,
    /// Only ids lower than this (the page before).
    pub before: Option<RequestId>,
    pub limit: u32,
}

/// Which grants to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    pub state: Option<GrantState>,
    pub principal: Option<PrincipalId>,
    pub before: Option<GrantId>,
    pub limit: u32,
}

/// Which reviews to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct ReviewFilter {
    pub state: Option<ReviewState>,
    pub before: Option<ReviewId>,
    pub limit: u32,
}

/// Which campaign items to list, by id.
#[derive(Debug, Clone)]
pub struct ItemFilter {
    pub campaign: crate::id::CampaignId,
    /// Only items nobody has decided yet.
    pub undecided: bool,
    /// Only items of this reviewer.
    pub reviewer: Option<crate::campaign::Reviewer>,
    /// Only ids greater than this (the next page).
    pub after: Option<crate::id::CampaignItemId>,
    pub limit: u32,
}

/// How much of its quotas a principal and an entitlement use now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// The principal's grants that are provisioning or active.
    pub principal_live_grants: u64,
    /// The entitlement's grants (anyone's) that are provisioning or active.
    pub entitlement_live_grants: u64,
    /// Requests the principal made after the given moment.
    pub principal_requests: u64,
    /// Requests for the entitlement (anyone's) after the given moment.
    pub entitlement_requests: u64,
}

/// Which elevated states to find.
#[derive(Debug, Clone)]
pub struct ElevatedScope {
    pub principal: Option<PrincipalId>,
    pub target: Option<TargetId>,
    pub entitlement: Option<EntitlementId>,
    pub from: Timestamp,
    pub to: Timestamp,
    pub limit: u32,
}

/// Counts for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrantCounts {
    pub provisioning: u64,
    pub active: u64,
    pub revoking: u64,
    /// Revoking grants whose revocation was due before the given moment.
    pub overdue: u64,
}

/// Persistence for Hourglass. Implemented for SQLite (and PostgreSQL), with one conformance
/// suite for all.
#[async_trait]
pub trait Store: Send + Sync {
    /// Writes a unit of work atomically; returns the last audit sequence number written.
    async fn commit(&self, commit: Commit) -> Result<Option<u64>>;

    async fn get_request(&self, id: &RequestId) -> Result<Option<Request>>;
    async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<Request>>;
    async fn list_approvals(&self, id: &RequestId) -> Result<Vec<Approval>>;
    async fn get_grant(&self, id: &GrantId) -> Result<Option<Grant>>;
    /// The grants a request opened (one per entitlement of a profile), by id.
    async fn grants_of_request(&self, id: &RequestId) -> Result<Vec<Grant>>;
    async fn list_grants(&self, filter: &GrantFilter) -> Result<Vec<Grant>>;
    async fn get_job(&self, grant_id: &GrantId) -> Result<Option<Job>>;
    async fn get_review(&self, id: &ReviewId) -> Result<Option<Review>>;
    /// The principal's provisioning and active grants of the entitlement (from an index).
    async fn live_grants_of(
        &self,
        principal: &PrincipalId,
        entitlement: &EntitlementId,
    ) -> Result<Vec<Grant>>;
    /// The principal's pending requests for the entitlement or profile (from an index).
    async fn pending_requests_of(
        &self,
        requester: &PrincipalId,
        access: &AccessId,
    ) -> Result<Vec<Request>>;
    /// Quota usage of a principal and an entitlement, counting requests made after `since`.
    /// Each count stops at `cap`: a quota check only needs to know whether a limit is reached,
    /// and a busy principal's history must not make every check slower.
    async fn usage(
        &self,
        principal: &PrincipalId,
        entitlement: &EntitlementId,
        since: Timestamp,
        cap: u64,
    ) -> Result<Usage>;
    async fn list_reviews(&self, filter: &ReviewFilter) -> Result<Vec<Review>>;

    async fn get_campaign(
        &self,
        id: &crate::id::CampaignId,
    ) -> Result<Option<crate::campaign::Campaign>>;
    /// Campaigns, newest first; only those in `state` if given.
    async fn list_campaigns(
        &self,
        state: Option<crate::campaign::CampaignState>,
        limit: u32,
    ) -> Result<Vec<crate::campaign::Campaign>>;
    async fn get_campaign_item(
        &self,
        id: &crate::id::CampaignItemId,
    ) -> Result<Option<crate::campaign::CampaignItem>>;
    /// A campaign's items in id order, one page.
    async fn campaign_items(
        &self,
        filter: &ItemFilter,
    ) -> Result<Vec<crate::campaign::CampaignItem>>;
    /// Counts of a campaign's items by decision and work (one grouped query).
    async fn campaign_progress(
        &self,
        id: &crate::id::CampaignId,
    ) -> Result<crate::campaign::Progress>;
    /// Items whose target work is pending and due at `now`, oldest first.
    async fn due_campaign_work(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<crate::campaign::CampaignItem>>;
    /// What reviews decided about one principal's eligibility.
    async fn eligibility_of(
        &self,
        principal: &PrincipalId,
    ) -> Result<Vec<crate::campaign::EligibilityEntry>>;

    async fn get_identity(&self, id: &PrincipalId) -> Result<Option<Identity>>;
    /// Every identity, by name (the inventory: people and machines, not grants).
    async fn list_identities(&self) -> Result<Vec<Identity>>;
    /// A directory entry by its id.
    async fn get_directory(
        &self,
        kind: crate::directory::DirectoryKind,
        id: &str,
    ) -> Result<Option<crate::directory::DirectoryEntry>>;
    /// The directory entry with this name (without regard to case).
    async fn find_directory_name(
        &self,
        kind: crate::directory::DirectoryKind,
        name: &str,
    ) -> Result<Option<crate::directory::DirectoryEntry>>;
    /// The directory's user entry for a principal.
    async fn directory_user_of(
        &self,
        principal: &PrincipalId,
    ) -> Result<Option<crate::directory::DirectoryEntry>>;
    /// The users whose manager is the directory user `manager_id`.
    async fn directory_reports(
        &self,
        manager_id: &str,
    ) -> Result<Vec<crate::directory::DirectoryEntry>>;
    /// Every entry of a kind, in order of creation.
    async fn list_directory(
        &self,
        kind: crate::directory::DirectoryKind,
    ) -> Result<Vec<crate::directory::DirectoryEntry>>;
    async fn get_key(&self, id: &KeyId) -> Result<Option<ApiKey>>;
    /// The key with this public prefix (an index lookup; the caller compares the hash).
    async fn find_key_by_prefix(&self, prefix: &str) -> Result<Option<ApiKey>>;
    /// The key with this hash (tokens declared in configuration have no prefix).
    async fn find_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>>;
    /// Keys of one principal, or of everyone, oldest first.
    async fn list_keys(&self, principal: Option<&PrincipalId>) -> Result<Vec<ApiKey>>;
    /// Records use: the identity's `last_seen_at` and the key's `last_used_at` move to `at` if
    /// they are more than a minute older. Bookkeeping, not a state change: no audit record.
    async fn touch(
        &self,
        principal: &PrincipalId,
        key: Option<&KeyId>,
        at: Timestamp,
    ) -> Result<()>;
    /// The session whose id hashes to `id_hash`, if the store has it (whether live or not is the
    /// caller's judgement: the idle timeout is configuration).
    async fn get_session(&self, id_hash: &str) -> Result<Option<crate::session::Session>>;
    /// Records use of a session: `last_seen_at` moves to `at` if it is more than a minute older.
    /// Bookkeeping, not a state change: no audit record.
    async fn touch_session(&self, id_hash: &str, at: Timestamp) -> Result<()>;
    /// The credential waiting for `holder` on grant `id` whose sealed text begins with
    /// `sealed_prefix` (one this process can open), read, not taken: it is handed over by a
    /// commit that deletes it as read ([`Commit::credentials_taken`]) with its audit record, so
    /// once, whichever process asks. Nothing once the grant's end has passed.
    async fn waiting_credential(
        &self,
        id: &GrantId,
        holder: &PrincipalId,
        sealed_prefix: &str,
        now: Timestamp,
    ) -> Result<Option<crate::credential::SealedCredential>>;
    /// The policy set in force, if one was ever recorded.
    async fn policy_in_force(&self) -> Result<Option<PolicyInForce>>;
    /// Grants of `target` that were revoked (or failed) while their window was open and whose
    /// window is still open at `now`: what a certificate authority must list as revoked.
    async fn ended_early(&self, target: &TargetId, now: Timestamp) -> Result<Vec<GrantId>>;
    /// The grants on which a credential waits for `holder` (not taking any).
    async fn waiting_credentials(
        &self,
        holder: &PrincipalId,
        now: Timestamp,
    ) -> Result<Vec<GrantId>>;
    /// Whether the identity token `jti` of `issuer` was exchanged and has not expired at `now`.
    async fn is_token_used(&self, issuer: &str, jti: &str, now: Timestamp) -> Result<bool>;

    /// Requests bound to a ticket (by reference) that still hold or may become access: pending
    /// or approved, or fulfilled with a grant provisioning or active. Oldest first, at most
    /// `limit`, whatever else was ever bound to the ticket.
    async fn requests_with_ticket(&self, reference: &str, limit: u32) -> Result<Vec<Request>>;
    /// The tickets that something live is bound to: pending or approved requests, and grants
    /// provisioning or active. What the ticket poller asks about.
    async fn live_tickets(&self, limit: u32) -> Result<Vec<String>>;
    /// The last state a source reported for the ticket (written by [`Commit::tickets`]).
    async fn get_ticket(&self, source: &str, reference: &str) -> Result<Option<Ticket>>;

    /// Leases up to `limit` notifications that are due and not leased (or whose lease ran out).
    async fn claim_notifications(
        &self,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Notification>>;
    /// Ends (or reschedules) a claimed notification, if our lease still holds it. Sent and
    /// dropped notifications are kept a week (so a repeat of the event is still recognised),
    /// then forgotten.
    async fn settle_notification(
        &self,
        id: &NotificationId,
        lease_token: &str,
        settle: &Settle,
        at: Timestamp,
    ) -> Result<bool>;
    /// When the next notification becomes claimable.
    async fn next_notification_at(&self) -> Result<Option<Timestamp>>;
    /// Waiting and given-up notifications per notifier.
    async fn notification_stats(&self) -> Result<Vec<NotifierStats>>;
    async fn get_notification(&self, id: &NotificationId) -> Result<Option<Notification>>;
    /// Every notification about one grant or request (by id), oldest first, for tests and
    /// support.
    async fn notifications_about(&self, subject: &str) -> Result<Vec<Notification>>;

    /// Active grants whose window closed at or before `now`, earliest first, at most `limit`.
    async fn due_expiries(&self, now: Timestamp, limit: u32) -> Result<Vec<Grant>>;
    /// The earliest `expires_at` of an active grant.
    async fn next_expiry(&self) -> Result<Option<Timestamp>>;
    /// Pending requests whose `decide_by` passed, at most `limit`.
    async fn due_request_deadlines(&self, now: Timestamp, limit: u32) -> Result<Vec<Request>>;
    /// The earliest `decide_by` of a pending request.
    async fn next_request_deadline(&self) -> Result<Option<Timestamp>>;

    /// Leases up to `limit` jobs that are due and not leased (or whose lease ran out).
    async fn claim_jobs(
        &self,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Job>>;
    /// When the next job becomes claimable.
    async fn next_job_at(&self) -> Result<Option<Timestamp>>;
    /// Drops every lease (at the start of the only process that uses this store).
    async fn release_all_leases(&self) -> Result<u64>;

    /// Audit events with `seq > after`, in order, at most `limit`.
    async fn audit_after(&self, after: u64, limit: u32) -> Result<Vec<AuditEvent>>;
    /// The last audit sequence number (0 when the log is empty).
    async fn audit_head_seq(&self) -> Result<u64>;
    /// The latest archive checkpoint: the live chain continues after it.
    async fn audit_checkpoint(&self) -> Result<Option<crate::audit::Checkpoint>>;
    /// Records `checkpoint` with its audit `record` (`audit.archived`) in one transaction, then
    /// deletes the live events it covers (`seq <= through_seq`) in chunks. The head event is
    /// never archived: a checkpoint at or past the head is refused (`Invalid`), as is one that
    /// is not after the latest checkpoint. Returns how many events were deleted.
    async fn archive_audit(
        &self,
        checkpoint: &crate::audit::Checkpoint,
        record: AuditRecord,
    ) -> Result<u64>;

    async fn grant_counts(&self, overdue_before: Timestamp) -> Result<GrantCounts>;

    /// Grants that were elevated (active, from `activated_at` until `ended_at`) at some moment
    /// of `[from, to)`, by whom and where if given, in the order they became active.
    async fn elevated(&self, scope: &ElevatedScope) -> Result<Vec<Grant>>;

    /// Every audit event about `subject` (a request, a grant), in order.
    async fn audit_of(&self, subject: &str) -> Result<Vec<AuditEvent>>;

    /// The requests that asked to extend `grant`.
    async fn extensions_of(&self, grant: &GrantId) -> Result<Vec<Request>>;

    /// How many revocations due before `before` are still not proven, by target.
    async fn overdue_by_target(&self, before: Timestamp) -> Result<Vec<(TargetId, u64)>>;

    /// Revoking grants whose revocation was due before `before`, the longest overdue first.
    async fn overdue_revocations(&self, before: Timestamp, limit: u32) -> Result<Vec<Grant>>;
    /// Takes the turn at the periodic `task` for `owner` until `until`, unless another owner
    /// holds it past `now`; whether `owner` has it. (One replica a period reconciles.)
    async fn take_turn(
        &self,
        task: &str,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool>;
    /// Whether the store answers.
    async fn ping(&self) -> Result<()>;
    /// Whether several processes share this store (so that work, leases and wake-ups cross
    /// process boundaries). A shared store's leases are never released wholesale at a start.
    fn is_shared(&self) -> bool {
        false
    }
    /// Relays the wake-ups of other processes that share this store to `wake`, until the store
    /// is closed. A store only one process uses has nothing to relay.
    fn relay_wakes(&self, wake: std::sync::Arc<dyn crate::engine::Wake>) {
        let _ = wake;
    }
    /// How this process's writes were grouped into durable transactions so far.
    fn write_stats(&self) -> WriteStats {
        WriteStats::default()
    }
}

/// Group-commit counters of one process (for metrics and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Durable transactions committed.
    pub transactions: u64,
    /// Writes (commits, claims, single statements) those transactions carried, failed ones
    /// included.
    pub writes: u64,
}

/// How many audit events [`walk_audit`] reads at once.
const AUDIT_PAGE: u32 = 10_000;

/// Calls `each` for every audit event after `since`, in order, a page at a time, until `each`
/// returns `Ok(false)`. Memory stays one page whatever the length of the log.
pub async fn walk_audit<E: From<crate::Error>>(
    store: &dyn Store,
    since: u64,
    mut each: impl FnMut(AuditEvent) -> Result<bool, E>,
) -> Result<(), E> {
    let mut after = since;
    loop {
        let page = store.audit_after(after, AUDIT_PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.seq;
        for e in page {
            if !each(e)? {
                return Ok(());
            }
        }
    }
}

/// Walks the whole chain, checking each link. The verifier (events checked, head hash) and the
/// first break, if any; the walk stops at it.
pub async fn verify_chain(
    store: &dyn Store,
) -> crate::Result<(
    crate::audit::ChainVerifier,
    Option<crate::audit::ChainBreak>,
)> {
    let checkpoint = store.audit_checkpoint().await?;
    let v = match &checkpoint {
        Some(c) => crate::audit::ChainVerifier::after(c.through_seq, &c.through_hash),
        None => crate::audit::ChainVerifier::default(),
    };
    verify_live(store, v, checkpoint.as_ref()).await
}

/// Walks the live chain from where `v` expects the next event (after the archives it has
/// already checked, or the checkpoint), checking each link and that `checkpoint`, if any, is
/// vouched for by its `audit.archived` event.
pub async fn verify_live(
    store: &dyn Store,
    mut v: crate::audit::ChainVerifier,
    checkpoint: Option<&crate::audit::Checkpoint>,
) -> crate::Result<(
    crate::audit::ChainVerifier,
    Option<crate::audit::ChainBreak>,
)> {
    let since = v.next_seq() - 1;
    let mut broken = None;
    // The latest checkpoint was recorded with its `audit.archived` event, which is always live
    // (an archive never takes the head, and its own event is appended after it): a checkpoint
    // without one was inserted by hand, and the events before it deleted without an archive.
    let mut vouched = checkpoint.is_none();
    walk_audit::<crate::Error>(store, since, |e| {
        if let Some(c) = checkpoint
            && e.record.action == crate::event::EventKind::AuditArchived.as_str()
            && e.record.subject == c.events_sha256
            && e.record
                .details
                .iter()
                .any(|(k, v)| k == "through_seq" && *v == c.through_seq.to_string())
            && e.record
                .details
                .iter()
                .any(|(k, v)| k == "through_hash" && *v == c.through_hash)
        {
            vouched = true;
        }
        match v.check(&e) {
            Ok(()) => Ok(true),
            Err(b) => {
                broken = Some(b);
                Ok(false)
            }
        }
    })
    .await?;
    if broken.is_none()
        && !vouched
        && let Some(c) = checkpoint
    {
        broken = Some(crate::audit::ChainBreak {
            seq: c.through_seq + 1,
            reason: format!(
                "the checkpoint at {} has no audit.archived event: events were removed without an archive",
                c.through_seq
            ),
        });
    }
    Ok((v, broken))
}
