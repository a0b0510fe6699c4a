//! `POST /v1/token`: RFC 8693 token exchange, and `GET /.well-known/jwks.json`.
//!
//! The form is parsed and both tokens verified here (issuer, JWKS, audience, algorithm,
//! expiry on the engine's clock); every refusal is audited with its reason. The engine then
//! decides with `Exchange` and opens the grant. For a `token` target the answer is an
//! Ed25519-signed JWT whose `exp` is the grant's end; for any other target the handler waits
//! (up to `[tokens] exchange_wait`) for the workers to provision it and hands over the
//! connector's credential once.

use std::collections::BTreeMap;

use axum::{
    Json,
    body::Bytes,
    extract::{ConnectInfo, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use hourglass_api::{TokenError, TokenResponse};
use hourglass_core::{
    Error,
    engine::{Caller, Charge, DelegationClaims, ExchangeRequest, PresentedToken},
    grant::GrantState,
    id::PrincipalId,
    policy::WorkloadToken,
};
use hourglass_tokens::Purpose;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::Shared;
use crate::metrics::RequestOutcome;

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
const CREDENTIAL_TYPE: &str = "urn:hourglass:token-type:credential";
/// For access that needs no secret (a role membership, a demo script's entry): the answer
/// names the grant, which is the whole of what was issued.
const GRANT_TYPE_ISSUED: &str = "urn:hourglass:token-type:grant";

fn oauth_error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    let mut r = (
        status,
        Json(TokenError {
            error: error.to_owned(),
            error_description: description.into(),
        }),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Maps an engine error to an RFC 6749 error answer.
fn from_engine(e: &Error) -> Response {
    match e {
        Error::Invalid { field, message, .. } if *field == "resource" => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_target", message.clone())
        }
        Error::Invalid { message, .. } => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_request", message.clone())
        }
        Error::Forbidden { code, message } if code.as_str().starts_with("token.") => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", message.clone())
        }
        Error::Forbidden { message, .. } | Error::NotFound { message, .. } => {
            oauth_error(StatusCode::FORBIDDEN, "access_denied", message.clone())
        }
        Error::Limited { message, .. } => {
            oauth_error(StatusCode::TOO_MANY_REQUESTS, "slow_down", message.clone())
        }
        Error::Conflict { message, .. } => {
            oauth_error(StatusCode::CONFLICT, "invalid_request", message.clone())
        }
        Error::Upstream { message, .. } => oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            message.clone(),
        ),
        Error::StoreConflict | Error::Unavailable(_) => oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "try again",
        ),
        Error::Internal(m) => {
            tracing::error!(error = %m, "token exchange failed");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal error",
            )
        }
    }
}

#[utoipa::path(get, path = "/.well-known/jwks.json", responses((status = 200, description = "The Ed25519 keys that sign Hourglass access tokens, for offline verification (a replaced key stays listed for the overlap)")))]
pub(super) async fn jwks(State(app): State<Shared>) -> Response {
    let now = app.engine.clock().now().unix_millis() / 1000;
    let doc = match app.workload.signer.as_ref() {
        None => json!({"keys": []}),
        Some(s) => {
            // Retired keys leave the JWKS on time even when nothing is being signed.
            if let Err(e) = s.maintain_if_due(now) {
                tracing::error!(error = %e, "signing key maintenance failed");
            }
            s.jwks()
        }
    };
    let mut r = Json(doc).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    r
}

/// Verifies one presented token; a refusal is audited and answered as `invalid_grant`.
async fn verify(
    app: &Shared,
    token: &str,
    which: &str,
    source_ip: Option<&str>,
) -> Result<PresentedToken, Response> {
    let now = app.engine.clock().now();
    let v = match app
        .workload
        .issuers
        .verify(token, now.unix_millis() / 1000, Purpose::Exchange)
        .await
    {
        Ok(v) => v,
        Err(r) => {
            tracing::warn!(code = r.code, reason = %r.reason, which, "identity token refused");
            let iss = peek_iss(token);
            let reason = format!("{which}: {}", r.reason);
            match app
                .engine
                .record_token_refusal(r.code, &reason, iss.as_deref(), source_ip)
                .await
            {
                Ok(Charge::Over) => {
                    app.metrics.request(RequestOutcome::ExchangeThrottled);
                    return Err(oauth_error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "slow_down",
                        "too many refused tokens from this address; wait a minute",
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(from_engine(&e)),
            }
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                format!("{which}: {}", r.reason),
            ));
        }
    };
    let unknown = |m: String| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", m);
    let pid = PrincipalId::new(v.principal.clone())
        .map_err(|_| unknown(format!("{which}: mapped to an invalid principal name")))?;
    let principal = match app.engine.active_principal(&pid).await {
        Ok(p) => p,
        Err(e) => {
            if let Err(audit) = app
                .engine
                .record_token_refusal(
                    "token.principal_inactive",
                    &format!("{which}: {e}"),
                    Some(&v.issuer),
                    source_ip,
                )
                .await
            {
                return Err(from_engine(&audit));
            }
            return Err(unknown(format!("{which}: {e}")));
        }
    };
    if let Err(e) = app.engine.seen(&principal.id).await {
        return Err(from_engine(&e));
    }
    Ok(PresentedToken {
        facts: WorkloadToken::from_claims(&v.issuer_name, &v.subject, &v.claims),
        principal,
        issuer_url: v.issuer,
        jti: v.jti,
        expires_at: hourglass_core::Timestamp::from_unix_millis(
            v.expires_at_secs.saturating_mul(1000),
        ),
        delegation: DelegationClaims {
            carries_act: v.act.is_some(),
            may_act: v.may_act.map(|m| (m.sub, m.iss)),
            for_delegation: v.for_delegation,
        },
    })
}

