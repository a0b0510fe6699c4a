//! The ticket port. A [`TicketSource`] knows which references are its own (`HD-\d+`), and says
//! what a ticket is now: open or closed, its status, who it is assigned to. The engine asks at
//! request time (so that policy can read `context.ticket`), and again when a poll looks for
//! closures that no webhook reported; a closure revokes the grants bound to the ticket.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Timestamp, policy::TicketFacts};

/// A ticket as its system describes it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub reference: String,
    /// Whether work on it is still open (not resolved, closed or cancelled).
    pub open: bool,
    /// The system's own name for its status (`In Progress`).
    pub status: String,
    /// The assignee, as a principal name where the source maps it, else as the system names it.
    pub assignee: Option<String>,
    /// The assignment group, as a group name where the source maps it.
    pub group: Option<String>,
    pub priority: Option<String>,
    /// When the system last changed it (its own clock): reports are applied in this order, and
    /// one older than what is stored is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<Timestamp>,
}

impl Ticket {
    /// What policy sees of it.
    pub fn facts(&self, source: &str) -> TicketFacts {
        TicketFacts {
            reference: self.reference.clone(),
            status: Some(self.status.clone()),
            assignee: self.assignee.clone(),
            priority: self.priority.clone(),
            source: Some(source.to_owned()),
            verified: true,
        }
    }
}

/// Why a ticket system gave no answer (it is down, slow, or refused our credentials).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TicketUnavailable(pub String);

/// A ticket system.
#[async_trait]
pub trait TicketSource: Send + Sync {
    /// The configured name (`jira`).
    fn name(&self) -> &str;
    /// Whether `reference` is one of this source's (its reference pattern matches it whole).
    fn matches(&self, reference: &str) -> bool;
    /// The ticket now, `None` when the system does not know it.
    async fn lookup(&self, reference: &str) -> Result<Option<Ticket>, TicketUnavailable>;
}

/// What a request gets when the ticket system does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Refuse the request (nothing is written); the requester may try again.
    #[default]
    Deny,
    /// Accept it, but only human approvers can let it through (no `AutoApprove`).
    Approval,
}

/// How the engine uses one source.
#[derive(Clone)]
pub struct BoundSource {
    pub source: Arc<dyn TicketSource>,
    /// The ticket must be assigned to the requester, or to one of the requester's groups.
    pub require_assignee: bool,
    pub on_unavailable: OnUnavailable,
    /// The system has no lookup API: what Hourglass knows is what its webhook events reported
    /// (kept in the store). A ticket never reported counts as "did not answer".
    pub reported_only: bool,
}

/// The configured ticket sources, first match wins.
#[derive(Clone, Default)]
pub struct TicketSources {
    sources: Vec<BoundSource>,
    refuse_unowned: bool,
}

impl TicketSources {
    pub fn new(sources: Vec<BoundSource>) -> Self {
        TicketSources {
            sources,
            refuse_unowned: false,
        }
    }
    /// Refuses references that no source owns (else they reach policy unverified).
    #[must_use]
    pub fn refusing_unowned(mut self, refuse: bool) -> Self {
        self.refuse_unowned = refuse;
        self
    }
    pub fn refuses_unowned(&self) -> bool {
        self.refuse_unowned
    }
    /// The source that owns `reference`.
    pub fn find(&self, reference: &str) -> Option<&BoundSource> {
        self.sources.iter().find(|s| s.source.matches(reference))
    }
    /// The source named `name`.
    pub fn named(&self, name: &str) -> Option<&BoundSource> {
        self.sources.iter().find(|s| s.source.name() == name)
    }
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}
