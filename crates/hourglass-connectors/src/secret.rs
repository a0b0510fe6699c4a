//! Credentials the database connectors create: random passwords, and the verifiers the servers
//! store, computed here so that the plaintext never travels in a SQL statement (where a server's
//! statement log could keep it).

use std::num::NonZeroU32;

use aws_lc_rs::{digest, hmac, pbkdf2};
use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use hourglass_core::connector::ConnectorError;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], ConnectorError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)
        .map_err(|e| ConnectorError::new(format!("the OS random source failed: {e}")))?;
    Ok(b)
}

/// A 32-character alphanumeric password (about 190 bits), safe inside any quoting.
pub fn password() -> Result<String, ConnectorError> {
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        for b in random_bytes::<64>()? {
            // 62 * 4 = 248: rejecting 248..=255 keeps the choice uniform.
            if b < 248 && out.len() < 32 {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    Ok(out)
}

/// PostgreSQL's SCRAM-SHA-256 verifier (`SCRAM-SHA-256$4096:salt$StoredKey:ServerKey`, RFC 5802
/// and RFC 7677), which `CREATE ROLE … PASSWORD` accepts as already hashed.
pub fn scram_sha256_verifier(password: &str) -> Result<String, ConnectorError> {
    let salt = random_bytes::<16>()?;
    Ok(scram_with_salt(password, &salt, 4096))
}

pub(crate) fn scram_with_salt(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = [0u8; 32];
    let rounds = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        password.as_bytes(),
        &mut salted,
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let server_key = hmac::sign(&key, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        B64.encode(salt),
        B64.encode(stored_key.as_ref()),
        B64.encode(server_key.as_ref())
    )
}

/// MariaDB/MySQL `mysql_native_password` hash (`*` + hex of SHA1(SHA1(password))), which
/// `IDENTIFIED BY PASSWORD '…'` accepts as already hashed.
pub fn mysql_native_hash(password: &str) -> String {
    let once = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
    let twice = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, once.as_ref());
    format!("*{}", hex::encode_upper(twice.as_ref()))
}

/// Quotes an SQL identifier with `quote` (`"` for PostgreSQL, `` ` `` for MariaDB), doubling
/// any quote inside. Identifiers with a NUL are refused.
pub fn quote_ident(name: &str, quote: char) -> Result<String, ConnectorError> {
    if name.is_empty() || name.contains('\0') {
        return Err(ConnectorError::new(format!(
            "{name:?} is not a valid identifier"
        )));
    }
    let doubled = name.replace(quote, &format!("{quote}{quote}"));
    Ok(format!("{quote}{doubled}{quote}"))
}

/// Quotes a string literal with single quotes (MariaDB user and host names). Backslashes and
/// NULs are refused rather than escaped, since their meaning depends on the server's SQL mode.
pub fn quote_literal(s: &str) -> Result<String, ConnectorError> {
    if s.contains(['\\', '\0']) {
        return Err(ConnectorError::new(format!(
            "{s:?} may not contain a backslash or NUL"
        )));
    }
    Ok(format!("'{}'", s.replace('\'', "''")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_alphanumeric_and_distinct() {
        let a = password().unwrap();
        let b = password().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn scram_verifier_matches_rfc7677_example() {
        // RFC 7677 section 3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==,
        // 4096 iterations. The server's stored key and server key follow from them.
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = scram_with_salt("pencil", &salt, 4096);
        assert_eq!(
            v,
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
        // The server key must produce the RFC's server signature over its AuthMessage.
        let server_key = B64
            .decode("wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=")
            .unwrap();
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let sig = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &server_key),
            auth_message.as_bytes(),
        );
        assert_eq!(
            B64.encode(sig.as_ref()),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn mysql_native_hash_matches_the_servers() {
        // SELECT PASSWORD('secret') on MariaDB.
        assert_eq!(
            mysql_native_hash("secret"),
            "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"
        );
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident(r#"a"b"#, '"').unwrap(), r#""a""b""#);
        assert_eq!(quote_ident("a`b", '`').unwrap(), "`a``b`");
        assert!(quote_ident("", '"').is_err());
        assert_eq!(quote_literal("o'k").unwrap(), "'o''k'");
        assert!(quote_literal("a\\b").is_err());
    }
}
