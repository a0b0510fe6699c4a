//! Backend-neutral statements: SQL in the `$N` form that both SQLite and PostgreSQL accept,
//! with its arguments as plain values. What a commit writes is planned here once; each backend
//! only runs the plan in its own transaction.

use std::borrow::Cow;

use hourglass_core::{
    Error, Result, Timestamp,
    audit::{AuditRecord, chain_hash},
    campaign::{Campaign, CampaignItem, ItemDecision},
    grant::Grant,
    id::{GrantId, KeyId, PrincipalId},
    identity::{ApiKey, Identity, TokenUse},
    notify::Notification,
    request::{Approval, Request, Verdict},
    review::Review,
    store::{Commit, JobChange},
    ticket::Ticket,
};

/// One argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(bool),
}

impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(Some(v.to_owned()))
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(Some(v))
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(Some(v.clone()))
    }
}
impl From<Option<&str>> for Val {
    fn from(v: Option<&str>) -> Self {
        Val::Text(v.map(str::to_owned))
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        Val::Text(v)
    }
}
impl From<&Option<String>> for Val {
    fn from(v: &Option<String>) -> Self {
        Val::Text(v.clone())
    }
}
impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(Some(v))
    }
}
impl From<u32> for Val {
    fn from(v: u32) -> Self {
        Val::Int(Some(i64::from(v)))
    }
}
impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        Val::Int(v)
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Bool(v)
    }
}
impl From<Timestamp> for Val {
    fn from(v: Timestamp) -> Self {
        Val::Int(Some(v.unix_millis()))
    }
}
impl From<Option<Timestamp>> for Val {
    fn from(v: Option<Timestamp>) -> Self {
        Val::Int(v.map(Timestamp::unix_millis))
    }
}

/// A statement and its arguments. The text is a constant of this crate, except for the table
/// copy (`store copy`), whose identifiers come from the fixed table list in `copy.rs`.
#[derive(Debug, Clone)]
pub struct Stmt {
    pub(crate) sql: Cow<'static, str>,
    pub(crate) args: Vec<Val>,
}

impl Stmt {
    /// The statement as a query of database `DB`, its arguments bound in order.
    pub(crate) fn query<DB>(&self) -> sqlx::query::Query<'static, DB, DB::Arguments>
    where
        DB: sqlx::Database,
        Option<String>: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        Option<i64>: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        bool: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.sql.clone()));
        for v in &self.args {
            q = match v {
                Val::Text(t) => q.bind(t.clone()),
                Val::Int(i) => q.bind(*i),
                Val::Bool(b) => q.bind(*b),
            };
        }
        q
    }
}

/// `stmt!(SQL, arg, …)`: a statement with its arguments converted to [`Val`]s.
macro_rules! stmt {
    ($sql:expr $(, $arg:expr)* $(,)?) => {
        $crate::sql::Stmt {
            sql: ::std::borrow::Cow::Borrowed($sql),
            args: vec![$($crate::sql::Val::from($arg)),*],
        }
    };
}
pub(crate) use stmt;

/// What a statement in a commit must change: exactly one row (a versioned or fenced write,
/// where zero rows means someone else changed it first), or anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    One,
    Any,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub(crate) stmt: Stmt,
    pub(crate) expect: Expect,
}

impl Step {
    pub(crate) fn one(stmt: Stmt) -> Self {
        Step {
            stmt,
            expect: Expect::One,
        }
    }
    pub(crate) fn any(stmt: Stmt) -> Self {
        Step {
            stmt,
            expect: Expect::Any,
        }
    }
}

/// Which workers a commit gives new work (for the wake-ups other replicas listen to).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wakes {
    pub(crate) jobs: bool,
    pub(crate) deadlines: bool,
    pub(crate) notifications: bool,
    pub(crate) policy: bool,
}

