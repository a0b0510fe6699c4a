//! The Ed25519 keys that sign Hourglass access tokens, and the JWKS that publishes them.
//!
//! Keys live as PKCS#8 files (mode 0600) in one directory, named `<created unix secs>-<random>`
//! which is also their `kid`. Rotation with overlap on both sides:
//! - a new key is made when the newest is `rotate_every` old, and is published in the JWKS at
//!   once but signs only after [`PUBLISH_AHEAD_SECS`], so verifiers that cache the JWKS see it
//!   before they meet it;
//! - a replaced key stays published for `retire_after` (at least the longest token lifetime)
//!   after its successor started signing, then its file is deleted.
//!
//! Every time is the caller's clock (seconds), never the system's.

use std::{
    io,
    path::{Path, PathBuf},
    sync::{PoisonError, RwLock},
};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair},
};
use base64::Engine as _;
use serde_json::{Value, json};

/// How long a new key is published before it signs.
pub const PUBLISH_AHEAD_SECS: i64 = 600;

struct Key {
    kid: String,
    created: i64,
    pair: Ed25519KeyPair,
}

/// Rotation settings.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    pub rotate_every_secs: i64,
    pub retire_after_secs: i64,
}

/// The signing keys of this deployment.
pub struct Signer {
    dir: PathBuf,
    issuer: String,
    rotation: Rotation,
    /// Oldest first.
    keys: RwLock<Vec<Key>>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The public keys (JWKS) of the key directory `dir` as they are, read without creating,
/// rotating or retiring anything (offline checks).
pub fn published(dir: &Path) -> io::Result<Value> {
    let keys = scan(dir)?;
    Ok(json!({
        "keys": keys.iter().map(|k| json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": k.kid,
            "x": b64(k.pair.public_key().as_ref()),
        })).collect::<Vec<_>>()
    }))
}

/// The keys in `dir`, oldest first.
fn scan(dir: &Path) -> io::Result<Vec<Key>> {
    let mut keys = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pk8") {
            continue;
        }
        let Some(kid) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        let created = kid
            .split('-')
            .next()
            .and_then(|c| c.parse::<i64>().ok())
            .ok_or_else(|| io::Error::other(format!("{}: not a key file name", path.display())))?;
        let pair = Ed25519KeyPair::from_pkcs8(&std::fs::read(&path)?).map_err(|_| {
            io::Error::other(format!("{}: not an Ed25519 PKCS#8 key", path.display()))
        })?;
        keys.push(Key { kid, created, pair });
    }
    keys.sort_by(|a, b| a.created.cmp(&b.created).then(a.kid.cmp(&b.kid)));
    Ok(keys)
}

