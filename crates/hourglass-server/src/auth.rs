//! Bearer API tokens. A token is `hgt_` followed by 32 random bytes in hex; only its SHA-256
//! is ever stored (in configuration, as `token_sha256`). Looking up the hash of the presented
//! token finds the principal; the plaintext is not kept anywhere.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_scanner_prefix_and_hash_to_hex() {
        let t = new_token().unwrap();
        assert!(t.starts_with(TOKEN_PREFIX) && t.len() == 4 + 64);
        let h = token_hash(&t);
        assert_eq!(h.len(), 64);
        assert_ne!(h, token_hash(&new_token().unwrap()));
    }
}
