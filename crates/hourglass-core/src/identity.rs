//! The identity directory: principals as stored (with when they were created and last seen),
//! the API keys they own, and the identity-token ids already exchanged.
//!
//! Invariants kept here:
//! - a workload or agent has an owner (checked by [`check_owner`] on every path that creates
//!   one);
//! - a key is stored only as the SHA-256 of its secret, with a short public prefix to find it;
//!   its expiry is mandatory (keys declared in configuration are the one exception, and the
//!   hygiene report flags their age);
//! - an offboarded identity never acts again: it cannot be resumed, and its keys are revoked.

use serde::{Deserialize, Serialize};

use crate::{
    Error, Result, Timestamp,
    catalog::{Principal, PrincipalKind, PrincipalStatus},
    id::{KeyId, PrincipalId},
};

/// Where an identity (or key) was declared: in `[[identities]]`, or through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Config,
    Api,
    /// Created at a person's first single sign-on (`[web.oidc] create_people`).
    SignIn,
    /// Provisioned by the organisation's directory (SCIM); the file cannot change it.
    Directory,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Api => "api",
            Origin::SignIn => "sign_in",
            Origin::Directory => "directory",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "config" => Some(Origin::Config),
            "api" => Some(Origin::Api),
            "sign_in" => Some(Origin::SignIn),
            "directory" => Some(Origin::Directory),
            _ => None,
        }
    }
}

/// A principal as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub principal: Principal,
    pub origin: Origin,
    pub created_at: Timestamp,
    /// The last authenticated call (updated at most once a minute; not an audit event).
    pub last_seen_at: Option<Timestamp>,
    /// Why it was suspended or offboarded.
    pub status_reason: Option<String>,
    /// Who set its status (suspended or offboarded it), and with what authority: an owner
    /// cannot lift what an administrator decided.
    pub status_set_by: Option<StatusSetBy>,
    /// The identity provider's account (`issuer#subject`) this person first signed in with;
    /// later sign-ins under the name must come from it (an administrator can unbind it).
    pub sign_in_subject: Option<String>,
    pub version: i64,
}

/// The authority behind a status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Authority {
    /// Administer on every entitlement.
    Administrator,
    /// The identity's owner (by name or through the owner group).
    Owner,
    /// `[[identities]]` in the configuration file.
    Configuration,
    /// The organisation's directory (SCIM): a deactivated person; the directory (or an
    /// administrator) lifts it.
    Directory,
}

impl Authority {
    pub fn as_str(self) -> &'static str {
        match self {
            Authority::Administrator => "administrator",
            Authority::Owner => "owner",
            Authority::Configuration => "configuration",
            Authority::Directory => "directory",
        }
    }
}

/// Who set an identity's status, and as what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusSetBy {
    pub actor: String,
    pub authority: Authority,
}

impl Identity {
    pub fn id(&self) -> &PrincipalId {
        &self.principal.id
    }
}

/// Names Hourglass writes as the actor of its own audit records: no identity may take one, or
/// its actions would read as the system's, a policy's or an anonymous caller's.
pub const RESERVED_NAMES: [&str; 3] = ["system", "policy", "anonymous"];