impl Signer {
    /// Opens (creating) the key directory, loads its keys and rotates as due at `now`.
    pub fn open(dir: &Path, issuer: &str, rotation: Rotation, now: i64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        // Loaded by `maintain`, under the directory's lock.
        let s = Signer {
            dir: dir.to_owned(),
            issuer: issuer.to_owned(),
            rotation,
            keys: RwLock::new(Vec::new()),
        };
        s.maintain(now)?;
        Ok(s)
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Makes a new key when the newest is due for rotation, and retires replaced keys whose
    /// overlap ended.
    ///
    /// Several replicas may share the directory: the decision is taken under a lock on it, on
    /// the keys it holds then, so that one replica makes the new key and the others load it.
    /// (Every replica reaches the same decision at the same time, from the same newest key.)
    pub fn maintain(&self, now: i64) -> io::Result<()> {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".rotation.lock"))?;
        lock.lock()?;
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        *keys = scan(&self.dir)?;
        if keys
            .last()
            .is_none_or(|k| now - k.created >= self.rotation.rotate_every_secs)
        {
            let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| io::Error::other("no randomness for a signing key"))?;
            let mut rand = [0u8; 4];
            aws_lc_rs::rand::fill(&mut rand).map_err(|_| io::Error::other("no randomness"))?;
            let kid = format!(
                "{now}-{}",
                rand.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
            write_private(&self.dir.join(format!("{kid}.pk8")), doc.as_ref())?;
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
                .map_err(|_| io::Error::other("generated key does not load"))?;
            tracing::info!(%kid, "new token signing key");
            keys.push(Key {
                kid,
                created: now,
                pair,
            });
        }
        // Key i is replaced when key i+1 starts signing; it stays published retire_after longer.
        let old: Vec<Key> = keys.drain(..).collect();
        let starts: Vec<i64> = old.iter().map(|k| k.created + PUBLISH_AHEAD_SECS).collect();
        for (i, k) in old.into_iter().enumerate() {
            let replaced_at = starts.get(i + 1).copied();
            if replaced_at.is_some_and(|r| now >= r + self.rotation.retire_after_secs) {
                let path = self.dir.join(format!("{}.pk8", k.kid));
                if let Err(e) = std::fs::remove_file(&path)
                    && e.kind() != io::ErrorKind::NotFound
                {
                    return Err(e);
                }
                tracing::info!(kid = %k.kid, "token signing key retired");
            } else {
                keys.push(k);
            }
        }
        Ok(())
    }

    /// The published keys (JWKS), newest last.
    pub fn jwks(&self) -> Value {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        json!({
            "keys": keys.iter().map(|k| json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "use": "sig",
                "kid": k.kid,
                "x": b64(k.pair.public_key().as_ref()),
            })).collect::<Vec<_>>()
        })
    }

    /// Signs `claims` as a compact JWS (EdDSA) with the key in force at `now`; returns the
    /// token and the `kid`.
    pub fn sign(&self, claims: &Value, now: i64) -> io::Result<(String, String)> {
        self.maintain_if_due(now)?;
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        // The newest key that has been published long enough, else (at bootstrap) the oldest.
        let key = keys
            .iter()
            .rev()
            .find(|k| now >= k.created + PUBLISH_AHEAD_SECS)
            .or_else(|| keys.first())
            .ok_or_else(|| io::Error::other("no signing key"))?;
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": key.kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = key.pair.sign(input.as_bytes());
        Ok((format!("{input}.{}", b64(sig.as_ref())), key.kid.clone()))
    }

    /// Rotates or retires keys if one is due at `now` (cheap when nothing is).
    pub fn maintain_if_due(&self, now: i64) -> io::Result<()> {
        let due = {
            let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            let starts: Vec<i64> = keys
                .iter()
                .map(|k| k.created + PUBLISH_AHEAD_SECS)
                .collect();
            keys.last()
                .is_none_or(|k| now - k.created >= self.rotation.rotate_every_secs)
                || starts
                    .iter()
                    .skip(1)
                    .any(|s| now >= s + self.rotation.retire_after_secs)
        };
        if due { self.maintain(now) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn rotation() -> Rotation {
        Rotation {
            rotate_every_secs: 7 * DAY,
            retire_after_secs: DAY,
        }
    }

    fn kids(s: &Signer) -> Vec<String> {
        s.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn replicas_sharing_the_directory_rotate_once_and_publish_the_same_keys() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_700_000_000;
        let a = Signer::open(dir.path(), "https://hg", rotation(), t0).unwrap();
        let b = Signer::open(dir.path(), "https://hg", rotation(), t0).unwrap();
        assert_eq!(kids(&a).len(), 1);
        assert_eq!(
            kids(&a),
            kids(&b),
            "the second replica loads the first one's key"
        );

        // Rotation is due on both at once: one key is made, and both publish it.
        let t1 = t0 + 7 * DAY;
        a.maintain_if_due(t1).unwrap();
        b.maintain_if_due(t1).unwrap();
        assert_eq!(kids(&a).len(), 2);
        assert_eq!(kids(&a), kids(&b));
        let files = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "pk8")
            })
            .count();
        assert_eq!(files, 2);
        // Once the new key signs, a token from either verifies against the other's JWKS.
        let (_, kid) = b.sign(&json!({}), t1 + PUBLISH_AHEAD_SECS).unwrap();
        assert!(kids(&a).contains(&kid));
    }

    #[test]
    fn rotates_with_overlap_and_retires() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_700_000_000;
        let s = Signer::open(dir.path(), "https://hg", rotation(), t0).unwrap();
        let first = kids(&s);
        assert_eq!(first.len(), 1);
        let (_, kid) = s.sign(&json!({"sub": "a"}), t0).unwrap();
        assert_eq!(kid, first[0], "the only key signs at bootstrap");

        // A week on: a second key is published, but the first still signs for a while.
        let t1 = t0 + 7 * DAY;
        let (_, kid) = s.sign(&json!({}), t1).unwrap();
        let both = kids(&s);
        assert_eq!(both.len(), 2);
        assert_eq!(kid, first[0], "a new key is published before it signs");
        let (_, kid) = s.sign(&json!({}), t1 + PUBLISH_AHEAD_SECS).unwrap();
        assert_eq!(kid, both[1]);
        // The old key stays published for the overlap, then goes, file and all.
        s.maintain(t1 + PUBLISH_AHEAD_SECS + DAY - 1).unwrap();
        assert_eq!(kids(&s).len(), 2);
        s.maintain(t1 + PUBLISH_AHEAD_SECS + DAY).unwrap();
        assert_eq!(kids(&s), vec![both[1].clone()]);
        assert!(!dir.path().join(format!("{}.pk8", first[0])).exists());

        // Reopened, the same keys are found.
        let again = Signer::open(
            dir.path(),
            "https://hg",
            rotation(),
            t1 + PUBLISH_AHEAD_SECS + DAY,
        )
        .unwrap();
        assert_eq!(kids(&again), vec![both[1].clone()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(format!("{}.pk8", both[1])))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "private keys are not readable by others");
        }
    }
}

