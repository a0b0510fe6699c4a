//! Writes inside one transaction: rows with their read version (a changed row fails the whole
//! commit with a conflict), job changes fenced by their lease, and the audit chain.

use hourglass_core::{
    Error, Result, Timestamp,
    audit::{AuditRecord, GENESIS_HASH, chain_hash},
    grant::Grant,
    id::{GrantId, PrincipalId},
    request::Request,
    review::Review,
    store::JobChange,
};
use sqlx::{Sqlite, Transaction};

use super::rows::get;
use crate::error::map;

pub(super) fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::internal(format!("encoding: {e}")))
}

/// A delegation chain as stored: names joined by commas (names never hold one), or NULL.
fn actor_chain(actors: &[PrincipalId]) -> Option<String> {
    (!actors.is_empty()).then(|| {
        actors
            .iter()
            .map(PrincipalId::as_str)
            .collect::<Vec<_>>()
            .join(",")
    })
}

fn conflict_unless_one(rows: u64) -> Result<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(Error::StoreConflict)
    }
}

pub(super) async fn write_request(tx: &mut Transaction<'_, Sqlite>, r: &Request) -> Result<()> {
    let grant = r.grant_id.as_ref().map(GrantId::as_str);
    let q = if r.version == 0 {
        sqlx::query(
            "INSERT INTO requests (requester, access_kind, entitlement, duration_secs, reason, ticket, state, state_reason,
               created_at, updated_at, decide_by, policy_hash, grant_id, public_key, break_glass, mfa,
               source_ip, starts_at, extends, actor, exchange, ticket_facts, id, version)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
        )
    } else {
        sqlx::query(
            "UPDATE requests SET requester = ?, access_kind = ?, entitlement = ?, duration_secs = ?, reason = ?, ticket = ?,
               state = ?, state_reason = ?, created_at = ?, updated_at = ?, decide_by = ?, policy_hash = ?,
               grant_id = ?, public_key = ?, break_glass = ?, mfa = ?, source_ip = ?, starts_at = ?,
               extends = ?, actor = ?, exchange = ?, ticket_facts = ?, version = version + 1
             WHERE id = ? AND version = ?",
        )
    };
    let res = q
        .bind(r.requester.as_str())
        .bind(r.access.kind())
        .bind(r.access.name())
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
        .bind(r.mfa)
        .bind(&r.source_ip)
        .bind(r.starts_at.map(Timestamp::unix_millis))
        .bind(r.extends.as_ref().map(GrantId::as_str))
        .bind(actor_chain(&r.actors))
        .bind(r.exchange.as_ref().map(json).transpose()?)
        .bind(r.ticket_facts.as_ref().map(json).transpose()?)
        .bind(r.id.as_str())
        .bind(r.version)
        .execute(&mut **tx)
        .await
        .map_err(map)?;
    conflict_unless_one(res.rows_affected())
}

pub(super) async fn write_grant(tx: &mut Transaction<'_, Sqlite>, g: &Grant) -> Result<()> {
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

pub(super) async fn write_review(tx: &mut Transaction<'_, Sqlite>, r: &Review) -> Result<()> {
    let q = if r.version == 0 {
        sqlx::query(
            "INSERT INTO reviews (request_id, grant_id, principal, access_kind, entitlement, reason, state,
               opened_at, closed_at, closed_by, comment, id, version)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
        )
    } else {
        sqlx::query(
            "UPDATE reviews SET request_id = ?, grant_id = ?, principal = ?, access_kind = ?,
               entitlement = ?, reason = ?,
               state = ?, opened_at = ?, closed_at = ?, closed_by = ?, comment = ?, version = version + 1
             WHERE id = ? AND version = ?",
        )
    };
    let res = q
        .bind(r.request_id.as_str())
        .bind(r.grant_id.as_str())
        .bind(r.principal.as_str())
        .bind(r.access.kind())
        .bind(r.access.name())
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

pub(super) async fn write_job(tx: &mut Transaction<'_, Sqlite>, change: &JobChange) -> Result<()> {
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

pub(super) async fn append_audit(
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