/// Whether `name` is one of [`RESERVED_NAMES`] (in any case).
pub fn is_reserved_name(name: &str) -> bool {
    RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// Workloads and agents must have an owner; humans may not name one.
pub fn check_owner(kind: PrincipalKind, owner: Option<&str>) -> Result<()> {
    match (kind, owner.map(str::trim).filter(|o| !o.is_empty())) {
        (PrincipalKind::Human, Some(_)) => Err(Error::invalid(
            crate::ErrorCode::IdentityOwnerNotAllowed,
            "owner",
            "a human identity has no owner",
        )),
        (PrincipalKind::Workload | PrincipalKind::Agent, None) => Err(Error::invalid(
            crate::ErrorCode::IdentityOwnerMissing,
            "owner",
            format!(
                "a {} must have an owner (a human or a group) who answers for it",
                kind.as_str()
            ),
        )),
        _ => Ok(()),
    }
}

/// The status an identity may move to from `from`, or why not.
pub fn check_transition(
    id: &PrincipalId,
    from: PrincipalStatus,
    to: PrincipalStatus,
) -> Result<()> {
    use PrincipalStatus::*;
    match (from, to) {
        (Offboarded, Active | Suspended) => Err(Error::conflict(
            crate::ErrorCode::IdentityOffboarded,
            format!("{id} is offboarded; create a new identity instead"),
        )),
        _ => Ok(()),
    }
}

/// The prefix of every Hourglass API key, so that secret scanners can recognise one.
pub const KEY_PREFIX: &str = "hgk_";

/// An API key: a random secret shown once, stored only as its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: KeyId,
    pub principal: PrincipalId,
    /// The public lookup part (`hgk_` and 12 hex digits); `None` for a token declared in
    /// configuration by its hash.
    pub prefix: Option<String>,
    /// SHA-256 of the whole secret, lowercase hex.
    pub hash: String,
    pub origin: Origin,
    pub created_at: Timestamp,
    /// Mandatory for issued keys; a rotation moves it to the end of the overlap.
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    /// The key that replaced this one in a rotation.
    pub replaced_by: Option<KeyId>,
    pub version: i64,
}

impl ApiKey {
    /// Whether the key authenticates at `now`.
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }

    /// `active`, `expired` or `revoked` at `now`.
    pub fn state_at(&self, now: Timestamp) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|e| now >= e) {
            "expired"
        } else {
            "active"
        }
    }
}

/// The public prefix of a presented key (`hgk_` + 12 hex digits), if it has the shape of one.
pub fn key_prefix(secret: &str) -> Option<&str> {
    let body = secret.strip_prefix(KEY_PREFIX)?;
    let (public, rest) = (body.get(..12)?, body.get(12..)?);
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (hex(public) && rest.len() == 1 + 64 && rest.starts_with('_') && hex(&rest[1..]))
        .then(|| &secret[..KEY_PREFIX.len() + 12])
}

/// One exchanged identity token, remembered until it expires so that it is not used twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUse {
    /// The issuer's URL (`iss`).
    pub issuer: String,
    pub jti: String,
    pub expires_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_prefix_needs_the_whole_shape() {
        let good = format!("hgk_0123456789ab_{}", "f".repeat(64));
        assert_eq!(key_prefix(&good), Some("hgk_0123456789ab"));
        assert_eq!(key_prefix(&good[..good.len() - 1]), None);
        assert_eq!(key_prefix(&good.replace("hgk_", "hgt_")), None);
        assert_eq!(
            key_prefix(&format!("hgk_0123456789aX_{}", "f".repeat(64))),
            None
        );
    }

    #[test]
    fn owners_are_required_for_non_humans_only() {
        assert!(check_owner(PrincipalKind::Workload, Some("alice")).is_ok());
        assert!(check_owner(PrincipalKind::Agent, Some(" ")).is_err());
        assert!(check_owner(PrincipalKind::Workload, None).is_err());
        assert!(check_owner(PrincipalKind::Human, Some("bob")).is_err());
        assert!(check_owner(PrincipalKind::Human, None).is_ok());
    }

    #[test]
    fn offboarding_is_final() {
        let id = PrincipalId::new("x").unwrap();
        use PrincipalStatus::*;
        assert!(check_transition(&id, Offboarded, Active).is_err());
        assert!(check_transition(&id, Offboarded, Offboarded).is_ok());
        assert!(check_transition(&id, Suspended, Active).is_ok());
    }

    #[test]
    fn key_validity() {
        let t = Timestamp::from_unix_millis(10_000);
        let mut k = ApiKey {
            id: KeyId::generate(t).unwrap(),
            principal: PrincipalId::new("a").unwrap(),
            prefix: None,
            hash: String::new(),
            origin: Origin::Api,
            created_at: t,
            expires_at: Some(t.plus_millis(1000)),
            revoked_at: None,
            last_used_at: None,
            replaced_by: None,
            version: 0,
        };
        assert!(k.is_valid_at(t));
        assert!(!k.is_valid_at(t.plus_millis(1000)));
        assert_eq!(k.state_at(t.plus_millis(1000)), "expired");
        k.revoked_at = Some(t);
        assert!(!k.is_valid_at(t));
        assert_eq!(k.state_at(t), "revoked");
    }
}
