//! The connector port: how a grant is created and removed in a target.
//!
//! Every operation is idempotent and keyed by the grant id: granting twice leaves one access,
//! revoking what is already gone succeeds. Connectors are called only by workers, from
//! persisted jobs, never from a request handler.

use async_trait::async_trait;
use secrecy::SecretString;
use serde::Serialize;

use crate::{
    Timestamp,
    catalog::PrincipalKind,
    id::{EntitlementId, GrantId, PrincipalId, TargetId},
};

/// What a connector is asked to grant or revoke.
#[derive(Debug, Clone, Serialize)]
pub struct GrantSpec {
    pub grant_id: GrantId,
    pub principal: PrincipalId,
    pub principal_kind: PrincipalKind,
    pub entitlement: EntitlementId,
    pub target: TargetId,
    pub starts_at: Timestamp,
    pub expires_at: Timestamp,
    /// The entitlement's connector parameters.
    pub params: serde_json::Value,
    /// What an earlier `grant` returned, for revoke and inspect.
    pub handle: Option<serde_json::Value>,
    /// The requester's public key (OpenSSH format), for connectors that certify one.
    pub public_key: Option<String>,
}

/// The outcome of a successful grant.
#[derive(Debug, Default)]
pub struct Provisioned {
    /// What to keep to undo the grant (names created). Never a secret.
    pub handle: Option<serde_json::Value>,
    /// A secret to hand to the requester once (a password, a certificate).
    pub credential: Option<SecretString>,
}

/// Whether a grant's access exists in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Present,
    Absent,
}

/// What a connector could establish after a revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationProof {
    /// The target was asked again and the access is gone (and live sessions ended, where the
    /// target has them); `checked` says what was looked at.
    Verified { checked: String },
    /// The target cannot be asked; `why` says so (a webhook, tokens verified offline).
    Unprovable { why: String },
}

/// Someone who holds a privilege in a target right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holding {
    pub holder: String,
    pub privilege: String,
    /// The grant id, if the name carries Hourglass's prefix.
    pub grant_id: Option<String>,
    /// The principal the holder is, where the target can tell (a directory member's sign-in
    /// name mapped back), and the entitlement the privilege is: a live grant of that
    /// entitlement to that principal explains the holding.
    pub principal: Option<String>,
    pub entitlement: Option<String>,
}

/// Something a connector created in its target, found by its name prefix: what the
/// reconciler compares with the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Managed {
    /// The name in the target (a role, a user, a membership, a certificate key id).
    pub name: String,
    /// The grant id the name carries.
    pub grant_id: String,
    /// The end the target itself enforces for it, where it keeps one (a PostgreSQL login
    /// role's `VALID UNTIL`). After a restore from a backup this tells an extension made after
    /// the backup from the end the older ledger knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<crate::Timestamp>,
}

/// Why a connector call failed. The message goes to the audit and the log, so connectors must
/// keep secrets out of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConnectorError {
    pub message: String,
}

impl ConnectorError {
    pub fn new(message: impl Into<String>) -> Self {
        ConnectorError {
            message: message.into(),
        }
    }
}

/// A target system's connector.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Creates the access; idempotent for the same grant id.
    async fn grant(&self, spec: &GrantSpec) -> Result<Provisioned, ConnectorError>;
    /// Removes the access and ends live sessions where the target has them; idempotent.
    async fn revoke(&self, spec: &GrantSpec) -> Result<(), ConnectorError>;
    /// Moves the end of the access to `spec.expires_at` (an approved extension) where the
    /// target holds an end of its own (a role's `VALID UNTIL`, a certificate's validity), and
    /// returns a new credential when one has to be issued again. Idempotent. The default does
    /// nothing: where the target holds no end, Hourglass's own expiry is what ends the access.
    async fn extend(
        &self,
        _spec: &GrantSpec,
    ) -> Result<Option<secrecy::SecretString>, ConnectorError> {
        Ok(None)
    }
    /// Whether the access exists now.
    async fn inspect(&self, spec: &GrantSpec) -> Result<Presence, ConnectorError>;

    /// After a revocation: proof that the access is gone. A grant becomes `revoked` only on
    /// `Ok`; an error (the access is still there, or the target could not be asked) keeps it
    /// `revoking`, and the revocation is tried again. The default asks [`Connector::inspect`].
    async fn prove_revoked(&self, spec: &GrantSpec) -> Result<RevocationProof, ConnectorError> {
        match self.inspect(spec).await? {
            Presence::Absent => Ok(RevocationProof::Verified {
                checked: "the access is absent from the target (inspect)".into(),
            }),
            Presence::Present => Err(ConnectorError::new(
                "the access is still present in the target after its revocation",
            )),
        }
    }
    /// Who holds privilege in the target now.
    async fn discover(&self) -> Result<Vec<Holding>, ConnectorError>;

    /// Takes away standing privilege an access review removed (a holding
    /// [`Connector::discover`] found). Idempotent: a holding already gone is success. The
    /// default refuses, naming why: the reviewer's decision stands and shows as failed work,
    /// to be done by hand.
    async fn remove_standing(&self, _holding: &Holding) -> Result<(), ConnectorError> {
        Err(ConnectorError::new(
            "this target's connector cannot remove standing privilege; remove it by hand",
        ))
    }

    /// Checks an entitlement's connector parameters at start-up; each problem names its key.
    fn check_params(&self, _params: &serde_json::Value) -> Vec<String> {
        Vec::new()
    }

    /// Checks a request's inputs against an entitlement's parameters before anything is stored
    /// (an SSH connector needs a valid public key). The message is shown to the requester.
    fn check_request(
        &self,
        _params: &serde_json::Value,
        _public_key: Option<&str>,
    ) -> Result<(), String> {
        Ok(())
    }

    /// Lists what this connector created in the target (names carrying its prefix), so the
    /// reconciler can remove what the ledger says should not exist. `None`: the connector cannot
    /// tell.
    async fn managed(&self) -> Result<Option<Vec<Managed>>, ConnectorError> {
        Ok(None)
    }

    /// Removes one leftover found by [`Connector::managed`]; idempotent.
    async fn remove(&self, managed: &Managed) -> Result<(), ConnectorError> {
        Err(ConnectorError::new(format!(
            "this connector cannot remove {}",
            managed.name
        )))
    }
}