impl Wakes {
    pub(crate) fn of(c: &Commit) -> Self {
        Wakes {
            jobs: !c.jobs.is_empty(),
            deadlines: !c.grants.is_empty() || !c.requests.is_empty(),
            notifications: !c.notifications.is_empty(),
            policy: c.policy.is_some(),
        }
    }
    pub(crate) fn any(self) -> bool {
        self.jobs || self.deadlines || self.notifications || self.policy
    }
    /// The workers either wakes.
    pub(crate) fn or(self, other: Wakes) -> Self {
        Wakes {
            jobs: self.jobs || other.jobs,
            deadlines: self.deadlines || other.deadlines,
            notifications: self.notifications || other.notifications,
            policy: self.policy || other.policy,
        }
    }
    /// The payload of a wake-up message: the worker names, comma-separated.
    pub(crate) fn payload(self) -> String {
        [
            (self.jobs, "jobs"),
            (self.deadlines, "deadlines"),
            (self.notifications, "notifications"),
            (self.policy, "policy"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(",")
    }
    pub(crate) fn parse(payload: &str) -> Self {
        let has = |w: &str| payload.split(',').any(|p| p == w);
        Wakes {
            jobs: has("jobs"),
            deadlines: has("deadlines"),
            notifications: has("notifications"),
            policy: has("policy"),
        }
    }
}

pub(crate) fn json<T: serde::Serialize>(v: &T) -> Result<String> {
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

/// Everything a commit writes except its audit records, in the order rows name each other:
/// identities before the keys and requests that name them, requests before their grants.
pub(crate) fn plan(c: &Commit) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    if let Some(a) = &c.archive {
        steps.push(Step::one(archive_checkpoint(a)));
    }
    for i in &c.identities {
        steps.push(Step::one(identity(i)?));
    }
    for k in &c.keys {
        steps.push(Step::one(key(k)));
    }
    for (kind, id, version) in &c.directory_removed {
        steps.push(Step::one(stmt!(
            "DELETE FROM directory WHERE kind = $1 AND id = $2 AND version = $3",
            kind.as_str(),
            id.as_str(),
            *version,
        )));
    }
    for d in &c.directory {
        steps.push(Step::one(directory(d)?));
    }
    for (u, now) in &c.token_uses {
        steps.extend(token_use(u, *now).into_iter().map(Step::any));
    }
    for r in &c.requests {
        steps.push(Step::one(request(r)?));
    }
    for g in &c.grants {
        steps.push(Step::one(grant(g)?));
        if g.state != hourglass_core::grant::GrantState::Active && g.version > 0 {
            // Its credential is never handed over once the grant stops being active.
            steps.push(Step::any(stmt!(
                "DELETE FROM sealed_credentials WHERE grant_id = $1",
                g.id.as_str()
            )));
        }
    }
    if let Some(p) = &c.policy {
        steps.push(Step::any(stmt!(
            "INSERT INTO policy_in_force (id, hash, set_at, set_by) VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, set_at = excluded.set_at,
               set_by = excluded.set_by",
            p.hash.as_str(),
            p.set_at,
            p.set_by.as_str(),
        )));
    }
    for s in &c.credentials {
        steps.push(Step::any(stmt!(
            "INSERT INTO sealed_credentials (grant_id, holder, expires_at, sealed) VALUES ($1, $2, $3, $4)
             ON CONFLICT (grant_id) DO UPDATE SET holder = excluded.holder,
               expires_at = excluded.expires_at, sealed = excluded.sealed",
            s.grant_id.as_str(),
            s.holder.as_str(),
            s.expires_at,
            s.sealed.as_str(),
        )));
    }
    for s in &c.credentials_taken {
        steps.push(Step::one(stmt!(
            "DELETE FROM sealed_credentials WHERE grant_id = $1 AND holder = $2 AND sealed = $3",
            s.grant_id.as_str(),
            s.holder.as_str(),
            s.sealed.as_str(),
        )));
    }
    for a in &c.approvals {
        steps.push(Step::any(approval(a)?));
    }
    for j in &c.jobs {
        steps.push(Step::one(job(j)));
    }
    for r in &c.reviews {
        steps.push(Step::one(review(r)));
    }
    // Campaigns before the items that name them, items before the eligibility they decided.
    for k in &c.campaigns {
        steps.push(Step::one(campaign(k)));
    }
    for i in &c.campaign_items {
        steps.push(Step::one(campaign_item(i)));
    }
    for e in &c.eligibility {
        steps.push(Step::any(stmt!(
            "INSERT INTO eligibility (principal, access, effect, item, at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (principal, access) DO UPDATE SET effect = excluded.effect,
               item = excluded.item, at = excluded.at",
            e.principal.as_str(),
            e.access.as_str(),
            e.effect.as_str(),
            e.item.as_str(),
            e.at,
        )));
    }
    for n in &c.notifications {
        steps.push(Step::any(notification(n)?));
    }
    for (source, t) in &c.tickets {
        steps.push(Step::any(ticket(source, t)?));
    }
    for h in &c.ended_sessions {
        steps.push(Step::any(stmt!(
            "DELETE FROM sessions WHERE id_hash = $1",
            h.as_str()
        )));
    }
    for s in &c.sessions {
        steps.push(Step::any(stmt!(
            "DELETE FROM sessions WHERE expires_at <= $1",
            s.created_at
        )));
        steps.push(Step::one(stmt!(
            "INSERT INTO sessions (id_hash, principal, mfa, via, created_at, last_seen_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            s.id_hash.as_str(),
            s.principal.as_str(),
            s.mfa,
            s.via.as_str(),
            s.created_at,
            s.last_seen_at,
            s.expires_at,
        )));
    }
    Ok(steps)
}

/// A versioned row's write: an insert (at version 1) or an update at the version read. The
/// version, the last argument, is the update's; an insert does not take it.
fn versioned(mut s: Stmt) -> Stmt {
    if s.sql.trim_start().starts_with("INSERT") {
        s.args.pop();
    }
    s
}

fn request(r: &Request) -> Result<Stmt> {
    let sql = if r.version == 0 {
        "INSERT INTO requests (requester, access_kind, entitlement, duration_secs, reason, ticket, state, state_reason,
           created_at, updated_at, decide_by, policy_hash, grant_id, public_key, break_glass, mfa,
           source_ip, starts_at, extends, actor, exchange, ticket_facts, task, id, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
           $21, $22, $23, $24, 1)"
    } else {
        "UPDATE requests SET requester = $1, access_kind = $2, entitlement = $3, duration_secs = $4, reason = $5,
           ticket = $6, state = $7, state_reason = $8, created_at = $9, updated_at = $10, decide_by = $11,
           policy_hash = $12, grant_id = $13, public_key = $14, break_glass = $15, mfa = $16, source_ip = $17,
           starts_at = $18, extends = $19, actor = $20, exchange = $21, ticket_facts = $22, task = $23,
           version = version + 1
         WHERE id = $24 AND version = $25"
    };
    Ok(versioned(stmt!(
        sql,
        r.requester.as_str(),
        r.access.kind(),
        r.access.name(),
        i64::try_from(r.duration.as_secs()).unwrap_or(i64::MAX),
        &r.reason,
        &r.ticket,
        r.state.as_str(),
        &r.state_reason,
        r.created_at,
        r.updated_at,
        r.decide_by,
        &r.policy_hash,
        r.grant_id.as_ref().map(GrantId::as_str),
        &r.public_key,
        r.break_glass,
        r.mfa,
        &r.source_ip,
        r.starts_at,
        r.extends.as_ref().map(GrantId::as_str),
        actor_chain(&r.actors),
        r.exchange.as_ref().map(json).transpose()?,
        r.ticket_facts.as_ref().map(json).transpose()?,
        &r.task,
        r.id.as_str(),
        r.version,
    )))
}

fn grant(g: &Grant) -> Result<Stmt> {
    let sql = if g.version == 0 {
        "INSERT INTO grants (request_id, principal, entitlement, target, state, starts_at, expires_at,
           created_at, activated_at, revoke_due_at, ended_at, end_reason, handle, credential_fingerprint,
           public_key, break_glass, id, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, 1)"
    } else {
        "UPDATE grants SET request_id = $1, principal = $2, entitlement = $3, target = $4, state = $5,
           starts_at = $6, expires_at = $7, created_at = $8, activated_at = $9, revoke_due_at = $10,
           ended_at = $11, end_reason = $12, handle = $13, credential_fingerprint = $14, public_key = $15,
           break_glass = $16, version = version + 1
         WHERE id = $17 AND version = $18"
    };
    Ok(versioned(stmt!(
        sql,
        g.request_id.as_str(),
        g.principal.as_str(),
        g.entitlement.as_str(),
        g.target.as_str(),
        g.state.as_str(),
        g.starts_at,
        g.expires_at,
        g.created_at,
        g.activated_at,
        g.revoke_due_at,
        g.ended_at,
        &g.end_reason,
        g.handle.as_ref().map(json).transpose()?,
        &g.credential_fingerprint,
        &g.public_key,
        g.break_glass,
        g.id.as_str(),
        g.version,
    )))
}

