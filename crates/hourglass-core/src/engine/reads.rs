//! Read use cases: what a caller may see. Callers see their own requests and grants, and those
//! they may approve or administer; anything else reads as not found.

use std::collections::BTreeMap;

use super::{Caller, Engine, requests::RequestDetails};
use crate::{
    Error, Result, Timestamp,
    grant::{Grant, GrantState},
    id::{AccessId, PrincipalId},
    policy::Action,
    request::{Request, RequestState},
    store::{GrantFilter, RequestFilter},
};

/// What one listing learned: visibility by (requester, access), and the requesters read.
#[derive(Default)]
struct VisibilityCache {
    seen: BTreeMap<(PrincipalId, AccessId), bool>,
    people: BTreeMap<PrincipalId, Option<crate::catalog::Principal>>,
}

/// What to look for in the audit log; an empty text matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditSearch {
    /// Part of who acted.
    pub actor: String,
    /// Part of what it happened to, or the whole value of one of its details (an entitlement).
    pub subject: String,
    /// The start of the action (`grant.`).
    pub action: String,
    pub since: Option<Timestamp>,
}

impl AuditSearch {
    fn matches(&self, e: &crate::audit::AuditEvent) -> bool {
        let (actor, subject, action) = (self.actor.trim(), self.subject.trim(), self.action.trim());
        let r = &e.record;
        r.actor.contains(actor)
            && (r.subject.contains(subject)
                || (!subject.is_empty() && r.details.iter().any(|(_, v)| v == subject)))
            && r.action.starts_with(action)
            && self.since.is_none_or(|t| r.at >= t)
    }
}

/// What [`Engine::search_audit`] found.
#[derive(Debug, Clone)]
pub struct AuditFound {
    pub head_seq: u64,
    pub head_hash: String,
    /// How many events were read.
    pub scanned: u64,
    /// The matches, newest first.
    pub events: Vec<crate::audit::AuditEvent>,
}

/// A change to a request or grant, as the live views see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The audit record's sequence number (the resume point).
    pub seq: u64,
    pub at: Timestamp,
    /// What happened (`request.approved`, `grant.activated`, …).
    pub action: String,
    /// The request or grant id.
    pub subject: String,
}

/// Rows one listing reads at a time.
const LIST_PAGE: u32 = 200;
/// Rows one listing reads at most.
const MAX_SCANNED: u32 = 5_000;

impl Engine {
    /// Whether `caller` may see a request or grant of `requester` for `access`: their own, or
    /// one they may approve or administer.
    async fn may_see(
        &self,
        caller: &Caller,
        requester: &PrincipalId,
        access: &AccessId,
        cache: &mut VisibilityCache,
        now: Timestamp,
    ) -> Result<bool> {
        if caller.answers_for(requester) {
            return Ok(true);
        }
        let key = (requester.clone(), access.clone());
        if let Some(v) = cache.seen.get(&key) {
            return Ok(*v);
        }
        let allowed = match self.resource_of(access) {
            Err(_) => false,
            Ok(resource) => {
                let mut ctx = self.context(
                    Some(caller),
                    requester,
                    resource.default_duration(),
                    None,
                    now,
                );
                ctx.requester = match cache.people.get(requester) {
                    Some(p) => p.clone(),
                    None => {
                        let p = self.principal(requester).await?;
                        cache.people.insert(requester.clone(), p.clone());
                        p
                    }
                };
                // An approver who would need a second factor to decide still sees the request
                // (in their inbox, to step up for it): seeing is judged as if with one.
                ctx.mfa = true;
                self.may_administer(&caller.principal, resource, now)?
                    || (ctx.requester.is_some()
                        && self
                            .decide(Action::Approve, &caller.principal, resource, &ctx)?
                            .allowed)
            }
        };
        cache.seen.insert(key, allowed);
        Ok(allowed)
    }

