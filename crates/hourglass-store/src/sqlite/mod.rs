//! The SQLite store: the embedded default.
//!
//! WAL mode with `synchronous=FULL`. Writes go through a pool of exactly one connection and
//! start with `BEGIN IMMEDIATE`, so writers queue in-process instead of spinning on SQLite's
//! lock; reads use a separate pool and see the last committed state. One SQLite file serves one
//! Hourglass process (the server takes a lock file beside it).

use std::{borrow::Cow, str::FromStr, time::Duration};

use async_trait::async_trait;
use hourglass_core::{
    Error, Result, Timestamp,
    audit::AuditEvent,
    grant::{Grant, GrantState},
    id::{AccessId, EntitlementId, GrantId, KeyId, NotificationId, PrincipalId, RequestId},
    identity::{ApiKey, Identity},
    job::Job,
    notify::{Notification, NotifierStats, Settle},
    request::{Approval, Request, RequestState, Verdict},
    review::{Review, ReviewId, ReviewState},
    store::{Commit, GrantCounts, GrantFilter, RequestFilter, ReviewFilter, Store, Usage},
    ticket::Ticket,
};
use sqlx::{
    SqlSafeStr, SqlitePool,
    migrate::{Migration, MigrationType, Migrator},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use crate::error::map;

mod identity;
mod outbox;
mod rows;
mod write;

use rows::*;
use write::*;

/// The SQLite implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) writer: SqlitePool,
    reader: SqlitePool,
}

fn migrator() -> Migrator {
    let step = |version, name, sql: &'static str| {
        Migration::new(
            version,
            Cow::Borrowed(name),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )
    };
    Migrator::with_migrations(vec![
        step(
            1,
            "init",
            include_str!("../../migrations/sqlite/0001_init.sql"),
        ),
        step(
            2,
            "public_key",
            include_str!("../../migrations/sqlite/0002_public_key.sql"),
        ),
        step(
            3,
            "break_glass",
            include_str!("../../migrations/sqlite/0003_break_glass.sql"),
        ),
        step(
            4,
            "identities",
            include_str!("../../migrations/sqlite/0004_identities.sql"),
        ),
        step(
            5,
            "tickets_notifications",
            include_str!("../../migrations/sqlite/0005_tickets_notifications.sql"),
        ),
    ])
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `url` (`sqlite://PATH`).
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, true).await
    }

    /// Opens an existing database without migrating or writing, for offline tools.
    pub async fn open_read_only(url: &str) -> Result<Self> {
        Self::open_with(url, false).await
    }

    async fn open_with(url: &str, write: bool) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::internal(format!("store URL {url:?}: {e}")))?
            .create_if_missing(write)
            .read_only(!write)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(u32::from(write))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await
            .map_err(|e| Error::Unavailable(format!("cannot open {url}: {e}")))?;
        if write {
            migrator()
                .run(&writer)
                .await
                .map_err(|e| Error::internal(format!("migrating {url}: {e}")))?;
        }
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.read_only(true))
            .await
            .map_err(|e| Error::Unavailable(format!("cannot open {url}: {e}")))?;
        Ok(SqliteStore { writer, reader })
    }

    /// Closes both pools, finishing the WAL checkpoint.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

async fn next_at(pool: &SqlitePool, sql: &'static str) -> Result<Option<Timestamp>> {
    let v: Option<i64> = sqlx::query_scalar(sql).fetch_one(pool).await.map_err(map)?;
    Ok(opt_ts(v))
}

#[async_trait]
impl Store for SqliteStore {
    async fn commit(&self, c: Commit) -> Result<Option<u64>> {
        if c.is_empty() {
            return Ok(None);
        }
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map)?;
        // Identities first: keys and requests name them.
        for i in &c.identities {
            identity::write_identity(&mut tx, i).await?;
        }
        for k in &c.keys {
            identity::write_key(&mut tx, k).await?;
        }
        for (u, now) in &c.token_uses {
            identity::write_token_use(&mut tx, u, *now).await?;
        }
        for r in &c.requests {
            write_request(&mut tx, r).await?;
        }
        for g in &c.grants {
            write_grant(&mut tx, g).await?;
        }
        for a in &c.approvals {
            sqlx::query(
                "INSERT INTO approvals (request_id, approver, verdict, via, policy_ids, policy_hash, comment, at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(a.request_id.as_str())
            .bind(&a.approver)
            .bind(match a.verdict {
                Verdict::Approve => "approve",
                Verdict::Deny => "deny",
            })
            .bind(a.via.as_str())
            .bind(json(&a.policy_ids)?)
            .bind(&a.policy_hash)
            .bind(&a.comment)
            .bind(a.at.unix_millis())
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        }
        for j in &c.jobs {
            write_job(&mut tx, j).await?;
        }
        for r in &c.reviews {
            write_review(&mut tx, r).await?;
        }
        for n in &c.notifications {
            outbox::write_notification(&mut tx, n).await?;
        }
        let seq = append_audit(&mut tx, &c.audit).await?;
        tx.commit().await.map_err(map)?;
        Ok(seq)
    }