/// Verifies an EdDSA compact JWS made by [`Signer::sign`] against a JWKS such as
/// [`Signer::jwks`] (by its `kid`); returns its claims. Expiry is the caller's to judge: an
/// archive's manifest is checked years after it was signed.
pub fn verify_own(token: &str, jwks: &Value) -> Result<Value, String> {
    use base64::Engine as _;
    let d = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| "not base64url".to_owned())
    };
    let mut parts = token.trim().split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWS".into());
    };
    let header: Value = serde_json::from_slice(&d(h)?).map_err(|_| "a header that is not JSON")?;
    if header["alg"] != "EdDSA" {
        return Err("not signed with EdDSA".into());
    }
    let kid = header["kid"].as_str().ok_or("no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid))
        .ok_or_else(|| format!("key {kid} is not in the key set"))?;
    if jwk["kty"] != "OKP" || jwk["crv"] != "Ed25519" {
        return Err(format!("key {kid} is not an Ed25519 key"));
    }
    let x = d(jwk["x"].as_str().ok_or("a key without x")?)?;
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, &x)
        .verify(format!("{h}.{p}").as_bytes(), &d(sig)?)
        .map_err(|_| "the signature does not verify".to_owned())?;
    serde_json::from_slice(&d(p)?).map_err(|_| "claims that are not JSON".to_owned())
}

#[cfg(test)]
mod verify_tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_and_a_changed_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            rotate_every_secs: 86_400,
            retire_after_secs: 172_800,
        };
        let s = Signer::open(dir.path(), "https://hg.example", rotation, 1_000).unwrap();
        let (t, _) = s.sign(&json!({"a": 1}), 1_000).unwrap();
        assert_eq!(verify_own(&t, &s.jwks()).unwrap()["a"], 1);
        let mut parts: Vec<&str> = t.split('.').collect();
        let other = b64(json!({"a": 2}).to_string().as_bytes());
        parts[1] = &other;
        assert!(verify_own(&parts.join("."), &s.jwks()).is_err());
        assert!(verify_own(&t, &json!({"keys": []})).is_err());
        assert!(verify_own("a.b", &s.jwks()).is_err());
    }
}
