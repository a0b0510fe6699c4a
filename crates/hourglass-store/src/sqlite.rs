//! The SQLite store: the embedded default.
//!
//! WAL mode with `synchronous=FULL`. Writes go through a pool of exactly one connection and
//! start with `BEGIN IMMEDIATE`, so writers queue in-process instead of spinning on SQLite's
//! lock; reads use a separate pool and see the last committed state. One SQLite file serves one
//! Hourglass process (the server takes a lock file beside it).

use std::{borrow::Cow, str::FromStr, time::Duration};

use async_trait::async_trait;
use hourglass_core::{
    Error, GrantDuration, Result, Timestamp,
    audit::{AuditEvent, AuditRecord, GENESIS_HASH, chain_hash},
    grant::{Grant, GrantState},
    id::{EntitlementId, GrantId, PrincipalId, RequestId, TargetId},
    job::{Job, JobAction, Lease},
    request::{Approval, ApprovalVia, Request, RequestState, Verdict},
    review::{Review, ReviewId, ReviewState},
    store::{Commit, GrantCounts, GrantFilter, JobChange, RequestFilter, ReviewFilter, Store},
};
use sqlx::{
    Row, SqlSafeStr, Sqlite, SqlitePool, Transaction,
    migrate::{Migration, MigrationType, Migrator},
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
};

use crate::error::{corrupt, map};

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
            include_str!("../migrations/sqlite/0001_init.sql"),
        ),
        step(
            2,
            "public_key",
            include_str!("../migrations/sqlite/0002_public_key.sql"),
        ),
        step(
            3,
            "break_glass",
            include_str!("../migrations/sqlite/0003_break_glass.sql"),
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

fn ts(v: i64) -> Timestamp {
    Timestamp::from_unix_millis(v)
}

fn opt_ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp::from_unix_millis)
}

fn get<'r, T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>>(
    row: &'r SqliteRow,
    col: &str,
) -> Result<T> {
    row.try_get(col).map_err(map)
}

fn request_from(row: &SqliteRow) -> Result<Request> {
    let id: String = get(row, "id")?;
    let state: String = get(row, "state")?;
    let grant: Option<String> = get(row, "grant_id")?;
    let secs: i64 = get(row, "duration_secs")?;
    Ok(Request {
        requester: PrincipalId::new(get::<String>(row, "requester")?).map_err(Error::internal)?,
        entitlement: EntitlementId::new(get::<String>(row, "entitlement")?)
            .map_err(Error::internal)?,
        duration: GrantDuration::from_secs(
            u64::try_from(secs).map_err(|_| corrupt("duration", &secs.to_string()))?,
        ),
        reason: get(row, "reason")?,
        ticket: get(row, "ticket")?,
        state: RequestState::parse(&state).ok_or_else(|| corrupt("request state", &state))?,
        state_reason: get(row, "state_reason")?,
        created_at: ts(get(row, "created_at")?),
        updated_at: ts(get(row, "updated_at")?),
        decide_by: ts(get(row, "decide_by")?),
        policy_hash: get(row, "policy_hash")?,
        grant_id: match grant {
            Some(g) => Some(GrantId::parse(&g).ok_or_else(|| corrupt("grant id", &g))?),
            None => None,
        },
        public_key: get(row, "public_key")?,
        break_glass: get(row, "break_glass")?,
        version: get(row, "version")?,
        id: RequestId::parse(&id).ok_or_else(|| corrupt("request id", &id))?,
    })
}

fn grant_from(row: &SqliteRow) -> Result<Grant> {
    let id: String = get(row, "id")?;
    let req: String = get(row, "request_id")?;
    let state: String = get(row, "state")?;
    let handle: Option<String> = get(row, "handle")?;
    Ok(Grant {
        id: GrantId::parse(&id).ok_or_else(|| corrupt("grant id", &id))?,
        request_id: RequestId::parse(&req).ok_or_else(|| corrupt("request id", &req))?,
        principal: PrincipalId::new(get::<String>(row, "principal")?).map_err(Error::internal)?,
        entitlement: EntitlementId::new(get::<String>(row, "entitlement")?)
            .map_err(Error::internal)?,
        target: TargetId::new(get::<String>(row, "target")?).map_err(Error::internal)?,
        state: GrantState::parse(&state).ok_or_else(|| corrupt("grant state", &state))?,
        starts_at: ts(get(row, "starts_at")?),
        expires_at: ts(get(row, "expires_at")?),
        created_at: ts(get(row, "created_at")?),
        activated_at: opt_ts(get(row, "activated_at")?),
        revoke_due_at: opt_ts(get(row, "revoke_due_at")?),
        ended_at: opt_ts(get(row, "ended_at")?),
        end_reason: get(row, "end_reason")?,
        handle: match handle {
            Some(h) => Some(serde_json::from_str(&h).map_err(|_| corrupt("grant handle", &h))?),
            None => None,
        },
        credential_fingerprint: get(row, "credential_fingerprint")?,
        public_key: get(row, "public_key")?,
        break_glass: get(row, "break_glass")?,
        version: get(row, "version")?,
    })
}

