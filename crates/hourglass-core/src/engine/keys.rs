//! API keys: issued with a mandatory, bounded expiry and shown once; rotated with an overlap
//! during which both keys work; revoked at once. Only the SHA-256 of a key is stored, found by
//! its public prefix and compared in constant time. The identity's owner or an administrator
//! manages them; every change is audited in the same commit.

use secrecy::SecretString;
use sha2::{Digest, Sha256};

use super::{Caller, Engine};
use crate::{
    Error, GrantDuration, Result, Timestamp,
    catalog::PrincipalStatus,
    id::{KeyId, PrincipalId},
    identity::{ApiKey, Identity, KEY_PREFIX, Origin},
    lifecycle::Event,
    store::Commit,
};

/// A key just issued: its row and the secret, shown once.
pub struct IssuedKey {
    pub key: ApiKey,
    pub secret: SecretString,
}

/// Key lifetime rules, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct KeyPolicy {
    /// The longest expiry a key may be given (default 90 days).
    pub max_lifetime: GrantDuration,
    /// How long a rotated-out key keeps working (default 24 hours).
    pub rotation_overlap: GrantDuration,
    /// Keys older than this are flagged by the hygiene report (default 30 days).
    pub rotate_after: GrantDuration,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        KeyPolicy {
            max_lifetime: GrantDuration::from_secs(90 * 86_400),
            rotation_overlap: GrantDuration::from_secs(86_400),
            rotate_after: GrantDuration::from_secs(30 * 86_400),
        }
    }
}