    /// One request with its approvals and grant, if the caller may see it.
    pub async fn request_details(&self, caller: &Caller, id: &str) -> Result<RequestDetails> {
        let request = self.visible_request(caller, id).await?;
        let approvals = self.store.list_approvals(&request.id).await?;
        // A profile's grants were all opened by the request; an extension names its grant.
        let grants = match (&request.extends, &request.grant_id) {
            (None, Some(_)) => self.store.grants_of_request(&request.id).await?,
            (Some(_), Some(g)) => self.store.get_grant(g).await?.into_iter().collect(),
            (_, None) => Vec::new(),
        };
        let approvals_required = self
            .resource_of(&request.access)
            .map_or(1, |r| r.approvals_required());
        Ok(RequestDetails {
            request,
            approvals,
            approvals_required,
            grants,
        })
    }

    /// Requests the caller may see, newest first.
    pub async fn list_requests(
        &self,
        caller: &Caller,
        state: Option<RequestState>,
        limit: u32,
    ) -> Result<Vec<Request>> {
        let store = &self.store;
        self.visible(
            caller,
            limit,
            |before, limit| async move {
                store
                    .list_requests(&RequestFilter {
                        state,
                        requester: None,
                        before,
                        limit,
                    })
                    .await
            },
            |r: &Request| (&r.requester, r.access.clone(), r.id.clone()),
        )
        .await
    }

    /// One grant, if the caller may see it.
    /// The request `id` if `caller` may see it; one they may not see is "not found", so that
    /// acting on it (approve, deny, cancel) tells a stranger nothing of it.
    pub(super) async fn visible_request(&self, caller: &Caller, id: &str) -> Result<Request> {
        let request = self.load_request(id).await?;
        let now = self.clock.now();
        if !self
            .may_see(
                caller,
                &request.requester,
                &request.access,
                &mut VisibilityCache::default(),
                now,
            )
            .await?
        {
            return Err(Error::not_found(
                crate::ErrorCode::RequestNotFound,
                format!("no request {id}"),
            ));
        }
        Ok(request)
    }

    pub async fn grant(&self, caller: &Caller, id: &str) -> Result<Grant> {
        let grant = self.load_grant(id).await?;
        let now = self.clock.now();
        if !self
            .may_see(
                caller,
                &grant.principal,
                &AccessId::Entitlement(grant.entitlement.clone()),
                &mut VisibilityCache::default(),
                now,
            )
            .await?
        {
            return Err(Error::not_found(
                crate::ErrorCode::GrantNotFound,
                format!("no grant {id}"),
            ));
        }
        Ok(grant)
    }

    /// Grants the caller may see, newest first.
    pub async fn list_grants(
        &self,
        caller: &Caller,
        state: Option<GrantState>,
        limit: u32,
    ) -> Result<Vec<Grant>> {
        let store = &self.store;
        self.visible(
            caller,
            limit,
            |before, limit| async move {
                store
                    .list_grants(&GrantFilter {
                        state,
                        principal: None,
                        before,
                        limit,
                    })
                    .await
            },
            |g: &Grant| {
                (
                    &g.principal,
                    AccessId::Entitlement(g.entitlement.clone()),
                    g.id.clone(),
                )
            },
        )
        .await
    }

    /// Pages through `page` (newest first, each page after the last key of the one before) and
    /// keeps what the caller may see, up to `limit`. Pages are of a fixed size whatever the
    /// caller's limit (a caller who sees little must not cost a query per row), and at most
    /// [`MAX_SCANNED`] rows are read for one listing: past that, what was found is the answer.
    /// (Visibility is a policy decision per requester and access, so it cannot be put into SQL
    /// whole; the state filter is.)
    async fn visible<T, K, F, Fut>(
        &self,
        caller: &Caller,
        limit: u32,
        mut page: F,
        about: impl Fn(&T) -> (&PrincipalId, AccessId, K),
    ) -> Result<Vec<T>>
    where
        F: FnMut(Option<K>, u32) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<T>>>,
    {
        let limit = limit.clamp(1, 500);
        let now = self.clock.now();
        let mut cache = VisibilityCache::default();
        let mut out = Vec::new();
        let mut before = None;
        let mut scanned = 0;
        loop {
            if scanned >= MAX_SCANNED {
                return Ok(out);
            }
            let items = page(before.take(), LIST_PAGE).await?;
            scanned += items.len() as u32;
            let full = items.len() as u32 == LIST_PAGE;
            before = items.last().map(|t| about(t).2);
            for t in items {
                let (who, what, _) = about(&t);
                if self.may_see(caller, who, &what, &mut cache, now).await? {
                    out.push(t);
                    if out.len() as u32 == limit {
                        return Ok(out);
                    }
                }
            }
            if !full {
                return Ok(out);
            }
        }
    }