fn review_from(row: &SqliteRow) -> Result<Review> {
    let id: String = get(row, "id")?;
    let req: String = get(row, "request_id")?;
    let grant: String = get(row, "grant_id")?;
    let state: String = get(row, "state")?;
    let closed_by: Option<String> = get(row, "closed_by")?;
    Ok(Review {
        id: ReviewId::parse(&id).ok_or_else(|| corrupt("review id", &id))?,
        request_id: RequestId::parse(&req).ok_or_else(|| corrupt("request id", &req))?,
        grant_id: GrantId::parse(&grant).ok_or_else(|| corrupt("grant id", &grant))?,
        principal: PrincipalId::new(get::<String>(row, "principal")?).map_err(Error::internal)?,
        entitlement: EntitlementId::new(get::<String>(row, "entitlement")?)
            .map_err(Error::internal)?,
        reason: get(row, "reason")?,
        state: ReviewState::parse(&state).ok_or_else(|| corrupt("review state", &state))?,
        opened_at: ts(get(row, "opened_at")?),
        closed_at: opt_ts(get(row, "closed_at")?),
        closed_by: closed_by
            .map(PrincipalId::new)
            .transpose()
            .map_err(Error::internal)?,
        comment: get(row, "comment")?,
        version: get(row, "version")?,
    })
}

fn job_from(row: &SqliteRow) -> Result<Job> {
    let gid: String = get(row, "grant_id")?;
    let action: String = get(row, "action")?;
    let attempts: i64 = get(row, "attempts")?;
    let owner: Option<String> = get(row, "lease_owner")?;
    let token: Option<String> = get(row, "lease_token")?;
    let until: Option<i64> = get(row, "lease_until")?;
    Ok(Job {
        grant_id: GrantId::parse(&gid).ok_or_else(|| corrupt("grant id", &gid))?,
        action: JobAction::parse(&action).ok_or_else(|| corrupt("job action", &action))?,
        run_at: ts(get(row, "run_at")?),
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        last_error: get(row, "last_error")?,
        lease: match (owner, token, until) {
            (Some(owner), Some(token), Some(until)) => Some(Lease {
                owner,
                token,
                until: ts(until),
            }),
            _ => None,
        },
    })
}

fn approval_from(row: &SqliteRow) -> Result<Approval> {
    let rid: String = get(row, "request_id")?;
    let verdict: String = get(row, "verdict")?;
    let via: String = get(row, "via")?;
    let ids: String = get(row, "policy_ids")?;
    Ok(Approval {
        request_id: RequestId::parse(&rid).ok_or_else(|| corrupt("request id", &rid))?,
        approver: get(row, "approver")?,
        verdict: match verdict.as_str() {
            "approve" => Verdict::Approve,
            "deny" => Verdict::Deny,
            _ => return Err(corrupt("verdict", &verdict)),
        },
        via: ApprovalVia::parse(&via).ok_or_else(|| corrupt("approval via", &via))?,
        policy_ids: serde_json::from_str(&ids).map_err(|_| corrupt("policy ids", &ids))?,
        policy_hash: get(row, "policy_hash")?,
        comment: get(row, "comment")?,
        at: ts(get(row, "at")?),
    })
}

fn audit_from(row: &SqliteRow) -> Result<AuditEvent> {
    let seq: i64 = get(row, "seq")?;
    let details: String = get(row, "details")?;
    let details: Vec<(String, String)> =
        serde_json::from_str(&details).map_err(|_| corrupt("audit details", &details))?;
    Ok(AuditEvent {
        seq: u64::try_from(seq).map_err(|_| corrupt("audit seq", &seq.to_string()))?,
        record: AuditRecord {
            at: ts(get(row, "at")?),
            actor: get(row, "actor")?,
            action: get(row, "action")?,
            subject: get(row, "subject")?,
            details,
        },
        prev_hash: get(row, "prev_hash")?,
        hash: get(row, "hash")?,
    })
}

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::internal(format!("encoding: {e}")))
}

