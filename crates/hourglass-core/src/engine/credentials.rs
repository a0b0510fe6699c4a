//! Handing over a grant's one-time credential: to its holder, once, while the grant is active,
//! from whichever process the holder asks (the credential is sealed in the store).

use secrecy::SecretString;
use tracing::info;

use super::{Caller, Engine};
use crate::{
    Error, Result, Timestamp, audit::AuditRecord, event::EventKind, grant::GrantState, id::GrantId,
    store::Commit,
};

fn gone() -> Error {
    Error::not_found(
        crate::ErrorCode::CredentialNotAvailable,
        "no credential is waiting for you on this grant (it is shown once)",
    )
}

impl Engine {
    /// Takes the credential of grant `id` for the caller, who must hold the grant: handed over
    /// once, and only while the grant is active, in one commit with its `credential.handed_over`
    /// record (two processes asked at once: one hands it over, the other's commit conflicts and
    /// it answers that nothing waits). Also the end it was sealed for (the grant's end when it
    /// was issued). A credential sealed under another key (a replica that does not share
    /// `credential.key`) is left in place for a replica that can open it, and this answers an
    /// internal error that says so in the log.
    pub async fn take_credential(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(SecretString, Timestamp)> {
        let gid = GrantId::parse(id).ok_or_else(gone)?;
        let Some(grant) = self.store.get_grant(&gid).await? else {
            return Err(gone());
        };
        // A grant that is revoking, revoked or failed lost its credential in the commit that
        // moved it; one that is still provisioning has none yet.
        if grant.principal != caller.principal.id || grant.state != GrantState::Active {
            return Err(gone());
        }
        let now = self.clock.now();
        let prefix = self.credentials.sealed_prefix();
        let Some(sealed) = self
            .store
            .waiting_credential(&gid, &caller.principal.id, &prefix, now)
            .await?
        else {
            let waiting = self
                .store
                .waiting_credentials(&caller.principal.id, now)
                .await?;
            return Err(if waiting.contains(&gid) {
                crate::Error::internal(format!(
                    "the credential of {gid} was sealed under another key than this process's ({prefix}…): replicas must share credential.key; it is left for one that can open it"
                ))
            } else {
                gone()
            });
        };
        // Opened before it is taken: one this process cannot open stays for another.
        let secret = self.credentials.open(&sealed)?;
        let expires_at = sealed.expires_at;
        let record = AuditRecord::new(
            now,
            caller.principal.id.as_str(),
            EventKind::CredentialHandedOver,
            gid.as_str(),
        )
        .with("expires_at", expires_at);
        match self
            .commit(Commit {
                credentials_taken: vec![sealed],
                audit: vec![record],
                ..Commit::default()
            })
            .await
        {
            Ok(_) => {}
            Err(Error::StoreConflict) => return Err(gone()),
            Err(e) => return Err(e),
        }
        info!(grant_id = %gid, "credential handed over");
        Ok((secret, expires_at))
    }

    /// The caller's grants on which a credential waits (not taking any).
    pub async fn waiting_credentials(&self, caller: &Caller) -> Result<Vec<GrantId>> {
        let now = self.clock.now();
        self.store
            .waiting_credentials(&caller.principal.id, now)
            .await
    }
}
