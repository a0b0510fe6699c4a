//! Break-glass reviews: opened in the same commit as the break-glass grant, listed for the
//! people who may judge them, and closed by someone other than the user of the glass.
//!
//! Who may see and close a review: anyone who may `Approve` requests for the entitlement from
//! the user of the glass, or who may `Administer` it. The user sees their own reviews but can
//! never close them.

use tracing::instrument;

use super::{Caller, Engine, retry_on_conflict};
use crate::{
    Error, Result, Timestamp,
    audit::AuditRecord,
    id::{PrincipalId, ReviewId},
    policy::{Action, Resource},
    request::Request,
    review::{Review, ReviewState},
    store::{Commit, ReviewFilter},
};

const MAX_COMMENT: usize = 2_000;

impl Engine {
    /// Adds the review of a fulfilled break-glass request to `commit`.
    pub(super) fn open_review(
        &self,
        fulfilled: &Request,
        now: Timestamp,
        commit: &mut Commit,
    ) -> Result<()> {
        let grant_id = fulfilled
            .grant_id
            .clone()
            .ok_or_else(|| Error::internal("a break-glass review needs the grant"))?;
        let review = Review {
            id: ReviewId::generate(now)?,
            request_id: fulfilled.id.clone(),
            grant_id: grant_id.clone(),
            principal: fulfilled.requester.clone(),
            access: fulfilled.access.clone(),
            reason: fulfilled.reason.clone(),
            state: ReviewState::Open,
            opened_at: now,
            closed_at: None,
            closed_by: None,
            comment: None,
            version: 0,
        };
        commit.audit.push(
            AuditRecord::new(
                now,
                fulfilled.requester.as_str(),
                crate::event::EventKind::BreakGlassActivated,
                fulfilled.id.as_str(),
            )
            .with("severity", "critical")
            .with("grant", &grant_id)
            .with(fulfilled.access.kind(), &fulfilled.access)
            .with("duration", fulfilled.duration)
            .with("reason", &fulfilled.reason)
            .with("review", &review.id),
        );
        commit.audit.push(
            AuditRecord::new(
                now,
                "system",
                crate::event::EventKind::ReviewOpened,
                review.id.as_str(),
            )
            .with("request", &fulfilled.id)
            .with("grant", &grant_id)
            .with("principal", &fulfilled.requester),
        );
        commit.reviews.push(review);
        Ok(())
    }

    /// Whether `caller` may judge break-glass use of `ent` by `user`.
    async fn may_review(
        &self,
        caller: &Caller,
        user: &PrincipalId,
        resource: Resource<'_>,
        now: Timestamp,
    ) -> Result<bool> {
        if self.may_administer(&caller.principal, resource, now)? {
            return Ok(true);
        }
        let Some(requester) = self.principal(user).await? else {
            return Ok(false);
        };
        let mut ctx = self.context(Some(caller), user, resource.default_duration(), None, now);
        ctx.requester = Some(requester);
        Ok(self
            .decide(Action::Approve, &caller.principal, resource, &ctx)?
            .allowed)
    }

    async fn may_see_review(&self, caller: &Caller, r: &Review, now: Timestamp) -> Result<bool> {
        if caller.principal.id == r.principal {
            return Ok(true);
        }
        match self.resource_of(&r.access) {
            Ok(resource) => self.may_review(caller, &r.principal, resource, now).await,
            Err(_) => Ok(false),
        }
    }

    /// Reviews the caller may see, newest first.
    pub async fn list_reviews(
        &self,
        caller: &Caller,
        state: Option<ReviewState>,
        limit: u32,
    ) -> Result<Vec<Review>> {
        let limit = limit.clamp(1, 500);
        let now = self.clock.now();
        let mut out = Vec::new();
        let mut before = None;
        loop {
            let page = self
                .store
                .list_reviews(&ReviewFilter {
                    state,
                    before: before.take(),
                    limit,
                })
                .await?;
            let full = page.len() as u32 == limit;
            before = page.last().map(|r| r.id.clone());
            for r in page {
                if self.may_see_review(caller, &r, now).await? {
                    out.push(r);
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

    /// Refuses another break-glass while `principal` has the most open reviews allowed: an
    /// emergency is reviewed before the next one.
    pub(super) async fn check_open_reviews(
        &self,
        principal: &crate::catalog::Principal,
    ) -> Result<()> {
        let max = self.settings.break_glass_open_reviews;
        let mut open = 0u32;
        let mut before = None;
        loop {
            let page = self
                .store
                .list_reviews(&ReviewFilter {
                    state: Some(ReviewState::Open),
                    before: before.take(),
                    limit: 500,
                })
                .await?;
            open += page.iter().filter(|r| r.principal == principal.id).count() as u32;
            if open >= max {
                return Err(Error::limited(
                    crate::ErrorCode::RequestBreakGlassReviewsOpen,
                    format!(
                        "{} has {open} break-glass reviews open, the most allowed; another emergency waits until someone reviews them",
                        principal.id
                    ),
                ));
            }
            match page.last() {
                Some(last) if page.len() == 500 => before = Some(last.id.clone()),
                _ => return Ok(()),
            }
        }
    }

    /// Closes a break-glass review with a comment.
    #[instrument(skip_all, fields(review_id = %id, principal = %caller.principal.id))]
    pub async fn close_review(&self, caller: &Caller, id: &str, comment: &str) -> Result<Review> {
        let comment = comment.trim().to_owned();
        if comment.is_empty() {
            return Err(Error::invalid(
                crate::ErrorCode::ReviewCommentMissing,
                "comment",
                "closing a review needs a comment: say what you checked",
            ));
        }
        crate::text::check(&comment, MAX_COMMENT)
            .map_err(|m| Error::invalid(crate::ErrorCode::ReviewCommentInvalid, "comment", m))?;
        let comment = &comment;
        retry_on_conflict(move || async move {
            let not_found = || Error::not_found(crate::ErrorCode::ReviewNotFound, format!("no review {id}"));
            let rid = ReviewId::parse(id).ok_or_else(not_found)?;
            let review = self.store.get_review(&rid).await?.ok_or_else(not_found)?;
            let now = self.clock.now();
            if !self.may_see_review(caller, &review, now).await? {
                return Err(not_found());
            }
            // Whoever answers for the user of the glass (its owner) reviews nothing of it.
            if let Some(user) = self.principal(&review.principal).await?
                && let Some(why) =
                    super::requests::requesting_side(&caller.principal, &user, &[])
            {
                return Err(Error::forbidden(
                    crate::ErrorCode::ReviewSeparationOfDuties,
                    format!("{} may not close this review: {why}", caller.principal.id),
                ));
            }
            // The user of the glass sees the review but is refused by `close`.
            if caller.principal.id != review.principal {
                let resource = self.resource_of(&review.access)?;
                if !self.may_review(caller, &review.principal, resource, now).await? {
                    return Err(Error::forbidden(
                        crate::ErrorCode::ReviewNotAllowed,
                        "only an approver or administrator of the entitlement may close its reviews",
                    ));
                }
            }
            let (closed, ev) = review.close(&caller.principal.id, comment, now)?;
            self.commit(Commit {
                reviews: vec![closed.clone()],
                audit: vec![ev.record(now)],
                ..Commit::default()
            })
            .await?;
            Ok(closed)
        })
        .await
    }
}
