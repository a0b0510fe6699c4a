//! Rows → domain values. Every stored value is checked on the way in: a malformed one is
//! reported as corruption, never passed on.

use hourglass_core::{
    Error, GrantDuration, Result, Timestamp,
    audit::{AuditEvent, AuditRecord},
    grant::{Grant, GrantState},
    id::{AccessId, EntitlementId, GrantId, PrincipalId, RequestId, TargetId},
    job::{Job, JobAction, Lease},
    request::{Approval, ApprovalVia, Request, RequestState, Verdict},
    review::{Review, ReviewId, ReviewState},
};
use sqlx::{Row, Sqlite, sqlite::SqliteRow};

use crate::error::{corrupt, map};

pub(super) fn ts(v: i64) -> Timestamp {
    Timestamp::from_unix_millis(v)
}

pub(super) fn opt_ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp::from_unix_millis)
}

pub(super) fn get<'r, T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>>(
    row: &'r SqliteRow,
    col: &str,
) -> Result<T> {
    row.try_get(col).map_err(map)
}

/// An entitlement or profile, from the `access_kind` and `entitlement` columns.
fn access(row: &SqliteRow) -> Result<AccessId> {
    let kind: String = get(row, "access_kind")?;
    let name: String = get(row, "entitlement")?;
    AccessId::from_parts(&kind, &name).ok_or_else(|| corrupt("access", &format!("{kind} {name}")))
}

pub(super) fn request_from(row: &SqliteRow) -> Result<Request> {
    let id: String = get(row, "id")?;
    let state: String = get(row, "state")?;
    let grant: Option<String> = get(row, "grant_id")?;
    let secs: i64 = get(row, "duration_secs")?;
    Ok(Request {
        requester: PrincipalId::new(get::<String>(row, "requester")?).map_err(Error::internal)?,
        access: access(row)?,
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
        mfa: get(row, "mfa")?,
        source_ip: get(row, "source_ip")?,
        starts_at: opt_ts(get(row, "starts_at")?),
        extends: match get::<Option<String>>(row, "extends")? {
            Some(g) => Some(GrantId::parse(&g).ok_or_else(|| corrupt("grant id", &g))?),
            None => None,
        },
        actors: match get::<Option<String>>(row, "actor")? {
            Some(chain) => chain
                .split(',')
                .map(|a| PrincipalId::new(a).map_err(|_| corrupt("actor", a)))
                .collect::<Result<_>>()?,
            None => Vec::new(),
        },
        ticket_facts: match get::<Option<String>>(row, "ticket_facts")? {
            Some(text) => {
                Some(serde_json::from_str(&text).map_err(|_| corrupt("ticket facts", &text))?)
            }
            None => None,
        },
        exchange: match get::<Option<String>>(row, "exchange")? {
            Some(text) => {
                Some(serde_json::from_str(&text).map_err(|_| corrupt("exchange facts", &text))?)
            }
            None => None,
        },
        version: get(row, "version")?,
        id: RequestId::parse(&id).ok_or_else(|| corrupt("request id", &id))?,
    })
}

pub(super) fn grant_from(row: &SqliteRow) -> Result<Grant> {
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

pub(super) fn review_from(row: &SqliteRow) -> Result<Review> {
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
        access: access(row)?,
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

pub(super) fn job_from(row: &SqliteRow) -> Result<Job> {
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

pub(super) fn approval_from(row: &SqliteRow) -> Result<Approval> {
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

pub(super) fn audit_from(row: &SqliteRow) -> Result<AuditEvent> {
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
