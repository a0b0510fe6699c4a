//! Break-glass reviews: who may see them and close them is the engine's rule.

use axum::{
    Json,
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use hourglass_api::{CloseReviewBody, List, Problem, ReviewView};
use hourglass_core::review::ReviewState;

use super::{ApiResult, Authed, Body, ListQuery, Shared, parse_state, query};
use crate::views;

#[utoipa::path(get, path = "/v1/reviews", params(("state" = Option<String>, Query, description = "open|closed"), ("limit" = Option<u32>, Query, description = "1-500, default 100")), responses((status = 200, description = "Break-glass reviews the caller may see (as the user of the glass, or as an approver or administrator of the entitlement), newest first", body = List<ReviewView>), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn list_reviews(
    State(app): State<Shared>,
    Authed(caller): Authed,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    let q: ListQuery = query(uri.query())?;
    let state = parse_state(q.state.as_deref(), ReviewState::parse)?;
    let items = app
        .engine
        .list_reviews(&caller, state, super::page_limit(q.limit, 100, 500)?)
        .await?;
    Ok(Json(List {
        items: items.iter().map(views::review).collect(),
    })
    .into_response())
}

#[utoipa::path(post, path = "/v1/reviews/{id}/close", params(("id" = String, Path, description = "rev_…")), request_body = CloseReviewBody, responses((status = 200, description = "Closed", body = ReviewView), (status = 400, description = "No comment; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "The user of the glass, or someone who may not judge it", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to the caller)", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Already closed", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn close_review(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Body(body): Body<CloseReviewBody>,
) -> ApiResult<Response> {
    let r = app.engine.close_review(&caller, &id, &body.comment).await?;
    Ok(Json(views::review(&r)).into_response())
}
