//! The [`Store`] contract, implemented once over a [`Backend`]: SQLite or PostgreSQL. The SQL
//! is the same on both (numbered `$N` parameters, portable syntax) except where a backend says
//! otherwise; a backend runs statements, transactions and claims in its own way.

use std::{borrow::Cow, sync::Arc};

use async_trait::async_trait;
use hourglass_core::{
    Error, Result, Timestamp,
    audit::{AuditEvent, AuditRecord, Checkpoint},
    campaign::{Campaign, CampaignItem, CampaignState, EligibilityEntry, Progress},
    credential::SealedCredential,
    engine::Wake,
    grant::{Grant, GrantState},
    id::{
        AccessId, CampaignId, CampaignItemId, EntitlementId, GrantId, KeyId, NotificationId,
        PrincipalId, RequestId, TargetId,
    },
    identity::{ApiKey, Identity},
    job::Job,
    notify::{Notification, NotifierStats, Settle},
    request::{Approval, Request, RequestState},
    review::{Review, ReviewId, ReviewState},
    store::{
        Commit, ElevatedScope, GrantCounts, GrantFilter, ItemFilter, PolicyInForce, RequestFilter,
        ReviewFilter, Store, Usage, WriteStats,
    },
    ticket::Ticket,
};

use crate::{
    group::Lease,
    rows::*,
    sql::{Step, Stmt, Wakes, plan, stmt},
};

/// Bookkeeping writes (last seen, last used) happen at most this often per identity or key.
const TOUCH_EVERY_MS: i64 = 60_000;

/// How long sent and dropped notifications are kept (to recognise a repeat of their event).
const KEEP_SETTLED_MS: i64 = 7 * 24 * 3_600_000;

/// What a database must do for [`SqlStore`]. Public only so that the store types can be named;
/// it cannot be implemented outside this crate.
#[async_trait]
pub trait Backend: Send + Sync + 'static + std::fmt::Debug {
    #[doc(hidden)]
    type Row: Cols + 'static;
    /// Appended to the select that picks work to claim (PostgreSQL: `FOR UPDATE SKIP LOCKED`,
    /// so that replicas claiming at once pass over each other's rows instead of waiting).
    #[doc(hidden)]
    const LOCK_PICKED: &'static str;
    /// Whether several processes may use the database at once.
    #[doc(hidden)]
    const SHARED: bool;
    /// Passes other processes' wake-ups to `wake` (see [`Store::relay_wakes`]).
    #[doc(hidden)]
    fn relay_wakes(&self, wake: Arc<dyn Wake>) {
        let _ = wake;
    }
    /// After rows were copied in verbatim (`store copy`): brings derived state up to date.
    #[doc(hidden)]
    async fn imported(&self) -> Result<()> {
        Ok(())
    }
    /// Rows of a read, from the last committed state.
    #[doc(hidden)]
    async fn all(&self, s: Stmt) -> Result<Vec<Self::Row>>;
    /// One write statement in its own transaction; the rows it changed.
    #[doc(hidden)]
    async fn run(&self, s: Stmt) -> Result<u64>;
    /// Runs `steps` then appends `audit` to the chain, in one transaction; the last sequence
    /// number. A step expecting one row that changes none fails it all with a conflict.
    #[doc(hidden)]
    async fn write(
        &self,
        steps: Vec<Step>,
        audit: Vec<AuditRecord>,
        wakes: Wakes,
    ) -> Result<Option<u64>>;
    /// Runs `steps` in one transaction of the group writer, with no audit records; the rows
    /// each changed. A step expecting one row that changes none fails them all with a conflict.
    #[doc(hidden)]
    async fn steps(&self, steps: Vec<Step>) -> Result<Vec<u64>>;
    /// In one transaction: `before`, then `pick` (ids, in a column `id`), then `lease(id)` for
    /// each, returning the leased rows.
    #[doc(hidden)]
    async fn claim(&self, before: Option<Stmt>, pick: Stmt, lease: Lease)
    -> Result<Vec<Self::Row>>;
    /// One statement that changes rows and returns them, in a transaction of the group writer.
    #[doc(hidden)]
    async fn take(&self, stmt: Stmt) -> Result<Vec<Self::Row>>;
    /// How writes were grouped into transactions so far.
    #[doc(hidden)]
    fn write_stats(&self) -> WriteStats;
}

/// A [`Store`] on a SQL database.
#[derive(Debug, Clone)]
pub struct SqlStore<B>(pub(crate) B);

impl<B: Backend> SqlStore<B> {
    async fn opt<T>(&self, s: Stmt, f: fn(&B::Row) -> Result<T>) -> Result<Option<T>> {
        self.0.all(s).await?.first().map(f).transpose()
    }