    /// Changes to requests and grants after audit sequence `after` that `caller` may see (the
    /// live views: `GET /v1/events`), at most `limit` audit records read, and the last
    /// sequence number read, from which to go on even when none of them was visible. Only what
    /// changed and when is given (the action and the id); the caller reads the object itself,
    /// under the same visibility.
    pub async fn changes_after(
        &self,
        caller: &Caller,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<Change>, u64)> {
        let events = self.store.audit_after(after, limit.clamp(1, 1_000)).await?;
        let mut last = after;
        let mut seen: BTreeMap<String, bool> = BTreeMap::new();
        let mut out = Vec::new();
        for e in events {
            last = e.seq;
            let subject = e.record.subject;
            let visible = match seen.get(&subject) {
                Some(v) => *v,
                None => {
                    let read = if subject.starts_with(crate::id::RequestId::PREFIX) {
                        self.visible_request(caller, &subject).await.map(|_| ())
                    } else if subject.starts_with(crate::id::GrantId::PREFIX) {
                        self.grant(caller, &subject).await.map(|_| ())
                    } else {
                        Err(Error::not_found(
                            crate::ErrorCode::EventOther,
                            "not a request or grant",
                        ))
                    };
                    let v = match read {
                        Ok(()) => true,
                        Err(Error::NotFound { .. }) => false,
                        Err(e) => return Err(e),
                    };
                    seen.insert(subject.clone(), v);
                    v
                }
            };
            if visible {
                out.push(Change {
                    seq: e.seq,
                    at: e.record.at,
                    action: e.record.action,
                    subject,
                });
            }
        }
        Ok((out, last))
    }

    /// The latest `scan` audit events, newest first, that match `q` (at most `limit`), with the
    /// chain's head: an administrator's view of what happened lately.
    pub async fn search_audit(
        &self,
        caller: &Caller,
        q: &AuditSearch,
        scan: u64,
        limit: usize,
    ) -> Result<AuditFound> {
        self.require_admin_of_all(caller, crate::ErrorCode::AuditNotAllowed)?;
        let head_seq = self.store.audit_head_seq().await?;
        let mut after = head_seq.saturating_sub(scan);
        let mut events = Vec::new();
        loop {
            let page = self.store.audit_after(after, 1_000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            events.extend(page);
        }
        let head_hash = events.last().map(|e| e.hash.clone()).unwrap_or_default();
        let scanned = events.len() as u64;
        let events = events
            .into_iter()
            .rev()
            .filter(|e| q.matches(e))
            .take(limit)
            .collect();
        Ok(AuditFound {
            head_seq,
            head_hash,
            scanned,
            events,
        })
    }

    /// Verifies the whole audit chain now (an administrator's check): events checked, the head
    /// hash, and the first break if any.
    pub async fn verify_audit(
        &self,
        caller: &Caller,
    ) -> Result<(u64, String, Option<crate::audit::ChainBreak>)> {
        self.require_admin_of_all(caller, crate::ErrorCode::AuditNotAllowed)?;
        let (v, broken) = crate::store::verify_chain(self.store.as_ref()).await?;
        Ok((v.checked(), v.head_hash().to_owned(), broken))
    }

    /// The last audit sequence number: where a live view that wants only new changes starts.
    pub async fn audit_head_seq(&self) -> Result<u64> {
        self.store.audit_head_seq().await
    }

    /// Audit events after `after`, for a caller that may administer every entitlement (the
    /// audit log spans them all, so reading it takes authority over all of them).
    pub async fn audit_after(
        &self,
        caller: &Caller,
        after: u64,
        limit: u32,
    ) -> Result<Vec<crate::audit::AuditEvent>> {
        self.require_admin_of_all(caller, crate::ErrorCode::AuditNotAllowed)?;
        self.store.audit_after(after, limit.clamp(1, 1_000)).await
    }
}
