//! One-time credentials, sealed in the ledger.
//!
//! A credential that a grant issues (a database password, a signed certificate) is sealed
//! before it is stored: encrypted and authenticated under a key Hourglass holds, bound to its
//! grant, its holder and its end, so that a sealed value moved to another grant or holder does
//! not open. It is written in the same commit that activates (or extends) the grant, so any
//! replica can hand it over; it is deleted when its holder takes it, and with the grant's
//! revocation or expiry if it was never taken. Plaintext never reaches the store, the audit
//! or the log: the grant row keeps only a fingerprint.

use secrecy::SecretString;

use crate::{
    Result, Timestamp,
    id::{GrantId, PrincipalId},
};

/// A credential as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedCredential {
    pub grant_id: GrantId,
    pub holder: PrincipalId,
    /// The grant's end: after it, the credential is never handed over.
    pub expires_at: Timestamp,
    /// The sealed bytes in the sealer's own text form (key id, nonce and ciphertext).
    pub sealed: String,
}

/// Seals and opens credentials (the server's implementation holds the key).
pub trait CredentialSeal: Send + Sync {
    /// Seals `secret` for `holder` of `grant_id` until `expires_at`.
    fn seal(
        &self,
        grant_id: &GrantId,
        holder: &PrincipalId,
        expires_at: Timestamp,
        secret: &SecretString,
    ) -> Result<SealedCredential>;
    /// Opens what [`CredentialSeal::seal`] sealed; fails if it was altered, moved to another
    /// grant, holder or end, or sealed under another key.
    fn open(&self, sealed: &SealedCredential) -> Result<SecretString>;
    /// How every value this sealer seals begins (its format and key id): a credential is only
    /// taken from the store by a process that can open it.
    fn sealed_prefix(&self) -> String;
}

/// What binds a sealed credential to its place (the authenticated data of the seal).
pub fn binding(grant_id: &GrantId, holder: &PrincipalId, expires_at: Timestamp) -> String {
    format!(
        "hourglass.credential.v1\0{grant_id}\0{holder}\0{}",
        expires_at.unix_millis()
    )
}
