//! Identifiers. Requests, grants and audit subjects get prefixed, time-ordered ids
//! (`req_0193…`, `grt_0193…`): a UUIDv7 built from the engine's clock (not the system clock, so
//! tests stay deterministic in order) and random bits, printed as 32 lowercase hex digits so that
//! the text sorts in creation order. Names (principals, entitlements, targets) are checked
//! strings.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result, Timestamp};

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| Error::internal(format!("no randomness: {e}")))?;
    Ok(buf)
}

/// A time-ordered id body for `at`.
fn ordered_id(at: Timestamp) -> Result<String> {
    let millis = u64::try_from(at.unix_millis()).unwrap_or(0);
    let random: [u8; 10] = random_bytes()?;
    let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    Ok(uuid.simple().to_string())
}

/// A directory (SCIM) id: a time-ordered UUID in its usual hyphenated form.
pub fn directory_id(at: Timestamp) -> Result<String> {
    let millis = u64::try_from(at.unix_millis()).unwrap_or(0);
    let random: [u8; 10] = random_bytes()?;
    Ok(uuid::Builder::from_unix_timestamp_millis(millis, &random)
        .into_uuid()
        .hyphenated()
        .to_string())
}

/// Random bytes as lowercase hex, for lease tokens and similar.
pub fn random_hex<const N: usize>() -> Result<String> {
    Ok(hex::encode(random_bytes::<N>()?))
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new id ordered by `at`.
            pub fn generate(at: Timestamp) -> Result<Self> {
                Ok(Self(format!("{}{}", $prefix, ordered_id(at)?)))
            }

            /// The id ordered by `at` whose other bits are `bits`: the same on every replica
            /// that computes it (a scheduled campaign's, so that only one starts it).
            pub fn derived(at: Timestamp, bits: [u8; 10]) -> Self {
                let millis = u64::try_from(at.unix_millis()).unwrap_or(0);
                let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &bits).into_uuid();
                Self(format!("{}{}", $prefix, uuid.simple()))
            }

            /// Parses an id given by a client or read back from the store.
            pub fn parse(s: &str) -> Option<Self> {
                let body = s.strip_prefix($prefix)?;
                let ok = body.len() == 32
                    && body.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                ok.then(|| Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// A request id, `req_…`.
    RequestId,
    "req_"
);
prefixed_id!(
    /// A grant id, `grt_…`. Connectors key every operation on it, and names created in targets
    /// carry it, so that a leftover can always be traced.
    GrantId,
    "grt_"
);
prefixed_id!(
    /// A break-glass review id, `rev_…`.
    ReviewId,
    "rev_"
);
prefixed_id!(
    /// An access review campaign, `cmp_…`.
    CampaignId,
    "cmp_"
);
prefixed_id!(
    /// One item of an access review, `itm_…`.
    CampaignItemId,
    "itm_"
);
prefixed_id!(
    /// A notification in the delivery queue, `ntf_…`.
    NotificationId,
    "ntf_"
);
prefixed_id!(
    /// An API key id, `key_…` (public: it names the key in listings, never authenticates).
    KeyId,
    "key_"
);

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $allow_slash:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks the name: 1–128 characters of `[A-Za-z0-9._@-]` (and `/` where allowed).
            pub fn new(s: impl Into<String>) -> std::result::Result<Self, String> {
                let s = s.into();
                let ok_char = |c: char| {
                    c.is_ascii_alphanumeric()
                        || matches!(c, '.' | '_' | '-' | '@')
                        || ($allow_slash && c == '/')
                };
                if s.is_empty() || s.len() > 128 || !s.chars().all(ok_char) {
                    return Err(format!(
                        "invalid {} {:?}: use 1-128 of A-Z a-z 0-9 . _ - @{}",
                        $what,
                        s,
                        if $allow_slash { " /" } else { "" }
                    ));
                }
                Ok(Self(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> std::result::Result<Self, String> {
                Self::new(s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_id!(
    /// A principal's name (`alice`, `ci-deployer`).
    PrincipalId,
    "principal name",
    false
);
name_id!(
    /// A target's name (`pg-prod`, `demo`).
    TargetId,
    "target name",
    false
);
name_id!(
    /// An entitlement, `target/name` (`pg-prod/readwrite`).
    EntitlementId,
    "entitlement name",
    true
);

name_id!(
    /// A task profile (`helpdesk/file-recovery`): a bundle of entitlements granted together.
    ProfileId,
    "profile name",
    true
);

impl EntitlementId {
    /// The target part of `target/name`.
    pub fn target(&self) -> &str {
        self.0.split('/').next().unwrap_or_default()
    }
}

/// What a request asks for: one entitlement, or a task profile (its entitlements together).
/// Both are named `area/name`; a configuration may not use one name for both.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum AccessId {
    Entitlement(EntitlementId),
    Profile(ProfileId),
}

impl AccessId {
    pub fn name(&self) -> &str {
        match self {
            AccessId::Entitlement(e) => e.as_str(),
            AccessId::Profile(p) => p.as_str(),
        }
    }
    /// `entitlement` or `profile`.
    pub fn kind(&self) -> &'static str {
        match self {
            AccessId::Entitlement(_) => "entitlement",
            AccessId::Profile(_) => "profile",
        }
    }
    /// Rebuilds an id from its kind and name, as stored.
    pub fn from_parts(kind: &str, name: &str) -> Option<Self> {
        match kind {
            "entitlement" => EntitlementId::new(name).ok().map(AccessId::Entitlement),
            "profile" => ProfileId::new(name).ok().map(AccessId::Profile),
            _ => None,
        }
    }
}

impl fmt::Display for AccessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_sort_by_time() {
        let a = GrantId::generate(Timestamp::from_unix_millis(1_000)).unwrap();
        let b = GrantId::generate(Timestamp::from_unix_millis(2_000)).unwrap();
        assert!(a.as_str().starts_with("grt_"));
        assert!(a < b);
        assert_eq!(GrantId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(RequestId::parse(a.as_str()), None);
        assert_eq!(GrantId::parse("grt_xyz"), None);
    }

    #[test]
    fn names_reject_odd_characters() {
        assert!(PrincipalId::new("alice").is_ok());
        assert!(PrincipalId::new("a b").is_err());
        assert!(PrincipalId::new("a/b").is_err());
        assert!(PrincipalId::new("").is_err());
        assert_eq!(EntitlementId::new("pg/rw").unwrap().target(), "pg");
    }
}
