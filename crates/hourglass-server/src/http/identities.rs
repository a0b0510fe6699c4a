//! The identity inventory, identity lifecycle (create, suspend, resume, offboard), API keys
//! and the hygiene report. Who may do what is the engine's rule.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use hourglass_api::{
    CreateIdentity, CreateKey, IdentityFinding, IdentityReport, IdentityStatusBody, IdentityView,
    IssuedKeyView, KeyView, List, OffboardView, Problem, RotateKey,
};
use hourglass_core::engine::NewIdentity;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::{ApiResult, Authed, Body, Shared, query};
use crate::views;

#[utoipa::path(get, path = "/v1/identities", responses((status = 200, description = "The inventory: every identity for an administrator of everything, else the caller and what they own; with keys, live grants and the owner's standing", body = List<IdentityView>), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn list_identities(
    State(app): State<Shared>,
    Authed(caller): Authed,
) -> ApiResult<Json<List<IdentityView>>> {
    let now = app.engine.clock().now();
    let items = app.engine.inventory(&caller).await?;
    Ok(Json(List {
        items: items.iter().map(|e| views::inventory(e, now)).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/identities", request_body = CreateIdentity, responses((status = 201, description = "Created", body = IdentityView), (status = 400, description = "Bad input (a workload or agent without an owner, an unknown owner), naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Takes Administer on every entitlement", body = Problem, content_type = "application/problem+json"), (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn create_identity(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Body(body): Body<CreateIdentity>,
) -> ApiResult<Response> {
    let i = app
        .engine
        .create_identity(
            &caller,
            NewIdentity {
                name: body.name,
                kind: body.kind,
                owner: body.owner,
                groups: body.groups,
            },
        )
        .await?;
    let view = views::identity(&i, &[], &[], None, app.engine.clock().now());
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn set_active(
    app: &Shared,
    caller: &hourglass_core::engine::Caller,
    name: &str,
    active: bool,
    reason: Option<String>,
) -> ApiResult<Response> {
    let i = app
        .engine
        .set_identity_active(caller, name, active, reason)
        .await?;
    let view = views::identity(&i, &[], &[], None, app.engine.clock().now());
    Ok(Json(view).into_response())
}

#[utoipa::path(post, path = "/v1/identities/{name}/suspend", params(("name" = String, Path, description = "identity name")), request_body = IdentityStatusBody, responses((status = 200, description = "Suspended: it cannot authenticate; its grants run to their end (offboard to end them now)", body = IdentityView), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found, or not the caller's to manage", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Offboarded", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn suspend(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    Body(body): Body<IdentityStatusBody>,
) -> ApiResult<Response> {
    set_active(&app, &caller, &name, false, body.reason).await
}

#[utoipa::path(post, path = "/v1/identities/{name}/resume", params(("name" = String, Path, description = "identity name")), request_body = IdentityStatusBody, responses((status = 200, description = "Active again", body = IdentityView), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found, or not the caller's to manage", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Offboarded: that is final", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn resume(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    Body(body): Body<IdentityStatusBody>,
) -> ApiResult<Response> {
    set_active(&app, &caller, &name, true, body.reason).await
}

#[utoipa::path(post, path = "/v1/identities/{name}/offboard", params(("name" = String, Path, description = "identity name")), request_body = IdentityStatusBody, responses((status = 200, description = "Offboarded: every grant and key revoked and every open request cancelled, in one commit; again changes nothing", body = OffboardView), (status = 400, description = "No reason; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found, or not the caller's to manage", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn offboard(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    Body(body): Body<IdentityStatusBody>,
) -> ApiResult<Response> {
    let out = app
        .engine
        .offboard(&caller, &name, body.reason.as_deref().unwrap_or(""))
        .await?;
    let ids = |v: &[_]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    Ok(Json(OffboardView {
        identity: views::identity(&out.identity, &[], &[], None, app.engine.clock().now()),
        changed: out.changed,
        grants_revoked: ids(&out.grants_revoked),
        keys_revoked: out.keys_revoked.iter().map(ToString::to_string).collect(),
        requests_cancelled: out
            .requests_cancelled
            .iter()
            .map(ToString::to_string)
            .collect(),
    })
    .into_response())
}

#[utoipa::path(post, path = "/v1/keys", request_body = CreateKey, responses((status = 201, description = "Issued; the secret is in this answer only", body = IssuedKeyView), (status = 400, description = "Bad expiry (over the maximum), naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No such identity, or not the caller's to manage", body = Problem, content_type = "application/problem+json"), (status = 409, description = "The identity is not active", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn create_key(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Body(body): Body<CreateKey>,
) -> ApiResult<Response> {
    let issued = app
        .engine
        .create_key(&caller, &body.identity, body.expires.as_deref())
        .await?;
    let now = app.engine.clock().now();
    Ok((
        StatusCode::CREATED,
        Json(IssuedKeyView {
            key: views::key(&issued.key, now),
            secret: issued.secret.expose_secret().to_owned(),
            previous: None,
        }),
    )
        .into_response())
}

#[utoipa::path(post, path = "/v1/keys/{id}/rotate", params(("id" = String, Path, description = "key_…")), request_body = RotateKey, responses((status = 201, description = "A new key (secret shown once); the old one works until the end of the overlap", body = IssuedKeyView), (status = 400, description = "Bad expiry; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found, or not the caller's to manage", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Revoked, expired or already rotated", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn rotate_key(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Body(body): Body<RotateKey>,
) -> ApiResult<Response> {
    let (issued, old) = app
        .engine
        .rotate_key(&caller, &id, body.expires.as_deref())
        .await?;
    let now = app.engine.clock().now();
    Ok((
        StatusCode::CREATED,
        Json(IssuedKeyView {
            key: views::key(&issued.key, now),
            secret: issued.secret.expose_secret().to_owned(),
            previous: Some(views::key(&old, now)),
        }),
    )
        .into_response())
}

#[utoipa::path(post, path = "/v1/keys/{id}/revoke", params(("id" = String, Path, description = "key_…")), responses((status = 200, description = "Revoked (again: unchanged)", body = KeyView), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found, or not the caller's to manage", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn revoke_key(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Json<KeyView>> {
    let k = app.engine.revoke_key(&caller, &id).await?;
    Ok(Json(views::key(&k, app.engine.clock().now())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    unused_days: Option<u64>,
}

#[utoipa::path(get, path = "/v1/reports/identities", params(("unused_days" = Option<u64>, Query, description = "flag identities idle this long (default 30)")), responses((status = 200, description = "Hygiene findings", body = IdentityReport), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Takes Administer on every entitlement", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn identity_report(
    State(app): State<Shared>,
    Authed(caller): Authed,
    uri: axum::http::Uri,
) -> ApiResult<Json<IdentityReport>> {
    let q: ReportQuery = query(uri.query())?;
    let unused_days = super::bounded("unused_days", q.unused_days, 30, 3_650)?;
    let findings = app.engine.identity_report(&caller, unused_days).await?;
    Ok(Json(IdentityReport {
        findings: findings
            .into_iter()
            .map(|f| IdentityFinding {
                identity: f.identity,
                finding: f.finding.to_owned(),
                detail: f.detail,
            })
            .collect(),
        rotate_after_days: app.engine.key_policy().rotate_after.as_secs() / 86_400,
        unused_days,
        notes: vec![
            "entitlements granted but never used: none of the connectors here (exec, postgres, mysql, ssh, webhook, token) can tell whether a grant was used, so this is not reported".into(),
        ],
    }))
}