/// The `iss` of a token that failed verification, for the audit (it is not trusted).
pub(super) fn peek_iss(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let iss = v.get("iss")?.as_str()?;
    Some(iss.chars().take(200).collect())
}

#[utoipa::path(post, path = "/v1/token", request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "RFC 8693: grant_type=urn:ietf:params:oauth:grant-type:token-exchange, subject_token, subject_token_type (jwt or id_token), resource (the entitlement; or scope), optional actor_token/actor_token_type (an agent acting for the subject), and the extensions duration, ticket, reason"), responses((status = 200, description = "A signed access token, or the connector's credential; the grant behind it is audited and revocable", body = TokenResponse), (status = 400, description = "Bad form or a refused token (issuer, key, signature, audience, algorithm, expiry, replay): RFC 6749 error, audited", body = TokenError), (status = 403, description = "Policy refused the exchange", body = TokenError), (status = 429, description = "A quota is used up", body = TokenError)))]
pub(super) async fn exchange(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    body: Bytes,
) -> Response {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let bad = |m: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", m);
    if field("grant_type") != Some(GRANT_TYPE) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant_type must be {GRANT_TYPE}"),
        );
    }
    let Some(subject_token) = field("subject_token") else {
        return bad("subject_token is required");
    };
    let token_type_ok = |t: Option<&str>| matches!(t, Some(JWT_TYPE | ID_TOKEN_TYPE));
    if !token_type_ok(field("subject_token_type")) {
        return bad("subject_token_type must be urn:ietf:params:oauth:token-type:jwt or :id_token");
    }
    let actor_token = field("actor_token");
    if actor_token.is_some() != field("actor_token_type").is_some()
        || (actor_token.is_some() && !token_type_ok(field("actor_token_type")))
    {
        return bad("actor_token and actor_token_type (jwt or id_token) go together");
    }
    if let Some(t) = field("requested_token_type")
        && t != JWT_TYPE
        && t != CREDENTIAL_TYPE
    {
        return bad("requested_token_type: jwt or urn:hourglass:token-type:credential");
    }
    // Trimmed once, here: every check below reads the name the engine will use.
    let Some(entitlement) = field("resource")
        .or_else(|| field("scope"))
        .map(str::trim)
        .filter(|e| !e.is_empty())
    else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "resource (or scope) must name the entitlement",
        );
    };
    // A requested token type is honoured or refused, never silently replaced.
    if let Some(wanted) = field("requested_token_type") {
        let signs = hourglass_core::id::EntitlementId::new(entitlement)
            .ok()
            .and_then(|e| app.engine.catalog().entitlement(&e).cloned())
            .and_then(|e| app.engine.catalog().target(&e.target).cloned())
            .map(|t| t.connector == hourglass_core::engine::TOKEN_CONNECTOR);
        if let Some(signs) = signs
            && signs != (wanted == JWT_TYPE)
        {
            return bad(if signs {
                "this entitlement issues a signed token (urn:ietf:params:oauth:token-type:jwt)"
            } else {
                "this entitlement issues its connector's credential (urn:hourglass:token-type:credential)"
            });
        }
    }
    let source_ip = peer.ip().to_string();
    let subject = match verify(&app, subject_token, "subject_token", Some(&source_ip)).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let actor = match actor_token {
        None => None,
        Some(t) => match verify(&app, t, "actor_token", Some(&source_ip)).await {
            Ok(a) => Some(a),
            Err(r) => return r,
        },
    };
    if actor
        .as_ref()
        .is_some_and(|a| a.principal.id == subject.principal.id)
    {
        return bad("actor_token names the subject itself; delegation is to another identity");
    }
    let holder = subject.principal.clone();
    let out = match app
        .engine
        .exchange(ExchangeRequest {
            subject,
            actor,
            entitlement: entitlement.to_owned(),
            duration: field("duration").map(str::to_owned),
            ticket: field("ticket").map(str::to_owned),
            reason: field("reason").map(str::to_owned),
            source_ip: Some(source_ip.clone()),
        })
        .await
    {
        Ok(o) => o,
        Err(e) => {
            // Refused tokens are audited (replays, delegation without consent); policy refusals
            // are audited by the engine.
            if e.code().as_str().starts_with("token.")
                && let Err(audit) = app
                    .engine
                    .record_token_refusal(e.code().as_str(), &e.to_string(), None, Some(&source_ip))
                    .await
            {
                return from_engine(&audit);
            }
            app.metrics.request(RequestOutcome::ExchangeRefused);
            return from_engine(&e);
        }
    };
    app.metrics.request(RequestOutcome::Exchanged);
    let now = app.engine.clock().now();
    let grant = &out.grant;
    let expires_in = u64::try_from(grant.expires_at.millis_since(now) / 1000).unwrap_or(0);
    let (access_token, issued_token_type, token_type) = if out.signed_token {
        let Some(signer) = app.workload.signer.as_ref() else {
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "no signing key",
            );
        };
        let claims = access_token_claims(
            &app,
            signer,
            grant,
            &out.request.actors,
            holder.kind.as_str(),
            grant.id.as_str(),
            now,
        );
        match signer.sign(&claims, now.unix_millis() / 1000) {
            Ok((t, _kid)) => (t, JWT_TYPE, "Bearer"),
            Err(e) => {
                tracing::error!(error = %e, "signing failed");
                return oauth_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "signing failed",
                );
            }
        }
    } else {
        match wait_for_credential(&app, &holder, grant).await {
            Ok(Some(secret)) => (secret, CREDENTIAL_TYPE, "N_A"),
            Ok(None) => (grant.id.to_string(), GRANT_TYPE_ISSUED, "N_A"),
            Err(r) => return r,
        }
    };
    let mut r = Json(TokenResponse {
        access_token,
        issued_token_type: issued_token_type.to_owned(),
        token_type: token_type.to_owned(),
        expires_in,
        scope: grant.entitlement.to_string(),
        grant_id: grant.id.to_string(),
    })
    .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Waits for the workers to provision a connector-backed grant and takes its credential
