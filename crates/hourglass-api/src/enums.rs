//! The closed sets of the wire: states, kinds and verdicts. Each is a real enum in the OpenAPI
//! document (so a client can generate exhaustive code) and serialises as its snake_case name.
//! Comparing one with a string compares its name, so `grant.state == "active"` reads as before.

macro_rules! wire_enum {
    ($(#[doc = $doc:literal])+ $name:ident { $($(#[doc = $vdoc:literal])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[doc = $doc])+
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[doc = $vdoc])* $variant,)+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The wire name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value with this wire name.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.as_str()
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }
    };
}

wire_enum! {
    /// Where a request is.
    RequestState {
        /// Waiting for approvals.
        Pending = "pending",
        /// Approved; its grant(s) are about to open (or open at `starts_at`).
        Approved = "approved",
        /// Its grant(s) opened.
        Fulfilled = "fulfilled",
        Denied = "denied",
        Cancelled = "cancelled",
        /// Nobody decided before `decide_by`.
        Expired = "expired",
        /// Approved, but its grant(s) could not open.
        Failed = "failed",
    }
}

wire_enum! {
    /// Where a grant is.
    GrantState {
        /// Being created in the target.
        Provisioning = "provisioning",
        /// Live until `expires_at`.
        Active = "active",
        /// Ended in the ledger; the target is removing it.
        Revoking = "revoking",
        /// The target confirmed it is gone.
        Revoked = "revoked",
        /// Never activated; what was started is cleaned up.
        Failed = "failed",
    }
}

wire_enum! {
    /// What was asked for: one entitlement, or a task profile (several granted together).
    AccessKind {
        Entitlement = "entitlement",
        Profile = "profile",
    }
}

wire_enum! {
    /// An approver's decision.
    Verdict {
        Approve = "approve",
        Deny = "deny",
    }
}

wire_enum! {
    /// How a request was approved.
    ApprovalVia {
        /// A person decided.
        Human = "human",
        /// Policy approved with no human.
        Policy = "policy",
        /// No decision: break-glass, reviewed afterwards.
        BreakGlass = "break_glass",
    }
}

wire_enum! {
    /// Where a break-glass review is.
    ReviewState {
        Open = "open",
        Closed = "closed",
    }
}

wire_enum! {
    /// What kind of identity a principal is.
    PrincipalKind {
        Human = "human",
        Workload = "workload",
        Agent = "agent",
    }
}

wire_enum! {
    /// Whether an identity may act.
    PrincipalStatus {
        Active = "active",
        /// Its keys, sessions and grants stopped; it may be resumed.
        Suspended = "suspended",
        /// For good.
        Offboarded = "offboarded",
    }
}

wire_enum! {
    /// What an access review covers.
    CampaignScope {
        /// Who may ask for what (policy over the identities).
        Eligibility = "eligibility",
        /// Privilege held in targets outside any live grant.
        Standing = "standing",
        /// Workloads and agents: their owners and keys.
        Identities = "identities",
    }
}

wire_enum! {
    /// What happens at the deadline to an item nobody decided.
    DefaultAction {
        Keep = "keep",
        Remove = "remove",
    }
}

wire_enum! {
    /// Where an access review is.
    CampaignState {
        Open = "open",
        Closed = "closed",
    }
}

wire_enum! {
    /// A reviewer's decision on one item.
    ItemDecision {
        Keep = "keep",
        Remove = "remove",
        /// Standing privilege becomes just-in-time: removed, and the person made eligible.
        Convert = "convert",
    }
}

wire_enum! {
    /// The target work a decision queued.
    ItemWork {
        None = "none",
        Pending = "pending",
        Done = "done",
        Failed = "failed",
    }
}

wire_enum! {
    /// How an MCP tool call ended, as an agent host reports it.
    ToolOutcome {
        Ok = "ok",
        Refused = "refused",
        Invalid = "invalid",
        Unknown = "unknown",
    }
}
