//! Rows → domain values. Every stored value is checked on the way in: a malformed one is
//! reported as corruption, never passed on.

use hourglass_core::{
    Error, GrantDuration, Result, Timestamp,
    audit::{AuditEvent, AuditRecord, Checkpoint},
    campaign::{
        Campaign, CampaignItem, CampaignScope, CampaignState, DefaultAction, Effect,
        EligibilityEntry, ItemDecision, Reviewer, ReviewerRule, Work,
    },
    catalog::{Principal, PrincipalKind, PrincipalStatus},
    grant::{Grant, GrantState},
    id::{
        AccessId, CampaignId, CampaignItemId, EntitlementId, GrantId, KeyId, NotificationId,
        PrincipalId, RequestId, TargetId,
    },
    identity::{ApiKey, Identity, Origin},
    job::{Job, JobAction, Lease},
    notify::Notification,
    request::{Approval, ApprovalVia, Request, RequestState, Verdict},
    review::{Review, ReviewId, ReviewState},
};
use sqlx::{Decode, Postgres, Row, Sqlite, Type, postgres::PgRow, sqlite::SqliteRow};

use crate::error::{corrupt, map};

/// A column value both backends decode (text, integers, booleans and their `Option`s).
pub trait Value:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}
impl<T> Value for T where
    T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

/// A result row of either backend, read by column name.
pub trait Cols: Send + Sync {
    fn col<T: Value>(&self, name: &str) -> Result<T>;
}

impl Cols for SqliteRow {
    fn col<T: Value>(&self, name: &str) -> Result<T> {
        self.try_get(name).map_err(map)
    }
}

impl Cols for PgRow {
    fn col<T: Value>(&self, name: &str) -> Result<T> {
        self.try_get(name).map_err(map)
    }
}

pub(crate) fn ts(v: i64) -> Timestamp {
    Timestamp::from_unix_millis(v)
}

pub(crate) fn opt_ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp::from_unix_millis)
}

pub(crate) fn get<T: Value>(row: &impl Cols, col: &str) -> Result<T> {
    row.col(col)
}

/// An entitlement or profile, from the `access_kind` and `entitlement` columns.
fn access(row: &impl Cols) -> Result<AccessId> {
    let kind: String = get(row, "access_kind")?;
    let name: String = get(row, "entitlement")?;
    AccessId::from_parts(&kind, &name).ok_or_else(|| corrupt("access", &format!("{kind} {name}")))
}

