//! The `token` target: access that is an Hourglass-signed access token (an Ed25519 JWT with
//! the entitlement's `audience`), verified offline by the target service against
//! `/.well-known/jwks.json`. Nothing is created in a target: the engine activates the grant in
//! the commit that opens it and the server signs the token, whose `exp` is the grant's end.
//!
//! Revocation is honest about what it can do: the grant moves to revoked and no new token is
//! signed for it, but a token already handed out stays valid for its verifiers until its `exp`
//! (which is why its lifetime is bounded by the entitlement's maximum, minutes by default).

use async_trait::async_trait;
use hourglass_core::connector::{
    Connector, ConnectorError, GrantSpec, Holding, Presence, Provisioned, RevocationProof,
};

/// Parameters of a token entitlement.
pub fn audience(params: &serde_json::Value) -> Option<&str> {
    params.get("audience").and_then(serde_json::Value::as_str)
}

/// Space-separated scopes written into the token's `scope` claim, if any.
pub fn scope(params: &serde_json::Value) -> Option<&str> {
    params.get("scope").and_then(serde_json::Value::as_str)
}

/// The connector of a `token` target.
#[derive(Debug, Default)]
pub struct TokenConnector;

#[async_trait]
impl Connector for TokenConnector {
    async fn grant(&self, _spec: &GrantSpec) -> Result<Provisioned, ConnectorError> {
        // Reached only for grants opened outside an exchange (a request through the API):
        // such a grant holds no token, since tokens are signed only by `POST /v1/token`.
        Ok(Provisioned::default())
    }

    async fn revoke(&self, _spec: &GrantSpec) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn inspect(&self, _spec: &GrantSpec) -> Result<Presence, ConnectorError> {
        Err(ConnectorError::new(
            "a token target cannot be inspected: its tokens are verified offline and end at their exp",
        ))
    }

    async fn prove_revoked(&self, _spec: &GrantSpec) -> Result<RevocationProof, ConnectorError> {
        Ok(RevocationProof::Unprovable {
            why: "a token target's tokens are verified offline: no new token is signed for the grant, but one already handed out stays valid until its exp (at most the entitlement's maximum)".into(),
        })
    }

    async fn discover(&self) -> Result<Vec<Holding>, ConnectorError> {
        Ok(Vec::new())
    }

    fn check_params(&self, params: &serde_json::Value) -> Vec<String> {
        let mut problems = Vec::new();
        match audience(params) {
            Some(a) if !a.trim().is_empty() => {}
            _ => problems.push("audience: required (the service that verifies the token)".into()),
        }
        if params.get("scope").is_some_and(|s| !s.is_string()) {
            problems.push("scope: a string of space-separated scopes".into());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_is_required() {
        let c = TokenConnector;
        assert!(
            c.check_params(&serde_json::json!({"audience": "deploy-api"}))
                .is_empty()
        );
        assert_eq!(c.check_params(&serde_json::json!({})).len(), 1);
        assert_eq!(
            c.check_params(&serde_json::json!({"audience": "a", "scope": 3}))
                .len(),
            1
        );
    }
}
