//! The `webhook` connector: grant, revoke, inspect and discover as signed HTTP calls, for SaaS
//! and anything Hourglass does not speak natively. The exact format is in
//! `docs/connectors.md`; in short:
//!
//! - `POST <url>` with a JSON body `{"operation": "grant"|"extend"|"revoke"|"inspect"|"discover", …the
//!   grant's fields…}`;
//! - `Hourglass-Timestamp: <unix seconds>` and
//!   `Hourglass-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`;
//! - `Idempotency-Key: <grant id>`: the same operation on the same grant may arrive more than
//!   once (the job system retries until it gets a 2xx), and must have the same effect.
//!
//! [`verify`] is the reference verification a receiver performs.

use std::{path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use aws_lc_rs::hmac;
use hourglass_core::{
    Clock,
    connector::{
        Connector, ConnectorError, GrantSpec, Holding, Presence, Provisioned, RevocationProof,
    },
};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};

use crate::outbound;

pub const TIMESTAMP_HEADER: &str = "hourglass-timestamp";
pub const SIGNATURE_HEADER: &str = "hourglass-signature";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// How far a receiver should accept a timestamp from its own clock (seconds).
pub const DEFAULT_WINDOW_SECS: i64 = 300;
const MIN_SECRET_BYTES: usize = 32;

/// Configuration of a `webhook` target.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where calls go (`https://bridge.internal/hourglass`).
    pub url: String,
    /// A file holding the shared signing secret (at least 32 bytes).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Or an environment variable holding it.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Seconds before a call is abandoned (and retried later), default 10.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Allow loopback and private destinations (refused by default).
    #[serde(default)]
    pub allow_private: bool,
    /// Whether the receiver answers `discover` calls.
    #[serde(default)]
    pub discover: bool,
    /// Whether the receiver answers `inspect` truthfully enough to prove a revocation: after
    /// each revoke Hourglass asks it, and a grant is `revoked` only when it answers absent.
    /// Off (the default): the event says the revocation is unprovable.
    #[serde(default)]
    pub verify_revocation: bool,
}

fn default_timeout() -> u64 {
    10
}

/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1={}", hex::encode(ctx.sign().as_ref()))
}

/// Why a receiver refuses a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the timestamp header is missing or not a number")]
    BadTimestamp,
    #[error("the timestamp is {0} seconds away from now, outside the replay window")]
    Stale(i64),
    #[error("no v1 signature matches")]
    BadSignature,
}

/// The reference verification: the timestamp is within `window_secs` of `now_secs`, and one of
/// the comma-separated `v1=` signatures (several during a secret rotation) matches, compared
/// in constant time.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
    window_secs: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp
        .and_then(|t| t.trim().parse().ok())
        .ok_or(VerifyError::BadTimestamp)?;
    let skew = now_secs.saturating_sub(ts);
    if skew.abs() > window_secs {
        return Err(VerifyError::Stale(skew));
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut msg = ts.to_string().into_bytes();
    msg.push(b'.');
    msg.extend_from_slice(body);
    let matches = signature
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.trim().strip_prefix("v1="))
        .filter_map(|h| hex::decode(h).ok())
        .any(|tag| hmac::verify(&key, &msg, &tag).is_ok());
    if matches {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// Reads a secret from a file or an environment variable.
pub fn load_secret(file: Option<&PathBuf>, env: Option<&str>) -> Result<SecretSlice<u8>, String> {
    let raw = match (file, env) {
        (Some(p), None) => {
            std::fs::read_to_string(p).map_err(|e| format!("secret_file: {}: {e}", p.display()))?
        }
        (None, Some(v)) => std::env::var(v).map_err(|_| format!("secret_env: {v} is not set"))?,
        _ => return Err("give exactly one of secret_file and secret_env".into()),
    };
    let secret = raw.trim_end_matches(['\n', '\r']).as_bytes().to_vec();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "the signing secret must be at least {MIN_SECRET_BYTES} bytes"
        ));
    }
    Ok(SecretSlice::from(secret))
}

#[derive(Serialize)]
struct Call<'a> {
    operation: &'a str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    grant: Option<&'a GrantSpec>,
}

#[derive(Deserialize, Default)]
struct GrantAnswer {
    #[serde(default)]
    handle: Option<serde_json::Value>,
    #[serde(default)]
    credential: Option<String>,
}

#[derive(Deserialize)]
struct InspectAnswer {
    present: bool,
}

#[derive(Deserialize)]
struct DiscoverAnswer {
    holdings: Vec<DiscoveredHolding>,
}

#[derive(Deserialize)]
struct DiscoveredHolding {
    holder: String,
    privilege: String,
    #[serde(default)]
    grant_id: Option<String>,
}

/// The webhook connector.
pub struct WebhookConnector {
    url: reqwest::Url,
    secret: SecretSlice<u8>,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    discover: bool,
    verify_revocation: bool,
}

impl std::fmt::Debug for WebhookConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The host only: a webhook URL's path or query may hold a token.
        f.debug_struct("WebhookConnector")
            .field("host", &self.url.host_str())
            .finish_non_exhaustive()
    }
}