/// SHA-256 of a secret, lowercase hex.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two digests (or other public-length texts) in time independent of where they differ.
pub fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Engine {
    /// The expiry of a new key: `expires` (a duration) or the maximum, never beyond it.
    fn key_expiry(&self, expires: Option<&str>, now: Timestamp) -> Result<Timestamp> {
        let max = self.settings.keys.max_lifetime;
        let d = match expires.map(str::trim).filter(|e| !e.is_empty()) {
            None => max,
            Some(text) => text
                .parse::<GrantDuration>()
                .map_err(|e| Error::invalid(crate::ErrorCode::KeyExpiresInvalid, "expires", e))?,
        };
        if d > max {
            return Err(Error::invalid(
                crate::ErrorCode::KeyExpiresExceedsMax,
                "expires",
                format!("a key lives at most {max}; asked for {d}"),
            ));
        }
        Ok(now.plus(d))
    }

    fn new_key(
        principal: &PrincipalId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<IssuedKey> {
        let public = crate::id::random_hex::<6>()?;
        let secret = format!("{KEY_PREFIX}{public}_{}", crate::id::random_hex::<32>()?);
        let key = ApiKey {
            id: KeyId::generate(now)?,
            principal: principal.clone(),
            prefix: Some(format!("{KEY_PREFIX}{public}")),
            hash: secret_hash(&secret),
            origin: Origin::Api,
            created_at: now,
            expires_at: Some(expires_at),
            revoked_at: None,
            last_used_at: None,
            replaced_by: None,
            version: 0,
        };
        Ok(IssuedKey {
            key,
            secret: SecretString::from(secret),
        })
    }

    /// Issues a key for an active identity; the secret is in the answer only.
    pub async fn create_key(
        &self,
        caller: &Caller,
        identity: &str,
        expires: Option<&str>,
    ) -> Result<IssuedKey> {
        let identity = self.load_managed(caller, identity).await?;
        require_active(&identity)?;
        let now = self.clock.now();
        let expires_at = self.key_expiry(expires, now)?;
        let issued = Self::new_key(identity.id(), expires_at, now)?;
        let ev = Event::KeyCreated {
            key: issued.key.id.clone(),
            actor: caller.principal.id.to_string(),
            identity: identity.id().clone(),
            prefix: issued.key.prefix.clone(),
            expires_at,
            replaces: None,
        }
        .record(now);
        self.commit(Commit {
            keys: vec![issued.key.clone()],
            audit: vec![ev],
            ..Commit::default()
        })
        .await?;
        Ok(issued)
    }

    async fn load_key(&self, caller: &Caller, id: &str) -> Result<(ApiKey, Identity)> {
        let not_found = || Error::not_found(crate::ErrorCode::KeyNotFound, format!("no key {id}"));
        let kid = KeyId::parse(id.trim()).ok_or_else(not_found)?;
        let key = self.store.get_key(&kid).await?.ok_or_else(not_found)?;
        let identity = self
            .load_managed(caller, key.principal.as_str())
            .await
            .map_err(|_| not_found())?;
        Ok((key, identity))
    }

    /// Replaces a key: a new one is issued, and the old one keeps working for the rotation
    /// overlap (or until its own expiry, if sooner), then is dead.
    pub async fn rotate_key(
        &self,
        caller: &Caller,
        id: &str,
        expires: Option<&str>,
    ) -> Result<(IssuedKey, ApiKey)> {
        // Read, decide (pure: `rotatable`, `retire`), commit.
        let (old, identity) = self.load_key(caller, id).await?;
        let now = self.clock.now();
        rotatable(&old, now)?;
        require_active(&identity)?;
        let expires_at = self.key_expiry(expires, now)?;
        let issued = Self::new_key(identity.id(), expires_at, now)?;
        let overlap_end = now.plus(self.settings.keys.rotation_overlap);
        let mut retiring = retire(
            &old,
            &issued.key.id,
            self.settings.keys.rotation_overlap,
            now,
        );
        let actor = caller.principal.id.to_string();
        let audit = vec![
            Event::KeyCreated {
                key: issued.key.id.clone(),
                actor: actor.clone(),
                identity: identity.id().clone(),
                prefix: issued.key.prefix.clone(),
                expires_at,
                replaces: Some(old.id.clone()),
            }
            .record(now),
            Event::KeyRotated {
                key: old.id.clone(),
                actor,
                identity: identity.id().clone(),
                replaced_by: issued.key.id.clone(),
                valid_until: retiring.expires_at.unwrap_or(overlap_end),
            }
            .record(now),
        ];
        self.commit(Commit {
            keys: vec![retiring.clone(), issued.key.clone()],
            audit,
            ..Commit::default()
        })
        .await?;
        retiring.version += 1;
        Ok((issued, retiring))
    }

    /// Revokes a key now. Revoking a revoked key changes nothing.
    pub async fn revoke_key(&self, caller: &Caller, id: &str) -> Result<ApiKey> {
        let (key, identity) = self.load_key(caller, id).await?;
        if key.revoked_at.is_some() {
            return Ok(key);
        }
        let now = self.clock.now();
        let gone = revoked(&key, now);
        let ev = Event::KeyRevoked {
            key: key.id.clone(),
            actor: caller.principal.id.to_string(),
            identity: identity.id().clone(),
            reason: None,
        }
        .record(now);
        self.commit(Commit {
            keys: vec![gone.clone()],
            audit: vec![ev],
            ..Commit::default()
        })
        .await?;
        Ok(ApiKey {
            version: gone.version + 1,
            ..gone
        })
    }
}

/// Whether `key` may be rotated at `now`: only a live key that was not rotated already.
fn rotatable(key: &ApiKey, now: Timestamp) -> Result<()> {
    if key.is_valid_at(now) && key.replaced_by.is_none() {
        return Ok(());
    }
    Err(Error::conflict(
        crate::ErrorCode::KeyNotActive,
        format!(
            "key {} is {} and cannot be rotated",
            key.id,
            if key.replaced_by.is_some() {
                "already rotated"
            } else {
                key.state_at(now)
            }
        ),
    ))
}

/// `key` as it retires at `now` in favour of `by`: it keeps working for the `overlap`, never
/// past its own end, and says what replaced it; nothing else about it changes.
fn retire(key: &ApiKey, by: &KeyId, overlap: GrantDuration, now: Timestamp) -> ApiKey {
    let overlap_end = now.plus(overlap);
    ApiKey {
        expires_at: Some(key.expires_at.map_or(overlap_end, |e| e.min(overlap_end))),
        replaced_by: Some(by.clone()),
        ..key.clone()
    }
}

/// Keys are issued only to active identities.
fn require_active(identity: &Identity) -> Result<()> {
    if identity.principal.status == PrincipalStatus::Active {
        return Ok(());
    }
    Err(Error::conflict(
        crate::ErrorCode::IdentityInactive,
        format!(
            "{} is {}",
            identity.id(),
            identity.principal.status.as_str()
        ),
    ))
}

pub(super) fn revoked(k: &ApiKey, now: Timestamp) -> ApiKey {
    ApiKey {
        revoked_at: Some(now),
        ..k.clone()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(now: Timestamp, ends_in: Option<i64>, revoked: bool, rotated: bool) -> ApiKey {
        ApiKey {
            id: KeyId::generate(now).unwrap(),
            principal: PrincipalId::new("ci-deployer").unwrap(),
            prefix: Some("hgk_0123456789ab".into()),
            hash: secret_hash("hgk_0123456789ab_secret"),
            origin: Origin::Api,
            created_at: now.plus_millis(-1_000),
            expires_at: ends_in.map(|ms| now.plus_millis(ms)),
            revoked_at: revoked.then(|| now.plus_millis(-10)),
            last_used_at: None,
            replaced_by: rotated.then(|| KeyId::generate(now).unwrap()),
            version: 3,
        }
    }

    proptest! {
        /// Only a live key that was not rotated already is rotated; the retiring key keeps
        /// working for the overlap and never past its own end, says what replaced it, and
        /// nothing else about it changes.
        #[test]
        fn a_rotation_never_extends_a_key_and_never_revives_one(
            now in 1_000_000_000i64..2_000_000_000,
            ends_in in proptest::option::of(-100_000i64..100_000_000),
            revoked in any::<bool>(),
            rotated in any::<bool>(),
            overlap_secs in 0u64..200_000,
        ) {
            let now = Timestamp::from_unix_millis(now);
            let old = key(now, ends_in, revoked, rotated);
            let live = !revoked && !rotated && ends_in.is_none_or(|ms| ms > 0);
            prop_assert_eq!(rotatable(&old, now).is_ok(), live);
            if let Err(e) = rotatable(&old, now) {
                prop_assert_eq!(e.code(), crate::ErrorCode::KeyNotActive);
            }
            let by = KeyId::generate(now).unwrap();
            let overlap = GrantDuration::from_secs(overlap_secs);
            let retiring = retire(&old, &by, overlap, now);
            let end = retiring.expires_at.unwrap();
            prop_assert!(end <= now.plus(overlap));
            if let Some(own) = old.expires_at {
                prop_assert!(end <= own);
            }
            if live && overlap_secs > 0 {
                prop_assert!(end > now, "a live key keeps working for the overlap");
            }
            prop_assert_eq!(retiring.replaced_by.as_ref(), Some(&by));
            prop_assert_eq!(
                ApiKey { expires_at: old.expires_at, replaced_by: old.replaced_by.clone(), ..retiring.clone() },
                old
            );
        }
    }
}
