//! The states of a request and of a grant, apart from their state machines
//! ([`crate::request::Request::apply`], [`crate::grant::Grant::apply`]), so that what the machines
//! return ([`crate::lifecycle::Event`]) can name them without depending on the machines.

use serde::{Deserialize, Serialize};

/// Where a request is (see the diagram in [`crate::request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    Approved,
    Fulfilled,
    Denied,
    Cancelled,
    Expired,
    Failed,
}

impl RequestState {
    pub const ALL: [RequestState; 7] = [
        RequestState::Pending,
        RequestState::Approved,
        RequestState::Fulfilled,
        RequestState::Denied,
        RequestState::Cancelled,
        RequestState::Expired,
        RequestState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Fulfilled => "fulfilled",
            RequestState::Denied => "denied",
            RequestState::Cancelled => "cancelled",
            RequestState::Expired => "expired",
            RequestState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, RequestState::Pending | RequestState::Approved)
    }
}

/// Where a grant is (see the diagram in [`crate::grant`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    Provisioning,
    Active,
    Revoking,
    Revoked,
    Failed,
}

impl GrantState {
    pub const ALL: [GrantState; 5] = [
        GrantState::Provisioning,
        GrantState::Active,
        GrantState::Revoking,
        GrantState::Revoked,
        GrantState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Provisioning => "provisioning",
            GrantState::Active => "active",
            GrantState::Revoking => "revoking",
            GrantState::Revoked => "revoked",
            GrantState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}
