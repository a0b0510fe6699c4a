//! Wire types of machine identities: the inventory, API keys, the hygiene report, and the
//! RFC 8693 token exchange.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/identities`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIdentity {
    /// 1-128 of `A-Z a-z 0-9 . _ - @`.
    #[schema(
        pattern = r"^[A-Za-z0-9._@-]{1,128}$",
        min_length = 1,
        max_length = 128
    )]
    pub name: String,
    /// `human`, `workload` or `agent`.
    #[schema(value_type = crate::PrincipalKind)]
    pub kind: String,
    /// The person or group who answers for a workload or agent (required for them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// `POST /v1/identities/{name}/suspend|resume|offboard`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityStatusBody {
    /// Why (required to offboard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One API key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    pub identity: String,
    /// The public part of the key (`hgk_…`), to tell keys apart; absent for a token declared
    /// in configuration.
    pub prefix: Option<String>,
    /// `config` or `api`.
    pub origin: String,
    /// `active`, `expired` or `revoked`.
    pub state: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    pub replaced_by: Option<String>,
    /// Whole days since it was created.
    pub age_days: u64,
}

/// One identity of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IdentityView {
    pub name: String,
    pub kind: crate::PrincipalKind,
    pub owner: Option<String>,
    pub groups: Vec<String>,
    pub status: crate::PrincipalStatus,
    pub status_reason: Option<String>,
    /// `config` (declared in `[[identities]]`), `api`, `sign_in` (created at a first single
    /// sign-on), or `directory` (provisioned through SCIM).
    pub origin: String,
    pub created_at: String,
    pub last_seen_at: Option<String>,
    pub keys: Vec<KeyView>,
    /// Grants it holds now (provisioning, active or being revoked).
    pub grants: Vec<String>,
    /// Set when its owner is suspended or offboarded: someone must take it over.
    pub owner_status: Option<String>,
}

/// `POST /v1/identities/{name}/offboard`: what was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OffboardView {
    pub identity: IdentityView,
    /// False when it was already offboarded and nothing changed.
    pub changed: bool,
    pub grants_revoked: Vec<String>,
    pub keys_revoked: Vec<String>,
    pub requests_cancelled: Vec<String>,
}

/// `POST /v1/keys`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub identity: String,
    /// `30d`, `12h`; at most the configured maximum (90 days by default), which is also the
    /// default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = r"^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$",
        min_length = 2,
        max_length = 32
    )]
    pub expires: Option<String>,
}

/// `POST /v1/keys/{id}/rotate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// A key just issued. `secret` is shown this once and never again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IssuedKeyView {
    pub key: KeyView,
    pub secret: String,
    /// On a rotation: the replaced key, valid until the end of the overlap.
    pub previous: Option<KeyView>,
}

/// One finding of `GET /v1/reports/identities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IdentityFinding {
    pub identity: String,
    /// `owner_missing`, `owner_offboarded`, `owner_suspended`, `owner_unknown`,
    /// `key_needs_rotation`, `unused`, `never_used`, `config_token`.
    pub finding: String,
    pub detail: String,
}

/// `GET /v1/reports/identities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IdentityReport {
    pub findings: Vec<IdentityFinding>,
    /// The rules the report applied.
    pub rotate_after_days: u64,
    pub unused_days: u64,
    /// What could not be judged, and why (e.g. entitlement use that no connector reports).
    pub notes: Vec<String>,
}

/// `POST /v1/token` (RFC 8693 §2.2.1), extended with the grant it opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// A signed Hourglass access token (JWT), or the connector's credential.
    pub access_token: String,
    /// `urn:ietf:params:oauth:token-type:jwt`, or `urn:hourglass:token-type:credential`.
    pub issued_token_type: String,
    /// `Bearer` for a JWT, `N_A` for a connector credential (RFC 8693 §2.2.1).
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The entitlement granted.
    pub scope: String,
    /// The grant behind it: audited, listed and revocable like any other.
    pub grant_id: String,
}

/// RFC 6749 §5.2 error answer of `POST /v1/token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenError {
    /// `invalid_request`, `invalid_grant`, `invalid_target`, `unauthorized_client`, …
    pub error: String,
    pub error_description: String,
}