pub(crate) fn request_from(row: &impl Cols) -> Result<Request> {
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
        task: get(row, "task")?,
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

pub(crate) fn grant_from(row: &impl Cols) -> Result<Grant> {
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

pub(crate) fn review_from(row: &impl Cols) -> Result<Review> {
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

pub(crate) fn job_from(row: &impl Cols) -> Result<Job> {
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

pub(crate) fn approval_from(row: &impl Cols) -> Result<Approval> {
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

pub(crate) fn audit_from(row: &impl Cols) -> Result<AuditEvent> {
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

pub(crate) fn checkpoint_from(row: &impl Cols) -> Result<Checkpoint> {
    let seq = |col: &str| -> Result<u64> {
        let v: i64 = get(row, col)?;
        u64::try_from(v).map_err(|_| corrupt("audit checkpoint seq", &v.to_string()))
    };
    Ok(Checkpoint {
        first_seq: seq("first_seq")?,
        through_seq: seq("through_seq")?,
        through_hash: get(row, "through_hash")?,
        archived_at: ts(get(row, "archived_at")?),
        events_sha256: get(row, "events_sha256")?,
    })
}

fn principal_id(s: String) -> Result<PrincipalId> {
    PrincipalId::new(s).map_err(Error::internal)
}

pub(crate) fn identity_from(row: &impl Cols) -> Result<Identity> {
    let k: String = get(row, "kind")?;
    let st: String = get(row, "status")?;
    let origin: String = get(row, "origin")?;
    let groups: String = get(row, "groups")?;
    Ok(Identity {
        principal: Principal {
            id: principal_id(get(row, "id")?)?,
            kind: PrincipalKind::parse(&k).ok_or_else(|| corrupt("identity kind", &k))?,
            owner: get(row, "owner")?,
            groups: serde_json::from_str(&groups).map_err(|_| corrupt("groups", &groups))?,
            status: PrincipalStatus::parse(&st).ok_or_else(|| corrupt("identity status", &st))?,
            manager: get(row, "manager")?,
            department: get(row, "department")?,
        },
        origin: Origin::parse(&origin).ok_or_else(|| corrupt("origin", &origin))?,
        created_at: ts(get(row, "created_at")?),
        last_seen_at: opt_ts(get(row, "last_seen_at")?),
        status_reason: get(row, "status_reason")?,
        status_set_by: {
            let by: Option<String> = get(row, "status_set_by")?;
            by.map(|b| serde_json::from_str(&b).map_err(|_| corrupt("status_set_by", &b)))
                .transpose()?
        },
        sign_in_subject: get(row, "sign_in_subject")?,
        version: get(row, "version")?,
    })
}

pub(crate) fn session_from(row: &impl Cols) -> Result<hourglass_core::session::Session> {
    Ok(hourglass_core::session::Session {
        id_hash: get(row, "id_hash")?,
        principal: principal_id(get(row, "principal")?)?,
        mfa: get(row, "mfa")?,
        via: get(row, "via")?,
        created_at: ts(get(row, "created_at")?),
        last_seen_at: ts(get(row, "last_seen_at")?),
        expires_at: ts(get(row, "expires_at")?),
    })
}

pub(crate) fn key_from(row: &impl Cols) -> Result<ApiKey> {
    let id: String = get(row, "id")?;
    let origin: String = get(row, "origin")?;
    let replaced: Option<String> = get(row, "replaced_by")?;
    Ok(ApiKey {
        id: KeyId::parse(&id).ok_or_else(|| corrupt("key id", &id))?,
        principal: principal_id(get(row, "principal")?)?,
        prefix: get(row, "prefix")?,
        hash: get(row, "hash")?,
        origin: Origin::parse(&origin).ok_or_else(|| corrupt("origin", &origin))?,
        created_at: ts(get(row, "created_at")?),
        expires_at: opt_ts(get(row, "expires_at")?),
        revoked_at: opt_ts(get(row, "revoked_at")?),
        last_used_at: opt_ts(get(row, "last_used_at")?),
        replaced_by: match replaced {
            Some(r) => Some(KeyId::parse(&r).ok_or_else(|| corrupt("key id", &r))?),
            None => None,
        },
        version: get(row, "version")?,
    })
}

pub(crate) fn notification_from(row: &impl Cols) -> Result<Notification> {
    let id: String = get(row, "id")?;
    let text: String = get(row, "message")?;
    let attempts: i64 = get(row, "attempts")?;
    let owner: Option<String> = get(row, "lease_owner")?;
    let token: Option<String> = get(row, "lease_token")?;
    let until: Option<i64> = get(row, "lease_until")?;
    Ok(Notification {
        id: NotificationId::parse(&id).ok_or_else(|| corrupt("notification id", &id))?,
        notifier: get(row, "notifier")?,
        dedup_key: get(row, "dedup_key")?,
        message: serde_json::from_str(&text).map_err(|_| corrupt("notification", &id))?,
        run_at: ts(get(row, "run_at")?),
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        last_error: get(row, "last_error")?,
        created_at: ts(get(row, "created_at")?),
        receipt: get(row, "receipt")?,
        lease: match (owner, token, opt_ts(until)) {
            (Some(owner), Some(token), Some(until)) => Some(Lease {
                owner,
                token,
                until,
            }),
            _ => None,
        },
    })
}

pub(crate) fn sealed_from(row: &impl Cols) -> Result<hourglass_core::credential::SealedCredential> {
    let id: String = get(row, "grant_id")?;
    Ok(hourglass_core::credential::SealedCredential {
        grant_id: GrantId::parse(&id).ok_or_else(|| corrupt("grant id", &id))?,
        holder: principal_id(get(row, "holder")?)?,
        expires_at: ts(get(row, "expires_at")?),
        sealed: get(row, "sealed")?,
    })
}

pub(crate) fn directory_from(row: &impl Cols) -> Result<hourglass_core::directory::DirectoryEntry> {
    let kind: String = get(row, "kind")?;
    let resource: String = get(row, "resource")?;
    let principal: Option<String> = get(row, "principal")?;
    Ok(hourglass_core::directory::DirectoryEntry {
        kind: hourglass_core::directory::DirectoryKind::parse(&kind)
            .ok_or_else(|| corrupt("directory kind", &kind))?,
        id: get(row, "id")?,
        name: get(row, "name")?,
        external_id: get(row, "external_id")?,
        principal: principal.map(principal_id).transpose()?,
        manager: get(row, "manager_id")?,
        resource: serde_json::from_str(&resource)
            .map_err(|_| corrupt("directory resource", &resource))?,
        created_at: ts(get(row, "created_at")?),
        updated_at: ts(get(row, "updated_at")?),
        version: get(row, "version")?,
    })
}

/// A text column that must hold one of an enum's words.
fn word<T>(row: &impl Cols, col: &str, what: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    let s: String = get(row, col)?;
    parse(&s).ok_or_else(|| corrupt(what, &s))
}

/// A count the domain keeps as `u32`.
fn small_count(row: &impl Cols, col: &str, what: &str) -> Result<u32> {
    let n: i64 = get(row, col)?;
    u32::try_from(n).map_err(|_| corrupt(what, &n.to_string()))
}

pub(crate) fn campaign_from(row: &impl Cols) -> Result<Campaign> {
    let id: String = get(row, "id")?;
    let reviewers: String = get(row, "reviewers")?;
    Ok(Campaign {
        id: CampaignId::parse(&id).ok_or_else(|| corrupt("campaign id", &id))?,
        name: get(row, "name")?,
        scope: word(row, "scope", "campaign scope", CampaignScope::parse)?,
        reviewers: ReviewerRule::parse(&reviewers)
            .map_err(|_| corrupt("campaign reviewers", &reviewers))?,
        default_action: word(
            row,
            "default_action",
            "default action",
            DefaultAction::parse,
        )?,
        state: word(row, "state", "campaign state", CampaignState::parse)?,
        created_by: get(row, "created_by")?,
        created_at: ts(get(row, "created_at")?),
        deadline: ts(get(row, "deadline")?),
        remind_at: opt_ts(get(row, "remind_at")?),
        reminded: get(row, "reminded")?,
        closed_at: opt_ts(get(row, "closed_at")?),
        items: small_count(row, "items", "campaign items")?,
        version: get(row, "version")?,
    })
}

pub(crate) fn campaign_item_from(row: &impl Cols) -> Result<CampaignItem> {
    let id: String = get(row, "id")?;
    let campaign: String = get(row, "campaign")?;
    let principal: Option<String> = get(row, "principal")?;
    let reviewer: String = get(row, "reviewer")?;
    let decision: Option<String> = get(row, "decision")?;
    Ok(CampaignItem {
        id: CampaignItemId::parse(&id).ok_or_else(|| corrupt("campaign item id", &id))?,
        campaign: CampaignId::parse(&campaign).ok_or_else(|| corrupt("campaign id", &campaign))?,
        kind: word(row, "kind", "campaign item kind", CampaignScope::parse)?,
        principal: principal
            .map(|p| PrincipalId::new(&p).map_err(|_| corrupt("principal", &p)))
            .transpose()?,
        access: get(row, "access")?,
        target: get(row, "target")?,
        holder: get(row, "holder")?,
        privilege: get(row, "privilege")?,
        reviewer: Reviewer::parse(&reviewer).ok_or_else(|| corrupt("reviewer", &reviewer))?,
        decision: decision
            .map(|d| ItemDecision::parse(&d).ok_or_else(|| corrupt("item decision", &d)))
            .transpose()?,
        decided_by: get(row, "decided_by")?,
        decided_at: opt_ts(get(row, "decided_at")?),
        note: get(row, "note")?,
        work: word(row, "work", "item work", Work::parse)?,
        run_at: opt_ts(get(row, "run_at")?),
        attempts: small_count(row, "attempts", "item attempts")?,
        last_error: get(row, "last_error")?,
        version: get(row, "version")?,
    })
}

pub(crate) fn eligibility_from(row: &impl Cols) -> Result<EligibilityEntry> {
    let principal: String = get(row, "principal")?;
    let item: String = get(row, "item")?;
    Ok(EligibilityEntry {
        principal: PrincipalId::new(&principal).map_err(|_| corrupt("principal", &principal))?,
        access: get(row, "access")?,
        effect: word(row, "effect", "eligibility effect", Effect::parse)?,
        item: CampaignItemId::parse(&item).ok_or_else(|| corrupt("campaign item id", &item))?,
        at: ts(get(row, "at")?),
    })
}
