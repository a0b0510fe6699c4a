//! Sealing one-time credentials for the store: ChaCha20-Poly1305 (through `aws-lc-rs`) under a
//! 256-bit key, with a fresh random nonce per credential and the grant, holder and end as
//! authenticated data. The sealed text is `v1.KEYID.NONCE.CIPHERTEXT` (hex), where `KEYID`
//! names the key (the first 8 bytes of its SHA-256), so that a credential sealed under another
//! key says so instead of failing as if altered.
//!
//! The key lives in `credential.key` in the signing-key directory (`[tokens] key_dir`, else
//! beside the SQLite database, else beside the configuration file), created 0600 on first start.
//! Replicas that share that directory (or a copy of the file) hand over each other's
//! credentials. With no directory at all the key lives in memory only, and credentials not taken
//! before a restart are lost, which is the safe side: the holder revokes and asks again.

use std::{
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::Path,
};

use aws_lc_rs::{
    aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    rand::{SecureRandom as _, SystemRandom},
};
use hourglass_core::{
    Error, Result, Timestamp,
    credential::{CredentialSeal, SealedCredential, binding},
    id::{GrantId, PrincipalId},
};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

/// The file that holds the key, in the key directory.
pub const KEY_FILE: &str = "credential.key";

/// Seals and opens credentials under one key.
pub struct Sealer {
    key: LessSafeKey,
    key_id: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    fn with_key(bytes: &[u8; 32]) -> Result<Self> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| Error::internal("credential key: not a ChaCha20-Poly1305 key"))?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
            key_id: hex::encode(&Sha256::digest(bytes)[..8]),
            rng: SystemRandom::new(),
        })
    }

    fn random_key() -> Result<[u8; 32]> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| Error::internal("no randomness for the credential key"))?;
        Ok(bytes)
    }

    /// A sealer whose key exists only in this process.
    pub fn ephemeral() -> Result<Self> {
        Self::with_key(&Self::random_key()?)
    }

    /// The sealer of the key in `dir`, creating the directory and the key (0600) if needed.
    /// The key is written whole to a private temporary file and then linked into place, so
    /// two processes starting together create it once and neither reads a half-written key.
    pub fn in_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(KEY_FILE);
        let cannot =
            |e: std::io::Error| Error::internal(format!("credential key {}: {e}", path.display()));
        std::fs::create_dir_all(dir).map_err(cannot)?;
        if !path.exists() {
            let key = Self::random_key()?;
            let tmp = dir.join(format!(
                ".{KEY_FILE}.{}",
                hourglass_core::id::random_hex::<8>()?
            ));
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .and_then(|mut f| {
                    f.write_all(hex::encode(key).as_bytes())?;
                    f.sync_all()
                })
                .and_then(|()| std::fs::hard_link(&tmp, &path));
            let _ = std::fs::remove_file(&tmp);
            match written {
                Ok(()) => return Self::with_key(&key),
                // Another process linked its key first: use that one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(cannot(e)),
            }
        }
        // A key others may read or write is not this process's secret any more.
        let mode = std::fs::metadata(&path)
            .map_err(cannot)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Error::internal(format!(
                "credential key {}: readable or writable by others (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(cannot)?;
        let key = parse_key(text.trim()).ok_or_else(|| {
            Error::internal(format!(
                "credential key {}: not 64 hexadecimal digits",
                path.display()
            ))
        })?;
        Self::with_key(&key)
    }

    fn aad(grant_id: &GrantId, holder: &PrincipalId, expires_at: Timestamp) -> Aad<Vec<u8>> {
        Aad::from(binding(grant_id, holder, expires_at).into_bytes())
    }
}