impl WebhookConnector {
    pub fn new(cfg: &WebhookConfig, clock: Arc<dyn Clock>) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let url = outbound::check_url(&cfg.url, cfg.allow_private)
            .map_err(|e| problems.push(format!("url: {e}")))
            .ok();
        let secret = load_secret(cfg.secret_file.as_ref(), cfg.secret_env.as_deref())
            .map_err(|e| problems.push(e))
            .ok();
        let client = outbound::client(
            cfg.allow_private,
            Duration::from_secs(cfg.timeout_secs.max(1)),
        )
        .map_err(|e| problems.push(e))
        .ok();
        match (url, secret, client) {
            (Some(url), Some(secret), Some(client)) if problems.is_empty() => {
                Ok(WebhookConnector {
                    url,
                    secret,
                    client,
                    clock,
                    discover: cfg.discover,
                    verify_revocation: cfg.verify_revocation,
                })
            }
            _ => Err(problems),
        }
    }

    /// Sends one signed call; returns the status and the body of a 2xx answer.
    async fn call(
        &self,
        operation: &str,
        spec: Option<&GrantSpec>,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), ConnectorError> {
        let body = serde_json::to_vec(&Call {
            operation,
            grant: spec,
        })
        .map_err(|e| ConnectorError::new(format!("webhook: encoding: {e}")))?;
        let ts = self.clock.now().unix_millis().div_euclid(1000);
        let mut req = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(
                SIGNATURE_HEADER,
                sign(self.secret.expose_secret(), ts, &body),
            );
        if let Some(s) = spec {
            req = req.header(IDEMPOTENCY_HEADER, s.grant_id.as_str());
        }
        let resp = req.body(body).send().await.map_err(|e| {
            ConnectorError::new(format!("webhook {operation}: {}", error_chain(&e)))
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ConnectorError::new(format!("webhook {operation}: reading: {e}")))?;
        Ok((status, bytes.to_vec()))
    }

    fn refused(operation: &str, status: reqwest::StatusCode) -> ConnectorError {
        // The body is not echoed: a receiver's error page may hold anything.
        ConnectorError::new(format!(
            "webhook {operation}: the receiver answered {status}"
        ))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        text.push_str(": ");
        text.push_str(&s.to_string());
        src = s.source();
    }
    text
}

#[async_trait]
impl Connector for WebhookConnector {
    async fn grant(&self, spec: &GrantSpec) -> Result<Provisioned, ConnectorError> {
        let (status, body) = self.call("grant", Some(spec)).await?;
        if !status.is_success() {
            return Err(Self::refused("grant", status));
        }
        let answer: GrantAnswer = if body.iter().all(u8::is_ascii_whitespace) {
            GrantAnswer::default()
        } else {
            serde_json::from_slice(&body).map_err(|_| {
                ConnectorError::new(
                    "webhook grant: the answer is not {\"handle\": …, \"credential\": \"…\"} JSON",
                )
            })?
        };
        Ok(Provisioned {
            handle: answer.handle,
            credential: answer.credential.map(SecretString::from),
        })
    }

    /// The receiver moves the end to `grant.expires_at` (idempotent by that value) and may
    /// answer `{"credential": "…"}` with a credential issued again.
    async fn extend(&self, spec: &GrantSpec) -> Result<Option<SecretString>, ConnectorError> {
        let (status, body) = self.call("extend", Some(spec)).await?;
        if !status.is_success() {
            return Err(Self::refused("extend", status));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let answer: GrantAnswer = serde_json::from_slice(&body).map_err(|_| {
            ConnectorError::new("webhook extend: the answer is not {\"credential\": \"…\"} JSON")
        })?;
        Ok(answer.credential.map(SecretString::from))
    }

    async fn revoke(&self, spec: &GrantSpec) -> Result<(), ConnectorError> {
        let (status, _) = self.call("revoke", Some(spec)).await?;
        if status.is_success()
            || status == reqwest::StatusCode::NOT_FOUND
            || status == reqwest::StatusCode::GONE
        {
            Ok(())
        } else {
            Err(Self::refused("revoke", status))
        }
    }

    async fn inspect(&self, spec: &GrantSpec) -> Result<Presence, ConnectorError> {
        let (status, body) = self.call("inspect", Some(spec)).await?;
        if !status.is_success() {
            return Err(Self::refused("inspect", status));
        }
        let a: InspectAnswer = serde_json::from_slice(&body).map_err(|_| {
            ConnectorError::new("webhook inspect: the answer is not {\"present\": true|false}")
        })?;
        Ok(if a.present {
            Presence::Present
        } else {
            Presence::Absent
        })
    }

    async fn prove_revoked(&self, spec: &GrantSpec) -> Result<RevocationProof, ConnectorError> {
        if !self.verify_revocation {
            return Ok(RevocationProof::Unprovable {
                why: "a webhook target only says it took the revocation (set verify_revocation to have it inspected)".into(),
            });
        }
        match self.inspect(spec).await? {
            Presence::Absent => Ok(RevocationProof::Verified {
                checked: "the receiver's inspect answers absent".into(),
            }),
            Presence::Present => Err(ConnectorError::new(
                "the receiver's inspect still answers present after the revocation",
            )),
        }
    }

    async fn discover(&self) -> Result<Vec<Holding>, ConnectorError> {
        if !self.discover {
            return Ok(Vec::new());
        }
        let (status, body) = self.call("discover", None).await?;
        if !status.is_success() {
            return Err(Self::refused("discover", status));
        }
        let a: DiscoverAnswer = serde_json::from_slice(&body).map_err(|_| {
            ConnectorError::new("webhook discover: the answer is not {\"holdings\": [...]}")
        })?;
        Ok(a.holdings
            .into_iter()
            .map(|h| Holding {
                principal: None,
                entitlement: None,
                holder: h.holder,
                privilege: h.privilege,
                grant_id: h.grant_id,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