/// (`None` when the connector issues none). If it is not provisioned in time the grant is
/// revoked (its holder never saw a credential).
async fn wait_for_credential(
    app: &Shared,
    holder: &hourglass_core::catalog::Principal,
    grant: &hourglass_core::grant::Grant,
) -> Result<Option<String>, Response> {
    let wait =
        std::time::Duration::from_millis(u64::try_from(app.workload.exchange_wait_ms).unwrap_or(0));
    // The holder reads its own grant through the engine, as any client would.
    let caller = Caller {
        principal: holder.clone(),
        mfa: false,
        source_ip: None,
        on_behalf_of: None,
    };
    let poll = async {
        loop {
            let g = app
                .engine
                .grant(&caller, grant.id.as_str())
                .await
                .map_err(|e| from_engine(&e))?;
            match g.state {
                GrantState::Active => {
                    return match app.engine.take_credential(&caller, grant.id.as_str()).await {
                        Ok((secret, _)) => Ok(Some(secret.expose_secret().to_owned())),
                        Err(hourglass_core::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(from_engine(&e)),
                    };
                }
                // Real time, not the engine's clock: this bounds how long an HTTP call waits.
                GrantState::Provisioning => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                _ => {
                    return Err(oauth_error(
                        StatusCode::BAD_GATEWAY,
                        "server_error",
                        format!("grant {} could not be provisioned", grant.id),
                    ));
                }
            }
        }
    };
    match tokio::time::timeout(wait, poll).await {
        Ok(done) => done,
        Err(_) => {
            let _ = app
                .engine
                .revoke(
                    &caller,
                    grant.id.as_str(),
                    Some("token exchange: not provisioned in time".into()),
                )
                .await;
            Err(oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                format!(
                    "the target did not provision grant {} in time; it was revoked",
                    grant.id
                ),
            ))
        }
    }
}

/// The claims of an Hourglass access token for `grant` (a `token` target's): `sub` the holder,
/// `aud` the entitlement's audience, valid until the grant ends, `act` naming the agents that
/// asked for the holder (RFC 8693 §4.1: the current actor outermost, earlier ones inside).
pub(super) fn access_token_claims(
    app: &crate::App,
    signer: &hourglass_tokens::Signer,
    grant: &hourglass_core::grant::Grant,
    actors: &[hourglass_core::id::PrincipalId],
    holder_kind: &str,
    jti: &str,
    now: hourglass_core::Timestamp,
) -> Value {
    let params = app
        .engine
        .catalog()
        .entitlement(&grant.entitlement)
        .map(|e| e.params.clone())
        .unwrap_or(Value::Null);
    let mut claims = json!({
        "iss": signer.issuer(),
        "sub": grant.principal.as_str(),
        "aud": hourglass_connectors::token::audience(&params).unwrap_or(grant.entitlement.as_str()),
        "iat": now.unix_millis() / 1000,
        "nbf": now.unix_millis() / 1000,
        "exp": grant.expires_at.unix_millis() / 1000,
        "jti": jti,
        "grant_id": grant.id.as_str(),
        "entitlement": grant.entitlement.as_str(),
        "principal_kind": holder_kind,
    });
    if let Some(scope) = hourglass_connectors::token::scope(&params) {
        claims["scope"] = json!(scope);
    }
    let mut act: Option<Value> = None;
    for a in actors.iter().rev() {
        let mut this = json!({ "sub": a.as_str() });
        if let Some(inner) = act.take() {
            this["act"] = inner;
        }
        act = Some(this);
    }
    if let Some(a) = act {
        claims["act"] = a;
    }
    claims
}