fn parse_key(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

fn unreadable() -> Error {
    Error::internal(
        "a sealed credential does not open (altered, moved, or sealed under another key)",
    )
}

impl CredentialSeal for Sealer {
    fn seal(
        &self,
        grant_id: &GrantId,
        holder: &PrincipalId,
        expires_at: Timestamp,
        secret: &SecretString,
    ) -> Result<SealedCredential> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| Error::internal("no randomness for a credential nonce"))?;
        let mut data = secret.expose_secret().as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Self::aad(grant_id, holder, expires_at),
                &mut data,
            )
            .map_err(|_| Error::internal("sealing a credential failed"))?;
        Ok(SealedCredential {
            grant_id: grant_id.clone(),
            holder: holder.clone(),
            expires_at,
            sealed: format!(
                "v1.{}.{}.{}",
                self.key_id,
                hex::encode(nonce),
                hex::encode(&data)
            ),
        })
    }

    fn sealed_prefix(&self) -> String {
        format!("v1.{}.", self.key_id)
    }

    fn open(&self, s: &SealedCredential) -> Result<SecretString> {
        let mut parts = s.sealed.split('.');
        let (Some("v1"), Some(key_id), Some(nonce), Some(data), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(unreadable());
        };
        if key_id != self.key_id {
            return Err(Error::internal(format!(
                "a sealed credential was sealed under key {key_id}, this process holds {}: replicas must share {KEY_FILE}",
                self.key_id
            )));
        }
        let nonce: [u8; NONCE_LEN] = hex::decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(unreadable)?;
        let mut data = hex::decode(data).map_err(|_| unreadable())?;
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Self::aad(&s.grant_id, &s.holder, s.expires_at),
                &mut data,
            )
            .map_err(|_| unreadable())?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| unreadable())?;
        Ok(SecretString::from(text))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn ids() -> (GrantId, PrincipalId, Timestamp) {
        let at = Timestamp::from_unix_millis(1_800_000_000_000);
        (
            GrantId::generate(at).unwrap(),
            PrincipalId::new("alice").unwrap(),
            at,
        )
    }

    #[test]
    fn a_sealed_credential_opens_only_where_it_was_sealed_for() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sealer::in_dir(dir.path()).unwrap();
        let (g, alice, end) = ids();
        let secret = SecretString::from("pg-password-123".to_owned());
        let sealed = s.seal(&g, &alice, end, &secret).unwrap();
        assert!(!sealed.sealed.contains("pg-password-123"));
        assert!(sealed.sealed.starts_with(&s.sealed_prefix()));
        assert_eq!(s.open(&sealed).unwrap().expose_secret(), "pg-password-123");
        // Another process with the same key file opens it; the file is the owner's only.
        let again = Sealer::in_dir(dir.path()).unwrap();
        assert_eq!(
            again.open(&sealed).unwrap().expose_secret(),
            "pg-password-123"
        );
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Moved to another holder, grant or end, or altered: it does not open.
        let mut moved = sealed.clone();
        moved.holder = PrincipalId::new("mallory").unwrap();
        assert!(s.open(&moved).is_err());
        let mut moved = sealed.clone();
        moved.grant_id = GrantId::generate(end).unwrap();
        assert!(s.open(&moved).is_err());
        let mut moved = sealed.clone();
        moved.expires_at = Timestamp::from_unix_millis(end.unix_millis() + 1);
        assert!(s.open(&moved).is_err());
        let mut altered = sealed.clone();
        let last = altered.sealed.pop().unwrap();
        altered.sealed.push(if last == '0' { '1' } else { '0' });
        assert!(s.open(&altered).is_err());
        // Two seals of the same secret differ (a fresh nonce each time).
        assert_ne!(
            s.seal(&g, &alice, end, &secret).unwrap().sealed,
            sealed.sealed
        );
        // Another key names itself.
        let other = Sealer::ephemeral().unwrap();
        assert!(!sealed.sealed.starts_with(&other.sealed_prefix()));
        let err = other.open(&sealed).unwrap_err();
        assert!(format!("{err:?}").contains(KEY_FILE), "{err:?}");
    }

    #[test]
    fn a_key_file_that_is_not_a_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::write(&path, "not-hex").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = Sealer::in_dir(dir.path()).unwrap_err();
        assert!(format!("{err:?}").contains("64 hexadecimal"), "{err:?}");
        // A good key that others may read is refused too.
        std::fs::write(&path, "ab".repeat(32)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Sealer::in_dir(dir.path()).unwrap_err();
        assert!(format!("{err:?}").contains("chmod 600"), "{err:?}");
    }
}