fn review(r: &Review) -> Stmt {
    let sql = if r.version == 0 {
        "INSERT INTO reviews (request_id, grant_id, principal, access_kind, entitlement, reason, state,
           opened_at, closed_at, closed_by, comment, id, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1)"
    } else {
        "UPDATE reviews SET request_id = $1, grant_id = $2, principal = $3, access_kind = $4,
           entitlement = $5, reason = $6, state = $7, opened_at = $8, closed_at = $9, closed_by = $10,
           comment = $11, version = version + 1
         WHERE id = $12 AND version = $13"
    };
    versioned(stmt!(
        sql,
        r.request_id.as_str(),
        r.grant_id.as_str(),
        r.principal.as_str(),
        r.access.kind(),
        r.access.name(),
        &r.reason,
        r.state.as_str(),
        r.opened_at,
        r.closed_at,
        r.closed_by.as_ref().map(PrincipalId::as_str),
        &r.comment,
        r.id.as_str(),
        r.version,
    ))
}

fn campaign(k: &Campaign) -> Stmt {
    let sql = if k.version == 0 {
        "INSERT INTO campaigns (name, scope, reviewers, default_action, state, created_by, created_at,
           deadline, remind_at, reminded, closed_at, items, id, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1)"
    } else {
        "UPDATE campaigns SET name = $1, scope = $2, reviewers = $3, default_action = $4, state = $5,
           created_by = $6, created_at = $7, deadline = $8, remind_at = $9, reminded = $10,
           closed_at = $11, items = $12, version = version + 1
         WHERE id = $13 AND version = $14"
    };
    versioned(stmt!(
        sql,
        k.name.as_str(),
        k.scope.as_str(),
        String::from(k.reviewers.clone()),
        k.default_action.as_str(),
        k.state.as_str(),
        k.created_by.as_str(),
        k.created_at,
        k.deadline,
        k.remind_at,
        k.reminded,
        k.closed_at,
        k.items,
        k.id.as_str(),
        k.version,
    ))
}

