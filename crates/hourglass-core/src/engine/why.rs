//! "Why was anyone elevated?": every elevated state in a scope (a person, a target, an
//! entitlement; a moment or a range), each with its whole story from the audit chain: the
//! request (reason, ticket and what its source said then), the policy decision (policy ids, set
//! hash), each approval (who, when, with a second factor or not), break-glass, provisioning and
//! its confirmation, extensions, the revocation, its proof and its lag. Every line is an audit
//! event with its sequence number; the answer names the chain head that covers them, so that
//! `hourglass audit verify` vouches for every line.

use super::{Caller, Engine};
use crate::{
    Error, Result, Timestamp,
    audit::AuditEvent,
    grant::Grant,
    id::{EntitlementId, PrincipalId, TargetId},
    request::Request,
    store::ElevatedScope,
};

/// The longest range one question covers.
const MAX_RANGE_MS: i64 = 400 * 86_400_000;
/// The most elevated states one answer holds.
pub const MAX_ELEVATIONS: u32 = 500;
/// The most elevated windows one export holds.
pub const MAX_EXPORT: u32 = 50_000;

/// One elevated window for an evidence export: the grant, its request and its approvals.
#[derive(Debug, Clone)]
pub struct Window {
    pub grant: Grant,
    pub request: Option<Request>,
    pub approvals: Vec<crate::request::Approval>,
}

/// An export's windows, with the chain head they were read under.
#[derive(Debug, Clone)]
pub struct Windows {
    pub windows: Vec<Window>,
    pub head_seq: u64,
    pub head_hash: String,
}

/// What to explain.
#[derive(Debug, Clone, Default)]
pub struct WhyQuestion {
    pub principal: Option<String>,
    pub target: Option<String>,
    pub entitlement: Option<String>,
    /// `[from, to)`; a moment is `[at, at + 1 ms)`.
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

/// One elevated state and its story.
#[derive(Debug, Clone)]
pub struct Elevation {
    pub grant: Grant,
    pub request: Option<Request>,
    /// The audit events of the request, the grant and its extensions, in chain order.
    pub story: Vec<AuditEvent>,
}

/// The answer, with the chain head that covers every line of it.
#[derive(Debug, Clone)]
pub struct WhyAnswer {
    pub elevations: Vec<Elevation>,
    pub head_seq: u64,
    pub head_hash: String,
}

impl Engine {
    /// The elevated windows in scope, for an evidence export (administrators of everything).
    pub async fn elevated_windows(&self, caller: &Caller, q: WhyQuestion) -> Result<Windows> {
        self.require_admin_of_all(caller, crate::ErrorCode::WhyNotAllowed)?;
        let (scope, head_seq, head_hash) = self.scope(q, MAX_EXPORT).await?;
        let mut windows = Vec::new();
        for grant in self.store.elevated(&scope).await? {
            let request = self.store.get_request(&grant.request_id).await?;
            let approvals = self.store.list_approvals(&grant.request_id).await?;
            windows.push(Window {
                grant,
                request,
                approvals,
            });
        }
        Ok(Windows {
            windows,
            head_seq,
            head_hash,
        })
    }

    /// The checked scope of a question, and the chain head it is read under.
    async fn scope(&self, q: WhyQuestion, limit: u32) -> Result<(ElevatedScope, u64, String)> {
        let range = |m: &str| Error::invalid(crate::ErrorCode::WhyRangeInvalid, "from", m);
        let (from, to) = match (q.from, q.to) {
            (Some(f), Some(t)) => (f, t),
            (Some(f), None) => (f, f.plus_millis(1)),
            _ => return Err(range("give a moment (at) or a range (from, to)")),
        };
        if to <= from || to.millis_since(from) > MAX_RANGE_MS {
            return Err(range(
                "the range must end after it starts and span at most 400 days",
            ));
        }
        let id = |v: Option<String>, field: &'static str| -> Result<Option<String>> {
            match v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()) {
                Some(s) if s.len() <= 256 && !s.chars().any(char::is_control) => Ok(Some(s)),
                Some(_) => Err(Error::invalid(
                    crate::ErrorCode::WhyRangeInvalid,
                    field,
                    "not a name",
                )),
                None => Ok(None),
            }
        };
        let principal = id(q.principal, "principal")?
            .map(PrincipalId::new)
            .transpose()
            .map_err(|m| Error::invalid(crate::ErrorCode::WhyRangeInvalid, "principal", m))?;
        let target = id(q.target, "target")?
            .map(TargetId::new)
            .transpose()
            .map_err(|m| Error::invalid(crate::ErrorCode::WhyRangeInvalid, "target", m))?;
        let entitlement = id(q.entitlement, "entitlement")?
            .map(EntitlementId::new)
            .transpose()
            .map_err(|m| Error::invalid(crate::ErrorCode::WhyRangeInvalid, "entitlement", m))?;
        // The head first: every event of the answer is at or before it.
        let head_seq = self.store.audit_head_seq().await?;
        let head_hash = match head_seq {
            0 => String::new(),
            n => self
                .store
                .audit_after(n - 1, 1)
                .await?
                .into_iter()
                .next()
                .map(|e| e.hash)
                .unwrap_or_default(),
        };
        Ok((
            ElevatedScope {
                principal,
                target,
                entitlement,
                from,
                to,
                limit,
            },
            head_seq,
            head_hash,
        ))
    }

    /// Every elevated state in scope, with its story (see the module). Administrators of every
    /// entitlement may ask about anyone; a person about themselves.
    pub async fn why(&self, caller: &Caller, q: WhyQuestion) -> Result<WhyAnswer> {
        let own = q.principal.as_deref().map(str::trim) == Some(caller.principal.id.as_str());
        if !own {
            self.require_admin_of_all(caller, crate::ErrorCode::WhyNotAllowed)?;
        }
        let (scope, head_seq, head_hash) = self.scope(q, MAX_ELEVATIONS).await?;
        let grants = self.store.elevated(&scope).await?;
        let mut elevations = Vec::with_capacity(grants.len());
        for grant in grants {
            let request = self.store.get_request(&grant.request_id).await?;
            let mut story = self.store.audit_of(grant.request_id.as_str()).await?;
            story.extend(self.store.audit_of(grant.id.as_str()).await?);
            for ext in self.store.extensions_of(&grant.id).await? {
                story.extend(self.store.audit_of(ext.id.as_str()).await?);
            }
            story.retain(|e| e.seq <= head_seq);
            story.sort_by_key(|e| e.seq);
            story.dedup_by_key(|e| e.seq);
            elevations.push(Elevation {
                grant,
                request,
                story,
            });
        }
        Ok(WhyAnswer {
            elevations,
            head_seq,
            head_hash,
        })
    }
}
