//! Configuration of machine identities: API key lifetimes (`[keys]`), the OIDC issuers whose
//! workload tokens Hourglass trusts (`[[issuers]]`), and the keys that sign Hourglass access
//! tokens (`[tokens]`).

use std::path::PathBuf;

use hourglass_core::GrantDuration;
use serde::Deserialize;

/// API key lifetimes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySection {
    /// The longest expiry a key may be given; every key has one.
    #[serde(default = "default_key_max")]
    pub max_lifetime: GrantDuration,
    /// How long a rotated-out key keeps working beside its replacement.
    #[serde(default = "default_key_overlap")]
    pub rotation_overlap: GrantDuration,
    /// Keys older than this are flagged by `hourglass report identities`.
    #[serde(default = "default_key_rotate_after")]
    pub rotate_after: GrantDuration,
}

impl Default for KeySection {
    fn default() -> Self {
        KeySection {
            max_lifetime: default_key_max(),
            rotation_overlap: default_key_overlap(),
            rotate_after: default_key_rotate_after(),
        }
    }
}

fn default_key_max() -> GrantDuration {
    GrantDuration::from_secs(90 * 86_400)
}
fn default_key_overlap() -> GrantDuration {
    GrantDuration::from_secs(86_400)
}
fn default_key_rotate_after() -> GrantDuration {
    GrantDuration::from_secs(30 * 86_400)
}

/// An OIDC issuer whose identity tokens workloads may exchange (`POST /v1/token`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// A short name for logs and the audit (`github`).
    pub name: String,
    /// The exact `iss` of its tokens (`https://token.actions.githubusercontent.com`).
    pub issuer: String,
    /// Where its signing keys are published (fetched, cached, refreshed on an unknown `kid`)…
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// …or a local JWKS file (Kubernetes clusters without a public discovery endpoint).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Accepted `aud` values for token exchange; a token must carry one of them.
    pub audience: Vec<String>,
    /// Audiences of tokens a person obtains to hand to an agent: exchanged only together with
    /// the agent's own token (delegation with the person's consent). Distinct from `audience`.
    #[serde(default)]
    pub delegation_audience: Vec<String>,
    /// Opt-in: audiences of people's tokens that authenticate API calls as
    /// `Authorization: Bearer`. Empty (the default): this issuer's tokens are never API bearers.
    /// Distinct from `audience` and `delegation_audience`, so that a token given for exchange or
    /// delegation is never a session. Workloads and agents never use this path.
    #[serde(default)]
    pub api_audience: Vec<String>,
    /// Opt-in: audiences of tokens presented at the MCP endpoint (`/mcp`), by convention its
    /// URL (`https://hourglass.example.com/mcp`, RFC 8707): an agent's own token, or a
    /// person's whose `act` claim names the agent acting for them. Listed in the endpoint's
    /// protected-resource metadata (RFC 9728). Distinct from the other audiences.
    #[serde(default)]
    pub mcp_audience: Vec<String>,
    /// Accepted signature algorithms. Asymmetric only: `none` and `HS*` are refused.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Tolerance for clock differences on `exp`, `nbf` and `iat`.
    #[serde(default = "default_skew")]
    pub clock_skew: GrantDuration,
    /// Which principal a token stands for: the first rule whose claims all match.
    #[serde(default, rename = "map")]
    pub rules: Vec<MappingConfig>,
    /// Demo only: the private key that `hourglass dev mint-token` signs with.
    #[serde(default)]
    pub dev_signing_key: Option<PathBuf>,
}

/// Claims (exact string values) that map a token to a principal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    pub principal: String,
    pub claims: std::collections::BTreeMap<String, String>,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into(), "EdDSA".into()]
}
fn default_skew() -> GrantDuration {
    GrantDuration::from_secs(60)
}

/// The keys that sign Hourglass access tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSection {
    /// The `iss` of issued tokens; defaults to the server's URL on its listen address.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Where the Ed25519 signing keys live (created with mode 0600); default `signing-keys`
    /// beside the SQLite database.
    #[serde(default)]
    pub key_dir: Option<PathBuf>,
    /// A new signing key is made when the newest is this old.
    #[serde(default = "default_rotate")]
    pub rotate_every: GrantDuration,
    /// How long a replaced key stays in the JWKS: at least the longest token lifetime.
    #[serde(default = "default_retire_after")]
    pub retire_after: GrantDuration,
    /// How long `POST /v1/token` waits for a connector to provision a credential.
    #[serde(default = "default_exchange_wait")]
    pub exchange_wait: GrantDuration,
}

impl Default for TokenSection {
    fn default() -> Self {
        TokenSection {
            issuer: None,
            key_dir: None,
            rotate_every: default_rotate(),
            retire_after: default_retire_after(),
            exchange_wait: default_exchange_wait(),
        }
    }
}

fn default_rotate() -> GrantDuration {
    GrantDuration::from_secs(7 * 86_400)
}
fn default_retire_after() -> GrantDuration {
    GrantDuration::from_secs(86_400)
}
fn default_exchange_wait() -> GrantDuration {
    GrantDuration::from_secs(15)
}
