//! The organisation's directory as its identity provider provisions it (SCIM 2.0): people and
//! groups, kept in the ledger beside the principals they make. A user entry names the human
//! principal it is; a group entry lists its members by their directory ids.
//!
//! Names are unique per kind without regard to case (`userName` for users, `displayName` for
//! groups), as SCIM clients expect: a second `Alice@Example.com` is a `uniqueness` conflict.

use serde::{Deserialize, Serialize};

use crate::{Timestamp, id::PrincipalId};

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryKind {
    User,
    Group,
}

impl DirectoryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryKind::User => "user",
            DirectoryKind::Group => "group",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(DirectoryKind::User),
            "group" => Some(DirectoryKind::Group),
            _ => None,
        }
    }
}

/// A person or group as the directory provisioned it.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryEntry {
    pub kind: DirectoryKind,
    /// The id the directory knows it by (a UUID Hourglass assigned at creation).
    pub id: String,
    /// `userName` or `displayName`; unique per kind without regard to case.
    pub name: String,
    /// The client's own id for it (Okta's or Entra ID's).
    pub external_id: Option<String>,
    /// The principal a user entry is (none for a group).
    pub principal: Option<PrincipalId>,
    /// A user's manager, by directory id (the enterprise extension's `manager.value`).
    pub manager: Option<String>,
    /// The SCIM resource as last written, without `id` and `meta` (they are the fields here).
    pub resource: serde_json::Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Inserted when 0, else updated only if still at this version (SCIM's `meta.version`).
    pub version: i64,
}

impl DirectoryEntry {
    /// The key names are unique under.
    pub fn name_key(name: &str) -> String {
        name.to_lowercase()
    }
}

/// What happens to a person the directory deactivates or deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Leave {
    /// Suspended: cannot act; the directory or an administrator may activate them again.
    #[default]
    Suspend,
    /// Offboarded for good.
    Offboard,
}

impl Leave {
    pub fn as_str(self) -> &'static str {
        match self {
            Leave::Suspend => "suspend",
            Leave::Offboard => "offboard",
        }
    }
}

/// How the directory's changes act on principals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectorySettings {
    pub on_deactivate: Leave,
    pub on_delete: Leave,
    /// A member who loses a group also loses live grants policy no longer permits.
    pub revoke_on_eligibility_loss: bool,
}

impl Default for DirectorySettings {
    fn default() -> Self {
        DirectorySettings {
            on_deactivate: Leave::Suspend,
            on_delete: Leave::Offboard,
            revoke_on_eligibility_loss: false,
        }
    }
}
