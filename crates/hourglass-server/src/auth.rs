//! Bearer API tokens. A token is `hgt_` followed by 32 random bytes in hex; only its SHA-256
//! is ever stored (in configuration, as `token_sha256`). Looking up the hash of the presented
//! token finds the principal; the plaintext is not kept anywhere.

use std::collections::BTreeMap;

use hourglass_core::id::PrincipalId;
use sha2::{Digest, Sha256};

/// The prefix of Hourglass API tokens, so that secret scanners can recognise them.
pub const TOKEN_PREFIX: &str = "hgt_";

/// SHA-256 of a token, lowercase hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token.
pub fn new_token() -> hourglass_core::Result<String> {
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        hourglass_core::id::random_hex::<32>()?
    ))
}

/// Token hashes → principals.
#[derive(Debug, Default, Clone)]
pub struct TokenIndex {
    by_hash: BTreeMap<String, PrincipalId>,
}

impl TokenIndex {
    pub fn insert(&mut self, hash: &str, principal: PrincipalId) -> bool {
        self.by_hash
            .insert(hash.to_ascii_lowercase(), principal)
            .is_none()
    }

    /// The principal a presented token belongs to.
    pub fn principal(&self, token: &str) -> Option<&PrincipalId> {
        self.by_hash.get(&token_hash(token.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_hash_only() {
        let t = new_token().unwrap();
        assert!(t.starts_with(TOKEN_PREFIX) && t.len() == 4 + 64);
        let mut idx = TokenIndex::default();
        idx.insert(&token_hash(&t), PrincipalId::new("alice").unwrap());
        assert_eq!(idx.principal(&t).map(PrincipalId::as_str), Some("alice"));
        assert!(
            idx.principal(&token_hash(&t)).is_none(),
            "the hash is not a token"
        );
        assert!(idx.principal("hgt_nope").is_none());
    }
}
