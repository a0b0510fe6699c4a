//! A development issuer: an Ed25519 key in a directory, its JWKS beside it, and minting of
//! identity tokens with it. It backs `serve --demo` (so the README tour can show a CI job's
//! exchange) and tests; `hourglass dev mint-token` refuses to run unless the issuer's key file
//! is present. Never a production identity provider.

use std::{
    io,
    path::{Path, PathBuf},
};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair},
};
use base64::Engine as _;
use serde_json::{Value, json};

/// The key id of a development issuer's key.
pub const DEV_KID: &str = "dev-1";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A development issuer's signing key.
pub struct DevIssuer {
    pair: Ed25519KeyPair,
    kid: String,
}

impl DevIssuer {
    /// A fresh key, not written anywhere (tests).
    pub fn generate() -> io::Result<Self> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| io::Error::other("no randomness"))?;
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
            .map_err(|_| io::Error::other("generated key does not load"))?;
        Ok(DevIssuer {
            pair,
            kid: DEV_KID.into(),
        })
    }

    /// The same key under another key id (an issuer that rotated).
    pub fn with_kid(self, kid: &str) -> Self {
        DevIssuer {
            kid: kid.to_owned(),
            ..self
        }
    }

    /// Writes `key.pk8` (mode 0600) and `jwks.json` into `dir` unless the key exists; returns
    /// their paths.
    pub fn create(dir: &Path) -> io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let key = dir.join("key.pk8");
        let jwks = dir.join("jwks.json");
        if !key.exists() {
            let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| io::Error::other("no randomness"))?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            io::Write::write_all(&mut opts.open(&key)?, doc.as_ref())?;
        }
        let issuer = Self::load(&key)?;
        std::fs::write(&jwks, issuer.jwks().to_string())?;
        Ok((key, jwks))
    }

    /// Loads the key written by [`DevIssuer::create`].
    pub fn load(key: &Path) -> io::Result<Self> {
        let bytes = std::fs::read(key)?;
        let pair = Ed25519KeyPair::from_pkcs8(&bytes).map_err(|_| {
            io::Error::other(format!("{}: not an Ed25519 PKCS#8 key", key.display()))
        })?;
        Ok(DevIssuer {
            pair,
            kid: DEV_KID.into(),
        })
    }

    /// Its JWKS.
    pub fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid,
            "x": b64(self.pair.public_key().as_ref()),
        }]})
    }

    /// Signs `claims` (EdDSA, with its `kid`).
    pub fn mint(&self, claims: &Value) -> String {
        self.mint_with_header(
            &json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid}),
            claims,
        )
    }

    /// Signs with an arbitrary header (tests of refused algorithms and key ids).
    pub fn mint_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.pair.sign(input.as_bytes());
        format!("{input}.{}", b64(sig.as_ref()))
    }
}