fn campaign_item(i: &CampaignItem) -> Stmt {
    let sql = if i.version == 0 {
        "INSERT INTO campaign_items (campaign, kind, principal, access, target, holder, privilege,
           reviewer, decision, decided_by, decided_at, note, work, run_at, attempts, last_error, id,
           version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, 1)"
    } else {
        "UPDATE campaign_items SET campaign = $1, kind = $2, principal = $3, access = $4, target = $5,
           holder = $6, privilege = $7, reviewer = $8, decision = $9, decided_by = $10,
           decided_at = $11, note = $12, work = $13, run_at = $14, attempts = $15, last_error = $16,
           version = version + 1
         WHERE id = $17 AND version = $18"
    };
    versioned(stmt!(
        sql,
        i.campaign.as_str(),
        i.kind.as_str(),
        i.principal.as_ref().map(PrincipalId::as_str),
        &i.access,
        &i.target,
        &i.holder,
        &i.privilege,
        String::from(i.reviewer.clone()),
        i.decision.map(ItemDecision::as_str),
        &i.decided_by,
        i.decided_at,
        &i.note,
        i.work.as_str(),
        i.run_at,
        i.attempts,
        &i.last_error,
        i.id.as_str(),
        i.version,
    ))
}

fn approval(a: &Approval) -> Result<Stmt> {
    Ok(stmt!(
        "INSERT INTO approvals (request_id, approver, verdict, via, policy_ids, policy_hash, comment, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        a.request_id.as_str(),
        &a.approver,
        match a.verdict {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
        },
        a.via.as_str(),
        json(&a.policy_ids)?,
        &a.policy_hash,
        &a.comment,
        a.at,
    ))
}

/// Job changes are fenced by their lease token: a change from a holder whose lease has passed
/// to another changes nothing, which fails the commit.
fn job(change: &JobChange) -> Stmt {
    match change {
        JobChange::Schedule {
            grant_id,
            action,
            run_at,
        } => stmt!(
            "INSERT INTO grant_jobs (grant_id, action, run_at, attempts, due_at) VALUES ($1, $2, $3, 0, $3)
             ON CONFLICT (grant_id) DO UPDATE SET action = $2, run_at = $3, attempts = 0, last_error = NULL,
               due_at = COALESCE(grant_jobs.lease_until, $3)",
            grant_id.as_str(),
            action.as_str(),
            *run_at,
        ),
        JobChange::Complete {
            grant_id,
            action,
            lease_token,
        } => stmt!(
            "DELETE FROM grant_jobs WHERE grant_id = $1 AND action = $2 AND lease_token = $3",
            grant_id.as_str(),
            action.as_str(),
            lease_token,
        ),
        JobChange::Reschedule {
            grant_id,
            lease_token,
            from_action,
            action,
            run_at,
            attempts,
            last_error,
        } => stmt!(
            "UPDATE grant_jobs SET action = $1, run_at = $2, due_at = $2, attempts = $3, last_error = $4,
               lease_owner = NULL, lease_token = NULL, lease_until = NULL
             WHERE grant_id = $5 AND lease_token = $6 AND action = $7",
            action.as_str(),
            *run_at,
            *attempts,
            last_error,
            grant_id.as_str(),
            lease_token,
            from_action.as_str(),
        ),
        JobChange::Release {
            grant_id,
            lease_token,
        } => stmt!(
            "UPDATE grant_jobs SET lease_owner = NULL, lease_token = NULL, lease_until = NULL, due_at = run_at
             WHERE grant_id = $1 AND lease_token = $2",
            grant_id.as_str(),
            lease_token,
        ),
    }
}