    async fn list<T>(&self, s: Stmt, f: fn(&B::Row) -> Result<T>) -> Result<Vec<T>> {
        self.0.all(s).await?.iter().map(f).collect()
    }

    async fn first(&self, s: Stmt) -> Result<B::Row> {
        self.0
            .all(s)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::internal("store: a one-row query returned none"))
    }

    async fn next_at(&self, sql: &'static str) -> Result<Option<Timestamp>> {
        let row = self.first(stmt!(sql)).await?;
        Ok(opt_ts(get(&row, "next")?))
    }

    fn picked(&self, sql: &'static str) -> Cow<'static, str> {
        if B::LOCK_PICKED.is_empty() {
            Cow::Borrowed(sql)
        } else {
            Cow::Owned(format!("{sql} {}", B::LOCK_PICKED))
        }
    }
}

fn count(row: &impl Cols, c: &str) -> Result<u64> {
    get::<i64>(row, c).map(|v| u64::try_from(v).unwrap_or(0))
}

fn cap(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl<B: Backend> Store for SqlStore<B> {
    async fn commit(&self, c: Commit) -> Result<Option<u64>> {
        if c.is_empty() {
            return Ok(None);
        }
        let (steps, wakes) = (plan(&c)?, Wakes::of(&c));
        self.0.write(steps, c.audit, wakes).await
    }

    async fn get_request(&self, id: &RequestId) -> Result<Option<Request>> {
        self.opt(
            stmt!("SELECT * FROM requests WHERE id = $1", id.as_str()),
            request_from,
        )
        .await
    }

    async fn list_requests(&self, f: &RequestFilter) -> Result<Vec<Request>> {
        self.list(
            stmt!(
                "SELECT * FROM requests WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR requester = $2)
                   AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
                f.state.map(RequestState::as_str),
                f.requester.as_ref().map(PrincipalId::as_str),
                f.before.as_ref().map(RequestId::as_str),
                f.limit,
            ),
            request_from,
        )
        .await
    }

    async fn list_approvals(&self, id: &RequestId) -> Result<Vec<Approval>> {
        self.list(
            stmt!(
                "SELECT * FROM approvals WHERE request_id = $1 ORDER BY at, approver",
                id.as_str()
            ),
            approval_from,
        )
        .await
    }

    async fn get_grant(&self, id: &GrantId) -> Result<Option<Grant>> {
        self.opt(
            stmt!("SELECT * FROM grants WHERE id = $1", id.as_str()),
            grant_from,
        )
        .await
    }

    async fn list_grants(&self, f: &GrantFilter) -> Result<Vec<Grant>> {
        self.list(
            stmt!(
                "SELECT * FROM grants WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR principal = $2)
                   AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
                f.state.map(GrantState::as_str),
                f.principal.as_ref().map(PrincipalId::as_str),
                f.before.as_ref().map(GrantId::as_str),
                f.limit,
            ),
            grant_from,
        )
        .await
    }

    async fn get_job(&self, grant_id: &GrantId) -> Result<Option<Job>> {
        self.opt(
            stmt!(
                "SELECT * FROM grant_jobs WHERE grant_id = $1",
                grant_id.as_str()
            ),
            job_from,
        )
        .await
    }

    async fn get_review(&self, id: &ReviewId) -> Result<Option<Review>> {
        self.opt(
            stmt!("SELECT * FROM reviews WHERE id = $1", id.as_str()),
            review_from,
        )
        .await
    }

    async fn list_reviews(&self, f: &ReviewFilter) -> Result<Vec<Review>> {
        self.list(
            stmt!(
                "SELECT * FROM reviews WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR id < $2)
                   ORDER BY id DESC LIMIT $3",
                f.state.map(ReviewState::as_str),
                f.before.as_ref().map(ReviewId::as_str),
                f.limit,
            ),
            review_from,
        )
        .await
    }

    async fn get_campaign(&self, id: &CampaignId) -> Result<Option<Campaign>> {
        self.opt(
            stmt!("SELECT * FROM campaigns WHERE id = $1", id.as_str()),
            campaign_from,
        )
        .await
    }

    async fn list_campaigns(
        &self,
        state: Option<CampaignState>,
        limit: u32,
    ) -> Result<Vec<Campaign>> {
        self.list(
            stmt!(
                "SELECT * FROM campaigns WHERE ($1 IS NULL OR state = $1) ORDER BY id DESC LIMIT $2",
                state.map(CampaignState::as_str),
                limit,
            ),
            campaign_from,
        )
        .await
    }

    async fn get_campaign_item(&self, id: &CampaignItemId) -> Result<Option<CampaignItem>> {
        self.opt(
            stmt!("SELECT * FROM campaign_items WHERE id = $1", id.as_str()),
            campaign_item_from,
        )
        .await
    }

    async fn campaign_items(&self, f: &ItemFilter) -> Result<Vec<CampaignItem>> {
        // `id > COALESCE($n, '')` (every id sorts after '') keeps the page a range of the
        // index; with a reviewer, that reviewer's index (`$n IS NULL OR reviewer = $n` would
        // keep either database from using it).
        let after = f.after.as_ref().map(CampaignItemId::as_str);
        let stmt = match &f.reviewer {
            Some(r) => stmt!(
                "SELECT * FROM campaign_items WHERE campaign = $1 AND reviewer = $2
                   AND id > COALESCE($3, '') AND (NOT $4 OR decision IS NULL)
                 ORDER BY id LIMIT $5",
                f.campaign.as_str(),
                String::from(r.clone()),
                after,
                f.undecided,
                f.limit,
            ),
            None => stmt!(
                "SELECT * FROM campaign_items WHERE campaign = $1
                   AND id > COALESCE($2, '') AND (NOT $3 OR decision IS NULL)
                 ORDER BY id LIMIT $4",
                f.campaign.as_str(),
                after,
                f.undecided,
                f.limit,
            ),
        };
        self.list(stmt, campaign_item_from).await
    }

    async fn campaign_progress(&self, id: &CampaignId) -> Result<Progress> {
        let row = self
            .first(stmt!(
                "SELECT COUNT(*) AS total,
                        COUNT(decision) AS decided,
                        COUNT(CASE WHEN decision = 'keep' THEN 1 END) AS keep,
                        COUNT(CASE WHEN decision = 'remove' THEN 1 END) AS remove,
                        COUNT(CASE WHEN decision = 'convert' THEN 1 END) AS convert,
                        COUNT(CASE WHEN decided_by = 'deadline' THEN 1 END) AS by_default,
                        COUNT(CASE WHEN work = 'pending' THEN 1 END) AS work_pending,
                        COUNT(CASE WHEN work = 'failed' THEN 1 END) AS work_failed
                   FROM campaign_items WHERE campaign = $1",
                id.as_str(),
            ))
            .await?;
        Ok(Progress {
            total: count(&row, "total")?,
            decided: count(&row, "decided")?,
            keep: count(&row, "keep")?,
            remove: count(&row, "remove")?,
            convert: count(&row, "convert")?,
            by_default: count(&row, "by_default")?,
            work_pending: count(&row, "work_pending")?,
            work_failed: count(&row, "work_failed")?,
        })
    }

    async fn due_campaign_work(&self, now: Timestamp, limit: u32) -> Result<Vec<CampaignItem>> {
        self.list(
            stmt!(
                "SELECT * FROM campaign_items WHERE work = 'pending' AND run_at <= $1
                 ORDER BY run_at, id LIMIT $2",
                now,
                limit,
            ),
            campaign_item_from,
        )
        .await
    }

    async fn eligibility_of(&self, principal: &PrincipalId) -> Result<Vec<EligibilityEntry>> {
        self.list(
            stmt!(
                "SELECT * FROM eligibility WHERE principal = $1 ORDER BY access",
                principal.as_str(),
            ),
            eligibility_from,
        )
        .await
    }

    async fn grants_of_request(&self, id: &RequestId) -> Result<Vec<Grant>> {
        self.list(
            stmt!(
                "SELECT * FROM grants WHERE request_id = $1 ORDER BY id",
                id.as_str()
            ),
            grant_from,
        )
        .await
    }

    async fn live_grants_of(
        &self,
        principal: &PrincipalId,
        entitlement: &EntitlementId,
    ) -> Result<Vec<Grant>> {
        self.list(
            stmt!(
                "SELECT * FROM grants WHERE principal = $1 AND entitlement = $2
                   AND state IN ('provisioning', 'active') ORDER BY id",
                principal.as_str(),
                entitlement.as_str(),
            ),
            grant_from,
        )
        .await
    }

    async fn pending_requests_of(
        &self,
        requester: &PrincipalId,
        access: &AccessId,
    ) -> Result<Vec<Request>> {
        self.list(
            stmt!(
                "SELECT * FROM requests WHERE requester = $1 AND entitlement = $2 AND access_kind = $3
                   AND state = 'pending' ORDER BY id",
                requester.as_str(),
                access.name(),
                access.kind(),
            ),
            request_from,
        )
        .await
    }

    async fn usage(
        &self,
        principal: &PrincipalId,
        entitlement: &EntitlementId,
        since: Timestamp,
        limit: u64,
    ) -> Result<Usage> {
        let row = self
            .first(stmt!(
                "SELECT
                   (SELECT COUNT(*) FROM (SELECT 1 FROM grants WHERE principal = $1
                      AND state IN ('provisioning', 'active') LIMIT $4) p) AS principal_live,
                   (SELECT COUNT(*) FROM (SELECT 1 FROM grants WHERE entitlement = $2
                      AND state IN ('provisioning', 'active') LIMIT $4) e) AS entitlement_live,
                   (SELECT COUNT(*) FROM (SELECT 1 FROM requests WHERE requester = $1 AND created_at > $3
                      LIMIT $4) pr) AS principal_requests,
                   (SELECT COUNT(*) FROM (SELECT 1 FROM requests WHERE entitlement = $2 AND created_at > $3
                      LIMIT $4) er) AS entitlement_requests",
                principal.as_str(),
                entitlement.as_str(),
                since,
                cap(limit),
            ))
            .await?;
        Ok(Usage {
            principal_live_grants: count(&row, "principal_live")?,
            entitlement_live_grants: count(&row, "entitlement_live")?,
            principal_requests: count(&row, "principal_requests")?,
            entitlement_requests: count(&row, "entitlement_requests")?,
        })
    }

    async fn get_identity(&self, id: &PrincipalId) -> Result<Option<Identity>> {
        self.opt(
            stmt!("SELECT * FROM identities WHERE id = $1", id.as_str()),
            identity_from,
        )
        .await
    }

    async fn list_identities(&self) -> Result<Vec<Identity>> {
        self.list(stmt!("SELECT * FROM identities ORDER BY id"), identity_from)
            .await
    }

    async fn get_directory(
        &self,
        kind: hourglass_core::directory::DirectoryKind,
        id: &str,
    ) -> Result<Option<hourglass_core::directory::DirectoryEntry>> {
        self.opt(
            stmt!(
                "SELECT * FROM directory WHERE kind = $1 AND id = $2",
                kind.as_str(),
                id
            ),
            crate::rows::directory_from,
        )
        .await
    }

    async fn find_directory_name(
        &self,
        kind: hourglass_core::directory::DirectoryKind,
        name: &str,
    ) -> Result<Option<hourglass_core::directory::DirectoryEntry>> {
        self.opt(
            stmt!(
                "SELECT * FROM directory WHERE kind = $1 AND name_key = $2",
                kind.as_str(),
                hourglass_core::directory::DirectoryEntry::name_key(name)
            ),
            crate::rows::directory_from,
        )
        .await
    }

    async fn directory_user_of(
        &self,
        principal: &PrincipalId,
    ) -> Result<Option<hourglass_core::directory::DirectoryEntry>> {
        self.opt(
            stmt!(
                "SELECT * FROM directory WHERE kind = 'user' AND principal = $1",
                principal.as_str()
            ),
            crate::rows::directory_from,
        )
        .await
    }

    async fn directory_reports(
        &self,
        manager_id: &str,
    ) -> Result<Vec<hourglass_core::directory::DirectoryEntry>> {
        self.list(
            stmt!(
                "SELECT * FROM directory WHERE kind = 'user' AND manager_id = $1 ORDER BY id",
                manager_id
            ),
            crate::rows::directory_from,
        )
        .await
    }

    async fn list_directory(
        &self,
        kind: hourglass_core::directory::DirectoryKind,
    ) -> Result<Vec<hourglass_core::directory::DirectoryEntry>> {
        self.list(
            stmt!(
                "SELECT * FROM directory WHERE kind = $1 ORDER BY created_at, id",
                kind.as_str()
            ),
            crate::rows::directory_from,
        )
        .await
    }

    async fn get_key(&self, id: &KeyId) -> Result<Option<ApiKey>> {
        self.opt(
            stmt!("SELECT * FROM api_keys WHERE id = $1", id.as_str()),
            key_from,
        )
        .await
    }

    async fn find_key_by_prefix(&self, prefix: &str) -> Result<Option<ApiKey>> {
        self.opt(
            stmt!("SELECT * FROM api_keys WHERE prefix = $1", prefix),
            key_from,
        )
        .await
    }

    async fn find_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        self.opt(
            stmt!("SELECT * FROM api_keys WHERE hash = $1", hash),
            key_from,
        )
        .await
    }

    async fn list_keys(&self, principal: Option<&PrincipalId>) -> Result<Vec<ApiKey>> {
        self.list(
            stmt!(
                "SELECT * FROM api_keys WHERE ($1 IS NULL OR principal = $1) ORDER BY created_at, id",
                principal.map(PrincipalId::as_str),
            ),
            key_from,
        )
        .await
    }

    async fn touch(
        &self,
        principal: &PrincipalId,
        key: Option<&KeyId>,
        at: Timestamp,
    ) -> Result<()> {
        let stale = at.unix_millis() - TOUCH_EVERY_MS;
        // A cheap read first: most calls change nothing and need no write transaction.
        let row = self
            .first(stmt!(
                "SELECT (SELECT COALESCE(last_seen_at, 0) FROM identities WHERE id = $1) AS seen,
                        (SELECT COALESCE(last_used_at, 0) FROM api_keys WHERE id = $2) AS used",
                principal.as_str(),
                key.map(KeyId::as_str),
            ))
            .await?;
        let seen: Option<i64> = get(&row, "seen")?;
        let used: Option<i64> = get(&row, "used")?;
        let seen_stale = seen.is_some_and(|s| s < stale);
        let used_stale = key.is_some() && used.is_some_and(|u| u < stale);
        if !seen_stale && !used_stale {
            return Ok(());
        }
        let mut steps = vec![Step::any(stmt!(
            "UPDATE identities SET last_seen_at = $1 WHERE id = $2 AND COALESCE(last_seen_at, 0) < $3",
            at,
            principal.as_str(),
            stale,
        ))];
        if let Some(k) = key {
            steps.push(Step::any(stmt!(
                "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND COALESCE(last_used_at, 0) < $3",
                at,
                k.as_str(),
                stale,
            )));
        }
        self.0
            .write(steps, Vec::new(), Wakes::default())
            .await
            .map(drop)
    }

    async fn get_session(&self, id_hash: &str) -> Result<Option<hourglass_core::session::Session>> {
        self.opt(
            stmt!("SELECT * FROM sessions WHERE id_hash = $1", id_hash),
            crate::rows::session_from,
        )
        .await
    }

    async fn touch_session(&self, id_hash: &str, at: Timestamp) -> Result<()> {
        let stale = at.unix_millis() - TOUCH_EVERY_MS;
        self.0
            .run(stmt!(
                "UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2 AND last_seen_at < $3",
                at,
                id_hash,
                stale,
            ))
            .await
            .map(drop)
    }

    async fn waiting_credential(
        &self,
        id: &GrantId,
        holder: &PrincipalId,
        sealed_prefix: &str,
        now: Timestamp,
    ) -> Result<Option<SealedCredential>> {
        // Credentials past their end go with their grant's expiry commit, so there is nothing
        // to sweep here.
        let rows = self
            .0
            .all(stmt!(
                "SELECT * FROM sealed_credentials WHERE grant_id = $1 AND holder = $2
                       AND substr(sealed, 1, length($3)) = $3 AND expires_at > $4",
                id.as_str(),
                holder.as_str(),
                sealed_prefix,
                now,
            ))
            .await?;
        rows.first().map(sealed_from).transpose()
    }

    async fn policy_in_force(&self) -> Result<Option<PolicyInForce>> {
        let rows = self
            .0
            .all(stmt!(
                "SELECT hash, set_at, set_by FROM policy_in_force WHERE id = 1"
            ))
            .await?;
        rows.first()
            .map(|r| {
                Ok(PolicyInForce {
                    hash: get(r, "hash")?,
                    set_at: Timestamp::from_unix_millis(get(r, "set_at")?),
                    set_by: get(r, "set_by")?,
                })
            })
            .transpose()
    }

    async fn ended_early(&self, target: &TargetId, now: Timestamp) -> Result<Vec<GrantId>> {
        let rows = self
            .0
            .all(stmt!(
                "SELECT id FROM grants WHERE target = $1 AND expires_at > $2
                   AND state IN ('revoking', 'revoked', 'failed') ORDER BY id",
                target.as_str(),
                now,
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = get(r, "id")?;
                GrantId::parse(&id).ok_or_else(|| crate::error::corrupt("grant id", &id))
            })
            .collect()
    }

    async fn waiting_credentials(
        &self,
        holder: &PrincipalId,
        now: Timestamp,
    ) -> Result<Vec<GrantId>> {
        let rows = self
            .0
            .all(stmt!(
                "SELECT grant_id FROM sealed_credentials WHERE holder = $1 AND expires_at > $2",
                holder.as_str(),
                now,
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = get(r, "grant_id")?;
                GrantId::parse(&id).ok_or_else(|| crate::error::corrupt("grant id", &id))
            })
            .collect()
    }

    async fn is_token_used(&self, issuer: &str, jti: &str, now: Timestamp) -> Result<bool> {
        let row = self
            .first(stmt!(
                "SELECT COUNT(*) AS n FROM token_uses WHERE issuer = $1 AND jti = $2 AND expires_at > $3",
                issuer,
                jti,
                now,
            ))
            .await?;
        Ok(count(&row, "n")? > 0)
    }

    async fn due_expiries(&self, now: Timestamp, limit: u32) -> Result<Vec<Grant>> {
        self.list(
            stmt!(
                "SELECT * FROM grants WHERE state = 'active' AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
                now,
                limit,
            ),
            grant_from,
        )
        .await
    }

    async fn next_expiry(&self) -> Result<Option<Timestamp>> {
        self.next_at("SELECT MIN(expires_at) AS next FROM grants WHERE state = 'active'")
            .await
    }

    async fn due_request_deadlines(&self, now: Timestamp, limit: u32) -> Result<Vec<Request>> {
        self.list(
            stmt!(
                "SELECT * FROM requests WHERE state = 'pending' AND decide_by <= $1 ORDER BY decide_by LIMIT $2",
                now,
                limit,
            ),
            request_from,
        )
        .await
    }

    async fn next_request_deadline(&self) -> Result<Option<Timestamp>> {
        self.next_at("SELECT MIN(decide_by) AS next FROM requests WHERE state = 'pending'")
            .await
    }

    async fn claim_jobs(
        &self,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Job>> {
        // A read first: a worker woken with nothing due (another replica took it, or the wake-up
        // was for later work) opens no write transaction.
        if self
            .0
            .all(stmt!(
                "SELECT 1 AS due FROM grant_jobs WHERE due_at <= $1 LIMIT 1",
                now
            ))
            .await?
            .is_empty()
        {
            return Ok(Vec::new());
        }
        let pick = Stmt {
            sql: self.picked(
                "SELECT grant_id AS id FROM grant_jobs WHERE due_at <= $1 ORDER BY due_at LIMIT $2",
            ),
            ..stmt!("", now, limit)
        };
        let owner = owner.to_owned();
        let lease: Lease = Box::new(move |id: String| {
            Ok(stmt!(
                "UPDATE grant_jobs SET lease_owner = $1, lease_token = $2, lease_until = $3, due_at = $3
                 WHERE grant_id = $4 RETURNING *",
                owner.as_str(),
                hourglass_core::id::random_hex::<16>()?,
                lease_until,
                id,
            ))
        });
        let rows = self.0.claim(None, pick, lease).await?;
        rows.iter().map(job_from).collect()
    }

    async fn next_job_at(&self) -> Result<Option<Timestamp>> {
        self.next_at("SELECT MIN(due_at) AS next FROM grant_jobs")
            .await
    }

    async fn release_all_leases(&self) -> Result<u64> {
        let mut released = 0;
        for sql in [
            "UPDATE grant_jobs SET lease_owner = NULL, lease_token = NULL, lease_until = NULL, due_at = run_at
             WHERE lease_token IS NOT NULL",
            "UPDATE notifications SET lease_owner = NULL, lease_token = NULL, lease_until = NULL, due_at = run_at
             WHERE lease_token IS NOT NULL AND state = 'pending'",
        ] {
            released += self.0.run(stmt!(sql)).await?;
        }
        Ok(released)
    }

    async fn requests_with_ticket(&self, reference: &str, limit: u32) -> Result<Vec<Request>> {
        self.list(
            stmt!(
                "SELECT * FROM requests r WHERE r.ticket = $1 AND (r.state IN ('pending', 'approved')
                   OR (r.state = 'fulfilled' AND EXISTS (SELECT 1 FROM grants g
                        WHERE g.request_id = r.id AND g.state IN ('provisioning', 'active'))))
                 ORDER BY r.id LIMIT $2",
                reference,
                limit,
            ),
            request_from,
        )
        .await
    }

    async fn live_tickets(&self, limit: u32) -> Result<Vec<String>> {
        let rows = self
            .0
            .all(stmt!(
                "SELECT ticket FROM requests WHERE ticket IS NOT NULL AND state IN ('pending', 'approved')
                 UNION
                 SELECT r.ticket FROM grants g JOIN requests r ON r.id = g.request_id
                  WHERE g.state IN ('provisioning', 'active') AND r.ticket IS NOT NULL
                 ORDER BY 1 LIMIT $1",
                limit,
            ))
            .await?;
        rows.iter().map(|r| get(r, "ticket")).collect()
    }

    async fn get_ticket(&self, source: &str, reference: &str) -> Result<Option<Ticket>> {
        let rows = self
            .0
            .all(stmt!(
                "SELECT ticket FROM tickets WHERE source = $1 AND reference = $2",
                source,
                reference,
            ))
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let text: String = get(row, "ticket")?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|_| crate::error::corrupt("ticket", &text))
    }

    async fn claim_notifications(
        &self,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Notification>> {
        let forget = stmt!(
            "DELETE FROM notifications WHERE state IN ('sent', 'dropped') AND updated_at < $1",
            now.unix_millis() - KEEP_SETTLED_MS,
        );
        let pick = Stmt {
            sql: self.picked(
                "SELECT id FROM notifications WHERE state = 'pending' AND due_at <= $1
                 ORDER BY due_at LIMIT $2",
            ),
            ..stmt!("", now, limit)
        };
        let owner = owner.to_owned();
        let lease: Lease = Box::new(move |id: String| {
            Ok(stmt!(
                "UPDATE notifications SET lease_owner = $1, lease_token = $2, lease_until = $3, due_at = $3
                 WHERE id = $4 RETURNING *",
                owner.as_str(),
                hourglass_core::id::random_hex::<16>()?,
                lease_until,
                id,
            ))
        });
        let rows = self.0.claim(Some(forget), pick, lease).await?;
        rows.iter().map(notification_from).collect()
    }

    async fn settle_notification(
        &self,
        id: &NotificationId,
        lease_token: &str,
        settle: &Settle,
        at: Timestamp,
    ) -> Result<bool> {
        let (state, run_at, error, failed, receipt) = match settle {
            Settle::Sent { receipt } => ("sent", None, None, 0, receipt.as_deref()),
            Settle::Retry { run_at, error } => {
                ("pending", Some(*run_at), Some(error.as_str()), 1, None)
            }
            Settle::Dead { error } => ("dead", None, Some(error.as_str()), 1, None),
            Settle::Dropped { why } => ("dropped", None, Some(why.as_str()), 0, None),
        };
        let changed = self
            .0
            .run(stmt!(
                "UPDATE notifications SET state = $1, run_at = COALESCE($2, run_at), due_at = COALESCE($2, due_at),
                   last_error = COALESCE($3, last_error), attempts = attempts + $4, updated_at = $5,
                   lease_owner = NULL, lease_token = NULL, lease_until = NULL,
                   receipt = COALESCE($8, receipt)
                 WHERE id = $6 AND lease_token = $7 AND state = 'pending'",
                state,
                run_at,
                error,
                i64::from(failed),
                at,
                id.as_str(),
                lease_token,
                receipt,
            ))
            .await?;
        Ok(changed == 1)
    }

    async fn next_notification_at(&self) -> Result<Option<Timestamp>> {
        self.next_at("SELECT MIN(due_at) AS next FROM notifications WHERE state = 'pending'")
            .await
    }

    async fn notification_stats(&self) -> Result<Vec<NotifierStats>> {
        let rows = self
            .0
            .all(stmt!(
                "SELECT notifier,
                        COUNT(CASE WHEN state = 'pending' THEN 1 END) AS pending,
                        COUNT(CASE WHEN state = 'dead' THEN 1 END) AS dead
                   FROM notifications WHERE state IN ('pending', 'dead') GROUP BY notifier ORDER BY notifier"
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(NotifierStats {
                    notifier: get(r, "notifier")?,
                    pending: count(r, "pending")?,
                    dead: count(r, "dead")?,
                })
            })
            .collect()
    }

    async fn get_notification(&self, id: &NotificationId) -> Result<Option<Notification>> {
        self.opt(
            stmt!("SELECT * FROM notifications WHERE id = $1", id.as_str()),
            notification_from,
        )
        .await
    }

    async fn notifications_about(&self, subject: &str) -> Result<Vec<Notification>> {
        self.list(
            stmt!(
                "SELECT * FROM notifications WHERE subject = $1 ORDER BY created_at, id",
                subject
            ),
            notification_from,
        )
        .await
    }

    async fn audit_after(&self, after: u64, limit: u32) -> Result<Vec<AuditEvent>> {
        // The live chain starts after the latest checkpoint, even while an archive is still
        // deleting the events it covers.
        self.list(
            stmt!(
                "SELECT * FROM audit_events WHERE seq > $1 AND seq > COALESCE(
                   (SELECT MAX(through_seq) FROM audit_archives), 0)
                 ORDER BY seq LIMIT $2",
                cap(after),
                limit,
            ),
            audit_from,
        )
        .await
    }

    async fn audit_head_seq(&self) -> Result<u64> {
        let row = self
            .first(stmt!(
                "SELECT COALESCE(MAX(seq), (SELECT MAX(through_seq) FROM audit_archives), 0) AS seq
                 FROM audit_events"
            ))
            .await?;
        count(&row, "seq")
    }

    async fn audit_checkpoint(&self) -> Result<Option<Checkpoint>> {
        self.checkpoint().await
    }

    async fn archive_audit(
        &self,
        checkpoint: &Checkpoint,
        record: hourglass_core::audit::AuditRecord,
    ) -> Result<u64> {
        self.archive(checkpoint, record).await
    }

    async fn elevated(&self, scope: &ElevatedScope) -> Result<Vec<Grant>> {
        let target = scope.target.as_ref().map(TargetId::as_str);
        let entitlement = scope.entitlement.as_ref().map(EntitlementId::as_str);
        // With a person, their grants by activation (an index); `? IS NULL OR principal = ?`
        // would keep either database from using it.
        let stmt = match &scope.principal {
            Some(p) => stmt!(
                "SELECT * FROM grants WHERE principal = $1 AND activated_at IS NOT NULL
                   AND activated_at < $2 AND (ended_at IS NULL OR ended_at > $3)
                   AND ($4 IS NULL OR target = $4) AND ($5 IS NULL OR entitlement = $5)
                 ORDER BY activated_at, id LIMIT $6",
                p.as_str(),
                scope.to,
                scope.from,
                target,
                entitlement,
                scope.limit,
            ),
            None => stmt!(
                "SELECT * FROM grants WHERE activated_at IS NOT NULL AND activated_at < $1
                   AND (ended_at IS NULL OR ended_at > $2)
                   AND ($3 IS NULL OR target = $3) AND ($4 IS NULL OR entitlement = $4)
                 ORDER BY activated_at, id LIMIT $5",
                scope.to,
                scope.from,
                target,
                entitlement,
                scope.limit,
            ),
        };
        self.list(stmt, grant_from).await
    }

    async fn audit_of(&self, subject: &str) -> Result<Vec<AuditEvent>> {
        self.list(
            stmt!(
                "SELECT * FROM audit_events WHERE subject = $1 AND seq > COALESCE(
                   (SELECT MAX(through_seq) FROM audit_archives), 0)
                 ORDER BY seq",
                subject,
            ),
            audit_from,
        )
        .await
    }

    async fn extensions_of(&self, grant: &GrantId) -> Result<Vec<Request>> {
        self.list(
            stmt!(
                "SELECT * FROM requests WHERE extends = $1 ORDER BY created_at, id",
                grant.as_str(),
            ),
            request_from,
        )
        .await
    }

    async fn overdue_by_target(&self, before: Timestamp) -> Result<Vec<(TargetId, u64)>> {
        self.list(
            stmt!(
                "SELECT target, COUNT(*) AS overdue FROM grants
                  WHERE state = 'revoking' AND revoke_due_at < $1 GROUP BY target ORDER BY target",
                before,
            ),
            |row| {
                let t: String = get(row, "target")?;
                Ok((
                    TargetId::new(t).map_err(Error::internal)?,
                    count(row, "overdue")?,
                ))
            },
        )
        .await
    }

    async fn overdue_revocations(&self, before: Timestamp, limit: u32) -> Result<Vec<Grant>> {
        self.list(
            stmt!(
                "SELECT * FROM grants WHERE state = 'revoking' AND revoke_due_at < $1
                   ORDER BY revoke_due_at, id LIMIT $2",
                before,
                limit,
            ),
            grant_from,
        )
        .await
    }

    async fn grant_counts(&self, overdue_before: Timestamp) -> Result<GrantCounts> {
        let row = self
            .first(stmt!(
                "SELECT
                   (SELECT COUNT(*) FROM grants WHERE state = 'provisioning') AS provisioning,
                   (SELECT COUNT(*) FROM grants WHERE state = 'active') AS active,
                   (SELECT COUNT(*) FROM grants WHERE state = 'revoking') AS revoking,
                   (SELECT COUNT(*) FROM grants WHERE state = 'revoking' AND revoke_due_at < $1) AS overdue",
                overdue_before,
            ))
            .await?;
        Ok(GrantCounts {
            provisioning: count(&row, "provisioning")?,
            active: count(&row, "active")?,
            revoking: count(&row, "revoking")?,
            overdue: count(&row, "overdue")?,
        })
    }

    async fn take_turn(
        &self,
        task: &str,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool> {
        let taken = self
            .0
            .run(stmt!(
                "INSERT INTO worker_turns (task, owner, until) VALUES ($1, $2, $4)
                 ON CONFLICT (task) DO UPDATE SET owner = $2, until = $4
                 WHERE worker_turns.until <= $3 OR worker_turns.owner = $2",
                task,
                owner,
                now,
                until,
            ))
            .await?;
        Ok(taken == 1)
    }

    async fn ping(&self) -> Result<()> {
        self.first(stmt!("SELECT 1 AS one")).await.map(drop)
    }

    fn is_shared(&self) -> bool {
        B::SHARED
    }

    fn relay_wakes(&self, wake: Arc<dyn Wake>) {
        self.0.relay_wakes(wake);
    }

    fn write_stats(&self) -> WriteStats {
        self.0.write_stats()
    }
}
