//! Reviews of break-glass use.
//!
//! A break-glass request is granted at once with no approval, so the decision is checked after
//! the fact: the same commit that opens the grant opens a review, and a second person (never the
//! one who broke the glass) must close it with a comment. Open reviews stay listed until then.
//!
//! ```text
//! open ──close (another person, with a comment)──▶ closed
//! ```

use serde::{Deserialize, Serialize};

use crate::{
    Error, Result, Timestamp,
    id::{AccessId, GrantId, PrincipalId, RequestId},
    lifecycle::Event,
};

/// Ids of reviews, `rev_…`.
pub use crate::id::ReviewId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    Open,
    Closed,
}

impl ReviewState {
    pub const ALL: [ReviewState; 2] = [ReviewState::Open, ReviewState::Closed];

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::Open => "open",
            ReviewState::Closed => "closed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(ReviewState::Open),
            "closed" => Some(ReviewState::Closed),
            _ => None,
        }
    }
}

/// The after-the-fact check of one break-glass use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub id: ReviewId,
    pub request_id: RequestId,
    pub grant_id: GrantId,
    /// Who broke the glass.
    pub principal: PrincipalId,
    /// The entitlement or profile broken into.
    pub access: AccessId,
    /// The break-glass reason, as given.
    pub reason: String,
    pub state: ReviewState,
    pub opened_at: Timestamp,
    pub closed_at: Option<Timestamp>,
    pub closed_by: Option<PrincipalId>,
    pub comment: Option<String>,
    pub version: i64,
}

impl Review {
    /// Closes the review: only someone other than the user of the glass, with a comment.
    pub fn close(&self, by: &PrincipalId, comment: &str, at: Timestamp) -> Result<(Review, Event)> {
        if by == &self.principal {
            return Err(Error::forbidden(
                crate::ErrorCode::ReviewSelfClose,
                "a break-glass review must be closed by someone other than the person who broke the glass",
            ));
        }
        if self.state != ReviewState::Open {
            return Err(Error::conflict(
                crate::ErrorCode::ReviewClosed,
                format!("review {} is already closed", self.id),
            ));
        }
        let mut next = self.clone();
        next.state = ReviewState::Closed;
        next.closed_at = Some(at);
        next.closed_by = Some(by.clone());
        next.comment = Some(comment.to_owned());
        let ev = Event::ReviewClosed {
            review: self.id.clone(),
            by: by.clone(),
            request: self.request_id.clone(),
            grant: self.grant_id.clone(),
            principal: self.principal.clone(),
            comment: comment.to_owned(),
        };
        Ok((next, ev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> Review {
        let at = Timestamp::from_unix_millis(1_000);
        Review {
            id: ReviewId::generate(at).unwrap(),
            request_id: RequestId::generate(at).unwrap(),
            grant_id: GrantId::generate(at).unwrap(),
            principal: PrincipalId::new("alice").unwrap(),
            access: AccessId::Entitlement(crate::id::EntitlementId::new("demo/x").unwrap()),
            reason: "outage".into(),
            state: ReviewState::Open,
            opened_at: at,
            closed_at: None,
            closed_by: None,
            comment: None,
            version: 1,
        }
    }

    #[test]
    fn only_someone_else_closes_and_only_once() {
        let at = Timestamp::from_unix_millis(2_000);
        let alice = PrincipalId::new("alice").unwrap();
        let bob = PrincipalId::new("bob").unwrap();
        assert_eq!(
            open().close(&alice, "fine", at).unwrap_err().code(),
            "review.self_close"
        );
        let (closed, ev) = open().close(&bob, "justified: INC-7", at).unwrap();
        assert_eq!(closed.state, ReviewState::Closed);
        assert_eq!(closed.closed_by, Some(bob.clone()));
        assert_eq!(ev.kind(), crate::event::EventKind::ReviewClosed);
        assert_eq!(
            closed.close(&bob, "again", at).unwrap_err().code(),
            "review.closed"
        );
    }
}