    async fn get_request(&self, id: &RequestId) -> Result<Option<Request>> {
        sqlx::query("SELECT * FROM requests WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(map)?
            .as_ref()
            .map(request_from)
            .transpose()
    }

    async fn list_requests(&self, f: &RequestFilter) -> Result<Vec<Request>> {
        sqlx::query(
            "SELECT * FROM requests WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR requester = ?2)
               AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?4",
        )
        .bind(f.state.map(RequestState::as_str))
        .bind(f.requester.as_ref().map(PrincipalId::as_str))
        .bind(f.before.as_ref().map(RequestId::as_str))
        .bind(i64::from(f.limit))
        .fetch_all(&self.reader)
        .await
        .map_err(map)?
        .iter()
        .map(request_from)
        .collect()
    }

    async fn list_approvals(&self, id: &RequestId) -> Result<Vec<Approval>> {
        sqlx::query("SELECT * FROM approvals WHERE request_id = ? ORDER BY at, approver")
            .bind(id.as_str())
            .fetch_all(&self.reader)
            .await
            .map_err(map)?
            .iter()
            .map(approval_from)
            .collect()
    }

    async fn get_grant(&self, id: &GrantId) -> Result<Option<Grant>> {
        sqlx::query("SELECT * FROM grants WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(map)?
            .as_ref()
            .map(grant_from)
            .transpose()
    }

    async fn list_grants(&self, f: &GrantFilter) -> Result<Vec<Grant>> {
        sqlx::query(
            "SELECT * FROM grants WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR principal = ?2)
               AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?4",
        )
        .bind(f.state.map(GrantState::as_str))
        .bind(f.principal.as_ref().map(PrincipalId::as_str))
        .bind(f.before.as_ref().map(GrantId::as_str))
        .bind(i64::from(f.limit))
        .fetch_all(&self.reader)
        .await
        .map_err(map)?
        .iter()
        .map(grant_from)
        .collect()
    }

    async fn get_job(&self, grant_id: &GrantId) -> Result<Option<Job>> {
        sqlx::query("SELECT * FROM grant_jobs WHERE grant_id = ?")
            .bind(grant_id.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(map)?
            .as_ref()
            .map(job_from)
            .transpose()
    }

    async fn get_review(&self, id: &ReviewId) -> Result<Option<Review>> {
        sqlx::query("SELECT * FROM reviews WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(map)?
            .as_ref()
            .map(review_from)
            .transpose()
    }

    async fn list_reviews(&self, f: &ReviewFilter) -> Result<Vec<Review>> {
        sqlx::query(
            "SELECT * FROM reviews WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR id < ?2)
               ORDER BY id DESC LIMIT ?3",
        )
        .bind(f.state.map(ReviewState::as_str))
        .bind(f.before.as_ref().map(ReviewId::as_str))
        .bind(i64::from(f.limit))
        .fetch_all(&self.reader)
        .await
        .map_err(map)?
        .iter()
        .map(review_from)
        .collect()
    }

    async fn grants_of_request(&self, id: &RequestId) -> Result<Vec<Grant>> {
        sqlx::query("SELECT * FROM grants WHERE request_id = ? ORDER BY id")
            .bind(id.as_str())
            .fetch_all(&self.reader)
            .await
            .map_err(map)?
            .iter()
            .map(grant_from)
            .collect()
    }

    async fn live_grants_of(
        &self,
        principal: &PrincipalId,
        entitlement: &EntitlementId,
    ) -> Result<Vec<Grant>> {
        sqlx::query(
            "SELECT * FROM grants WHERE principal = ? AND entitlement = ?
               AND state IN ('provisioning', 'active') ORDER BY id",
        )
        .bind(principal.as_str())
        .bind(entitlement.as_str())
        .fetch_all(&self.reader)
        .await
        .map_err(map)?
        .iter()
        .map(grant_from)
        .collect()
    }

    async fn pending_requests_of(
        &self,
        requester: &PrincipalId,
        access: &AccessId,
    ) -> Result<Vec<Request>> {
        sqlx::query(
            "SELECT * FROM requests WHERE requester = ? AND entitlement = ? AND access_kind = ?
               AND state = 'pending' ORDER BY id",
        )
        .bind(requester.as_str())
        .bind(access.name())
        .bind(access.kind())
        .fetch_all(&self.reader)
        .await
        .map_err(map)?
        .iter()
        .map(request_from)
        .collect()
    }

    async fn usage(
        &self,
        principal: &PrincipalId,
        entitlement: &EntitlementId,
        since: Timestamp,
        cap: u64,
    ) -> Result<Usage> {
        let row = sqlx::query(
            "SELECT
               (SELECT COUNT(*) FROM (SELECT 1 FROM grants WHERE principal = ?1
                  AND state IN ('provisioning', 'active') LIMIT ?4)) AS principal_live,
               (SELECT COUNT(*) FROM (SELECT 1 FROM grants WHERE entitlement = ?2
                  AND state IN ('provisioning', 'active') LIMIT ?4)) AS entitlement_live,
               (SELECT COUNT(*) FROM (SELECT 1 FROM requests WHERE requester = ?1 AND created_at > ?3
                  LIMIT ?4)) AS principal_requests,
               (SELECT COUNT(*) FROM (SELECT 1 FROM requests WHERE entitlement = ?2 AND created_at > ?3
                  LIMIT ?4)) AS entitlement_requests",
        )
        .bind(principal.as_str())
        .bind(entitlement.as_str())
        .bind(since.unix_millis())
        .bind(i64::try_from(cap).unwrap_or(i64::MAX))
        .fetch_one(&self.reader)
        .await
        .map_err(map)?;
        let n = |c: &str| get::<i64>(&row, c).map(|v| u64::try_from(v).unwrap_or(0));
        Ok(Usage {
            principal_live_grants: n("principal_live")?,
            entitlement_live_grants: n("entitlement_live")?,
            principal_requests: n("principal_requests")?,
            entitlement_requests: n("entitlement_requests")?,
        })
    }

    async fn get_identity(&self, id: &PrincipalId) -> Result<Option<Identity>> {
        self.identity(id).await
    }
    async fn list_identities(&self) -> Result<Vec<Identity>> {
        self.identities().await
    }
    async fn get_key(&self, id: &KeyId) -> Result<Option<ApiKey>> {
        self.key_where("id", id.as_str()).await
    }
    async fn find_key_by_prefix(&self, prefix: &str) -> Result<Option<ApiKey>> {
        self.key_where("prefix", prefix).await
    }
    async fn find_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        self.key_where("hash", hash).await
    }
    async fn list_keys(&self, principal: Option<&PrincipalId>) -> Result<Vec<ApiKey>> {
        self.keys(principal).await
    }
    async fn touch(
        &self,
        principal: &PrincipalId,
        key: Option<&KeyId>,
        at: Timestamp,
    ) -> Result<()> {
        self.touch_use(principal, key, at).await
    }
    async fn is_token_used(&self, issuer: &str, jti: &str, now: Timestamp) -> Result<bool> {
        self.token_used(issuer, jti, now).await
    }

    async fn due_expiries(&self, now: Timestamp, limit: u32) -> Result<Vec<Grant>> {
        sqlx::query("SELECT * FROM grants WHERE state = 'active' AND expires_at <= ? ORDER BY expires_at LIMIT ?")
            .bind(now.unix_millis())
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(map)?
            .iter()
            .map(grant_from)
            .collect()
    }

    async fn next_expiry(&self) -> Result<Option<Timestamp>> {
        next_at(
            &self.reader,
            "SELECT MIN(expires_at) FROM grants WHERE state = 'active'",
        )
        .await
    }

    async fn due_request_deadlines(&self, now: Timestamp, limit: u32) -> Result<Vec<Request>> {
        sqlx::query("SELECT * FROM requests WHERE state = 'pending' AND decide_by <= ? ORDER BY decide_by LIMIT ?")
            .bind(now.unix_millis())
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(map)?
            .iter()
            .map(request_from)
            .collect()
    }

    async fn next_request_deadline(&self) -> Result<Option<Timestamp>> {
        next_at(
            &self.reader,
            "SELECT MIN(decide_by) FROM requests WHERE state = 'pending'",
        )
        .await
    }

    async fn claim_jobs(
        &self,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Job>> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map)?;
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT grant_id FROM grant_jobs WHERE due_at <= ? ORDER BY due_at LIMIT ?",
        )
        .bind(now.unix_millis())
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(map)?;
        let mut jobs = Vec::with_capacity(due.len());
        for gid in due {
            let token = hourglass_core::id::random_hex::<16>()?;
            let row = sqlx::query(
                "UPDATE grant_jobs SET lease_owner = ?1, lease_token = ?2, lease_until = ?3, due_at = ?3
                 WHERE grant_id = ?4 RETURNING *",
            )
            .bind(owner)
            .bind(&token)
            .bind(lease_until.unix_millis())
            .bind(&gid)
            .fetch_one(&mut *tx)
            .await
            .map_err(map)?;
            jobs.push(job_from(&row)?);
        }
        tx.commit().await.map_err(map)?;
        Ok(jobs)
    }

    async fn next_job_at(&self) -> Result<Option<Timestamp>> {
        next_at(&self.reader, "SELECT MIN(due_at) FROM grant_jobs").await
    }

    async fn release_all_leases(&self) -> Result<u64> {
        let mut released = 0;
        for sql in [
            "UPDATE grant_jobs SET lease_owner = NULL, lease_token = NULL, lease_until = NULL, due_at = run_at
             WHERE lease_token IS NOT NULL",
            "UPDATE notifications SET lease_owner = NULL, lease_token = NULL, lease_until = NULL, due_at = run_at
             WHERE lease_token IS NOT NULL AND state = 'pending'",
        ] {
            released += sqlx::query(sql)
                .execute(&self.writer)
                .await
                .map_err(map)?
                .rows_affected();
        }
        Ok(released)
    }

    async fn requests_with_ticket(&self, reference: &str, limit: u32) -> Result<Vec<Request>> {
        outbox::requests_with_ticket(&self.reader, reference, limit).await
    }

    async fn live_tickets(&self, limit: u32) -> Result<Vec<String>> {
        outbox::live_tickets(&self.reader, limit).await
    }

    async fn record_ticket(&self, source: &str, ticket: &Ticket, at: Timestamp) -> Result<()> {
        outbox::record_ticket(&self.writer, source, ticket, at).await
    }

    async fn get_ticket(&self, source: &str, reference: &str) -> Result<Option<Ticket>> {
        outbox::get_ticket(&self.reader, source, reference).await
    }

    async fn claim_notifications(
        &self,
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Notification>> {
        outbox::claim(&self.writer, now, owner, lease_until, limit).await
    }

    async fn settle_notification(
        &self,
        id: &NotificationId,
        lease_token: &str,
        settle: &Settle,
        at: Timestamp,
    ) -> Result<bool> {
        outbox::settle(&self.writer, id, lease_token, settle, at).await
    }

    async fn next_notification_at(&self) -> Result<Option<Timestamp>> {
        next_at(
            &self.reader,
            "SELECT MIN(due_at) FROM notifications WHERE state = 'pending'",
        )
        .await
    }

    async fn notification_stats(&self) -> Result<Vec<NotifierStats>> {
        outbox::stats(&self.reader).await
    }

    async fn get_notification(&self, id: &NotificationId) -> Result<Option<Notification>> {
        outbox::get_notification(&self.reader, id).await
    }

    async fn notifications_about(&self, subject: &str) -> Result<Vec<Notification>> {
        outbox::notifications_about(&self.reader, subject).await
    }

    async fn audit_after(&self, after: u64, limit: u32) -> Result<Vec<AuditEvent>> {
        sqlx::query("SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(i64::try_from(after).unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(map)?
            .iter()
            .map(audit_from)
            .collect()
    }

    async fn grant_counts(&self, overdue_before: Timestamp) -> Result<GrantCounts> {
        let row = sqlx::query(
            "SELECT
               (SELECT COUNT(*) FROM grants WHERE state = 'provisioning') AS provisioning,
               (SELECT COUNT(*) FROM grants WHERE state = 'active') AS active,
               (SELECT COUNT(*) FROM grants WHERE state = 'revoking') AS revoking,
               (SELECT COUNT(*) FROM grants WHERE state = 'revoking' AND revoke_due_at < ?) AS overdue",
        )
        .bind(overdue_before.unix_millis())
        .fetch_one(&self.reader)
        .await
        .map_err(map)?;
        let n = |c: &str| get::<i64>(&row, c).map(|v| u64::try_from(v).unwrap_or(0));
        Ok(GrantCounts {
            provisioning: n("provisioning")?,
            active: n("active")?,
            revoking: n("revoking")?,
            overdue: n("overdue")?,
        })
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(map)?;
        Ok(())
    }
}
