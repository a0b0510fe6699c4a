//! Operator actions that change what the server decides with.

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use hourglass_api::{Problem, ReloadView};

use super::{ApiResult, Authed, Shared};
use crate::{reload, views};

#[utoipa::path(post, path = "/v1/admin/policies/reload", responses((status = 200, description = "The policy files were read, validated and put in force; what was waiting was judged again", body = ReloadView), (status = 400, description = "A policy or the on-call schedule is invalid: nothing changed (the problem names each file)", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Needs Administer on every entitlement", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn reload_policies(
    State(app): State<Shared>,
    Authed(caller): Authed,
) -> ApiResult<Response> {
    let report = reload::reload(&app, Some(&caller)).await?;
    Ok(Json(views::reload(&report)).into_response())
}