fn conflict_unless_one(rows: u64) -> Result<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(Error::StoreConflict)
    }
}

async fn write_request(tx: &mut Transaction<'_, Sqlite>, r: &Request) -> Result<()> {
    let grant = r.grant_id.as_ref().map(GrantId::as_str);
    let q = if r.version == 0 {
        sqlx::query(
            "INSERT INTO requests (requester, entitlement, duration_secs, reason, ticket, state, state_reason,
               created_at, updated_at, decide_by, policy_hash, grant_id, public_key, break_glass, id, version)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
        )
    } else {
        sqlx::query(
            "UPDATE requests SET requester = ?, entitlement = ?, duration_secs = ?, reason = ?, ticket = ?,
               state = ?, state_reason = ?, created_at = ?, updated_at = ?, decide_by = ?, policy_hash = ?,
               grant_id = ?, public_key = ?, break_glass = ?, version = version + 1
             WHERE id = ? AND version = ?",
        )
    };
    let res = q
        .bind(r.requester.as_str())
        .bind(r.entitlement.as_str())
        .bind(i64::try_from(r.duration.as_secs()).unwrap_or(i64::MAX))
        .bind(&r.reason)
        .bind(&r.ticket)
        .bind(r.state.as_str())
        .bind(&r.state_reason)
        .bind(r.created_at.unix_millis())
        .bind(r.updated_at.unix_millis())
        .bind(r.decide_by.unix_millis())
        .bind(&r.policy_hash)
        .bind(grant)
        .bind(&r.public_key)
        .bind(r.break_glass)
        .bind(r.id.as_str())
        .bind(r.version)
        .execute(&mut **tx)
        .await
        .map_err(map)?;
    conflict_unless_one(res.rows_affected())
}

async fn write_grant(tx: &mut Transaction<'_, Sqlite>, g: &Grant) -> Result<()> {
    let handle = g.handle.as_ref().map(json).transpose()?;
    let q = if g.version == 0 {
        sqlx::query(
            "INSERT INTO grants (request_id, principal, entitlement, target, state, starts_at, expires_at,
               created_at, activated_at, revoke_due_at, ended_at, end_reason, handle, credential_fingerprint,
               public_key, break_glass, id, version)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
        )
    } else {
        sqlx::query(
            "UPDATE grants SET request_id = ?, principal = ?, entitlement = ?, target = ?, state = ?,
               starts_at = ?, expires_at = ?, created_at = ?, activated_at = ?, revoke_due_at = ?,
               ended_at = ?, end_reason = ?, handle = ?, credential_fingerprint = ?, public_key = ?,
               break_glass = ?, version = version + 1
             WHERE id = ? AND version = ?",
        )
    };
    let res = q
        .bind(g.request_id.as_str())
        .bind(g.principal.as_str())
        .bind(g.entitlement.as_str())
        .bind(g.target.as_str())
        .bind(g.state.as_str())
        .bind(g.starts_at.unix_millis())
        .bind(g.expires_at.unix_millis())
        .bind(g.created_at.unix_millis())
        .bind(g.activated_at.map(Timestamp::unix_millis))
        .bind(g.revoke_due_at.map(Timestamp::unix_millis))
        .bind(g.ended_at.map(Timestamp::unix_millis))
        .bind(&g.end_reason)
        .bind(handle)
        .bind(&g.credential_fingerprint)
        .bind(&g.public_key)
        .bind(g.break_glass)
        .bind(g.id.as_str())
        .bind(g.version)
        .execute(&mut **tx)
        .await
        .map_err(map)?;
    conflict_unless_one(res.rows_affected())
}