/// Last seen only moves forward, whoever writes the identity.
fn identity(i: &Identity) -> Result<Stmt> {
    let p = &i.principal;
    let sql = if i.version == 0 {
        "INSERT INTO identities (kind, owner, groups, status, status_reason, origin, created_at,
           last_seen_at, status_set_by, sign_in_subject, manager, department, id, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1)"
    } else {
        "UPDATE identities SET kind = $1, owner = $2, groups = $3, status = $4, status_reason = $5,
           origin = $6, created_at = $7,
           last_seen_at = CASE WHEN COALESCE(last_seen_at, 0) >= COALESCE($8, 0) THEN last_seen_at ELSE $8 END,
           status_set_by = $9, sign_in_subject = $10, manager = $11, department = $12,
           version = version + 1
         WHERE id = $13 AND version = $14"
    };
    Ok(versioned(stmt!(
        sql,
        p.kind.as_str(),
        &p.owner,
        json(&p.groups)?,
        p.status.as_str(),
        &i.status_reason,
        i.origin.as_str(),
        i.created_at,
        i.last_seen_at,
        i.status_set_by.as_ref().map(json).transpose()?,
        &i.sign_in_subject,
        &p.manager,
        &p.department,
        p.id.as_str(),
        i.version,
    )))
}

fn directory(d: &hourglass_core::directory::DirectoryEntry) -> Result<Stmt> {
    let sql = if d.version == 0 {
        "INSERT INTO directory (name, name_key, external_id, principal, manager_id, resource,
           created_at, updated_at, kind, id, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1)"
    } else {
        "UPDATE directory SET name = $1, name_key = $2, external_id = $3, principal = $4,
           manager_id = $5, resource = $6, created_at = $7, updated_at = $8, version = version + 1
         WHERE kind = $9 AND id = $10 AND version = $11"
    };
    Ok(versioned(stmt!(
        sql,
        d.name.as_str(),
        hourglass_core::directory::DirectoryEntry::name_key(&d.name),
        &d.external_id,
        d.principal.as_ref().map(|p| p.as_str().to_owned()),
        &d.manager,
        json(&d.resource)?,
        d.created_at,
        d.updated_at,
        d.kind.as_str(),
        d.id.as_str(),
        d.version,
    )))
}

/// Last used only moves forward, whoever writes the key.
fn key(k: &ApiKey) -> Stmt {
    let sql = if k.version == 0 {
        "INSERT INTO api_keys (principal, prefix, hash, origin, created_at, expires_at, revoked_at,
           last_used_at, replaced_by, id, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1)"
    } else {
        "UPDATE api_keys SET principal = $1, prefix = $2, hash = $3, origin = $4, created_at = $5,
           expires_at = $6, revoked_at = $7,
           last_used_at = CASE WHEN COALESCE(last_used_at, 0) >= COALESCE($8, 0) THEN last_used_at ELSE $8 END,
           replaced_by = $9, version = version + 1
         WHERE id = $10 AND version = $11"
    };
    versioned(stmt!(
        sql,
        k.principal.as_str(),
        &k.prefix,
        &k.hash,
        k.origin.as_str(),
        k.created_at,
        k.expires_at,
        k.revoked_at,
        k.last_used_at,
        k.replaced_by.as_ref().map(KeyId::as_str),
        k.id.as_str(),
        k.version,
    ))
}

