//! One-time credential hand-over. A credential a grant issues is held in this process's memory
//! only until its holder fetches it once or the grant's window closes; it is never written to the
//! store, the audit or the log (the store keeps only its fingerprint). A restart loses undelivered
//! credentials, which is the safe side: the requester revokes and asks again.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use hourglass_core::{
    Timestamp,
    engine::CredentialSink,
    id::{GrantId, PrincipalId},
};
use secrecy::SecretString;

struct Held {
    holder: PrincipalId,
    expires_at: Timestamp,
    secret: SecretString,
}

/// Credentials waiting for their holder.
#[derive(Default)]
pub struct CredentialVault {
    held: Mutex<HashMap<GrantId, Held>>,
}

impl CredentialVault {
    /// Takes the credential of `grant` for `holder`, once. Expired ones are dropped.
    pub fn take(
        &self,
        grant: &GrantId,
        holder: &PrincipalId,
        now: Timestamp,
    ) -> Option<(SecretString, Timestamp)> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.retain(|_, h| h.expires_at > now);
        match held.get(grant) {
            Some(h) if &h.holder == holder => held.remove(grant).map(|h| (h.secret, h.expires_at)),
            _ => None,
        }
    }
}

impl CredentialVault {
    /// Whether a credential of `grant` waits for `holder` (not taking it).
    pub fn waiting(&self, grant: &GrantId, holder: &PrincipalId, now: Timestamp) -> bool {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(grant)
            .is_some_and(|h| &h.holder == holder && h.expires_at > now)
    }

    /// Drops the credential of `grant` (its grant ended: it is never handed over).
    pub fn forget(&self, grant: &GrantId) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(grant);
    }
}

impl CredentialSink for CredentialVault {
    fn deliver(
        &self,
        grant_id: &GrantId,
        holder: &PrincipalId,
        expires_at: Timestamp,
        secret: SecretString,
    ) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                grant_id.clone(),
                Held {
                    holder: holder.clone(),
                    expires_at,
                    secret,
                },
            );
    }
}