async fn write_review(tx: &mut Transaction<'_, Sqlite>, r: &Review) -> Result<()> {
    let q = if r.version == 0 {
        sqlx::query(
            "INSERT INTO reviews (request_id, grant_id, principal, entitlement, reason, state, opened_at,
               closed_at, closed_by, comment, id, version)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
        )
    } else {
        sqlx::query(
            "UPDATE reviews SET request_id = ?, grant_id = ?, principal = ?, entitlement = ?, reason = ?,
               state = ?, opened_at = ?, closed_at = ?, closed_by = ?, comment = ?, version = version + 1
             WHERE id = ? AND version = ?",
        )
    };
    let res = q
        .bind(r.request_id.as_str())
        .bind(r.grant_id.as_str())
        .bind(r.principal.as_str())
        .bind(r.entitlement.as_str())
        .bind(&r.reason)
        .bind(r.state.as_str())
        .bind(r.opened_at.unix_millis())
        .bind(r.closed_at.map(Timestamp::unix_millis))
        .bind(r.closed_by.as_ref().map(PrincipalId::as_str))
        .bind(&r.comment)
        .bind(r.id.as_str())
        .bind(r.version)
        .execute(&mut **tx)
        .await
        .map_err(map)?;
    conflict_unless_one(res.rows_affected())
}

async fn write_job(tx: &mut Transaction<'_, Sqlite>, change: &JobChange) -> Result<()> {
    let res = match change {
        JobChange::Schedule { grant_id, action, run_at } => {
            sqlx::query(
                "INSERT INTO grant_jobs (grant_id, action, run_at, attempts, due_at) VALUES (?1, ?2, ?3, 0, ?3)
                 ON CONFLICT (grant_id) DO UPDATE SET action = ?2, run_at = ?3, attempts = 0, last_error = NULL,
                   due_at = COALESCE(lease_until, ?3)",
            )
            .bind(grant_id.as_str())
            .bind(action.as_str())
            .bind(run_at.unix_millis())
            .execute(&mut **tx)
            .await
        }
        JobChange::Complete { grant_id, action, lease_token } => {
            sqlx::query("DELETE FROM grant_jobs WHERE grant_id = ? AND action = ? AND lease_token = ?")
                .bind(grant_id.as_str())
                .bind(action.as_str())
                .bind(lease_token)
                .execute(&mut **tx)
                .await
        }
        JobChange::Reschedule { grant_id, lease_token, from_action, action, run_at, attempts, last_error } => {
            sqlx::query(
                "UPDATE grant_jobs SET action = ?1, run_at = ?2, due_at = ?2, attempts = ?3, last_error = ?4,
                   lease_owner = NULL, lease_token = NULL, lease_until = NULL
                 WHERE grant_id = ?5 AND lease_token = ?6 AND action = ?7",
            )
            .bind(action.as_str())
            .bind(run_at.unix_millis())
            .bind(i64::from(*attempts))
            .bind(last_error)
            .bind(grant_id.as_str())
            .bind(lease_token)
            .bind(from_action.as_str())
            .execute(&mut **tx)
            .await
        }
        JobChange::Release { grant_id, lease_token } => {
            sqlx::query(
                "UPDATE grant_jobs SET lease_owner = NULL, lease_token = NULL, lease_until = NULL, due_at = run_at
                 WHERE grant_id = ? AND lease_token = ?",
            )
            .bind(grant_id.as_str())
            .bind(lease_token)
            .execute(&mut **tx)
            .await
        }
    }
    .map_err(map)?;
    conflict_unless_one(res.rows_affected())
}

async fn append_audit(
    tx: &mut Transaction<'_, Sqlite>,
    records: &[AuditRecord],
) -> Result<Option<u64>> {
    if records.is_empty() {
        return Ok(None);
    }
    let head = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await
        .map_err(map)?;
    let (mut seq, mut prev) = match head {
        Some(row) => (
            u64::try_from(get::<i64>(&row, "seq")?).unwrap_or(0),
            get::<String>(&row, "hash")?,
        ),
        None => (0, GENESIS_HASH.to_owned()),
    };
    for r in records {
        seq += 1;
        let hash = chain_hash(seq, r, &prev);
        sqlx::query(
            "INSERT INTO audit_events (seq, at, actor, action, subject, details, prev_hash, hash)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(i64::try_from(seq).unwrap_or(i64::MAX))
        .bind(r.at.unix_millis())
        .bind(&r.actor)
        .bind(&r.action)
        .bind(&r.subject)
        .bind(json(&r.details)?)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut **tx)
        .await
        .map_err(map)?;
        prev = hash;
    }
    Ok(Some(seq))
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
        let res = sqlx::query(
            "UPDATE grant_jobs SET lease_owner = NULL, lease_token = NULL, lease_until = NULL, due_at = run_at
             WHERE lease_token IS NOT NULL",
        )
        .execute(&self.writer)
        .await
        .map_err(map)?;
        Ok(res.rows_affected())
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