/// Remembers an exchanged token id; an unexpired one already there is a replay (a unique
/// violation, so a conflict). Ids whose tokens expired before `now` are forgotten first.
fn token_use(u: &TokenUse, now: Timestamp) -> [Stmt; 2] {
    [
        stmt!("DELETE FROM token_uses WHERE expires_at <= $1", now),
        stmt!(
            "INSERT INTO token_uses (issuer, jti, expires_at) VALUES ($1, $2, $3)",
            &u.issuer,
            &u.jti,
            u.expires_at,
        ),
    ]
}

/// Remembers what a ticket source reported, replacing what it said before.
fn ticket(source: &str, t: &Ticket) -> Result<Stmt> {
    Ok(stmt!(
        "INSERT INTO tickets (source, reference, ticket, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (source, reference) DO UPDATE SET ticket = $3, updated_at = $4",
        source,
        &t.reference,
        json(t)?,
        t.updated.map_or(0, Timestamp::unix_millis),
    ))
}

/// Queues a notification; a repeat of a notifier's event is skipped.
fn notification(n: &Notification) -> Result<Stmt> {
    let subject = n
        .message
        .grant_id
        .as_ref()
        .or(n.message.request_id.as_ref());
    Ok(stmt!(
        "INSERT INTO notifications (id, notifier, dedup_key, event, subject, message, state, run_at,
           due_at, attempts, last_error, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7, $8, $9, $10, $10)
         ON CONFLICT (notifier, dedup_key) DO NOTHING",
        n.id.as_str(),
        &n.notifier,
        &n.dedup_key,
        n.message.event.as_str(),
        subject.map(String::as_str),
        json(&n.message)?,
        n.run_at,
        n.attempts,
        &n.last_error,
        n.created_at,
    ))
}

/// Events per insert statement (8 arguments each: far below either database's limit).
const EVENTS_PER_INSERT: usize = 500;

/// The inserts that append `records` after the event `seq` whose hash is `prev`: multi-row
/// statements of up to [`EVENTS_PER_INSERT`] events, each event hash-chained to the one before.
/// Also the new head's sequence number and hash.
pub(crate) fn audit_appends<'a>(
    mut seq: u64,
    mut prev: String,
    records: impl IntoIterator<Item = &'a AuditRecord>,
) -> Result<(Vec<Stmt>, u64, String)> {
    let mut out = Vec::new();
    let mut rows: Vec<Val> = Vec::new();
    let flush = |rows: &mut Vec<Val>, out: &mut Vec<Stmt>| {
        if rows.is_empty() {
            return;
        }
        let n = rows.len() / 8;
        let values = (0..n)
            .map(|r| {
                let b = r * 8;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        out.push(Stmt {
            sql: std::borrow::Cow::Owned(format!(
                "INSERT INTO audit_events (seq, at, actor, action, subject, details, prev_hash, hash) VALUES {values}"
            )),
            args: std::mem::take(rows),
        });
    };
    for r in records {
        seq += 1;
        let hash = chain_hash(seq, r, &prev);
        rows.extend([
            Val::from(i64::try_from(seq).unwrap_or(i64::MAX)),
            Val::from(r.at),
            Val::from(&r.actor),
            Val::from(&r.action),
            Val::from(&r.subject),
            Val::from(json(&r.details)?),
            Val::from(prev),
            Val::from(hash.clone()),
        ]);
        prev = hash;
        if rows.len() / 8 == EVENTS_PER_INSERT {
            flush(&mut rows, &mut out);
        }
    }
    flush(&mut rows, &mut out);
    Ok((out, seq, prev))
}

/// Records `c`, if the chain still is as `archive::check` saw it: it starts right after the latest
/// checkpoint, ends at a live event with its hash, and leaves at least that event's successor
/// live. Changes one row, or none.
pub(crate) fn archive_checkpoint(c: &hourglass_core::audit::Checkpoint) -> Stmt {
    stmt!(
        "INSERT INTO audit_archives (through_seq, first_seq, through_hash, archived_at, events_sha256)
         SELECT $1, $2, $3, $4, $5
         WHERE $2 = 1 + COALESCE((SELECT MAX(through_seq) FROM audit_archives), 0)
           AND EXISTS (SELECT 1 FROM audit_events WHERE seq = $1 AND hash = $3)
           AND EXISTS (SELECT 1 FROM audit_events WHERE seq > $1)",
        i64::try_from(c.through_seq).unwrap_or(i64::MAX),
        i64::try_from(c.first_seq).unwrap_or(i64::MAX),
        c.through_hash.as_str(),
        c.archived_at,
        c.events_sha256.as_str(),
    )
}
