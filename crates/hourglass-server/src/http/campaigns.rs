//! Access reviews: administrators start and follow campaigns; reviewers decide their items.
//! Who sees and decides what is the engine's rule.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use hourglass_api::{CampaignDetails, CampaignView, DecideItem, List, Problem, StartCampaign};
use hourglass_core::{
    Error, ErrorCode, GrantDuration,
    campaign::{CampaignScope, DefaultAction, ReviewerRule},
    engine::NewCampaign,
};
use serde::Deserialize;

use super::{ApiError, ApiResult, Authed, Body, Shared, query};
use crate::views;

fn duration(text: &str, field: &'static str) -> ApiResult<GrantDuration> {
    text.parse::<GrantDuration>()
        .map_err(|m| ApiError(Error::invalid(ErrorCode::CampaignInvalid, field, m)))
}

/// A start request in the engine's terms (shared with the web form).
pub(crate) fn new_campaign(body: &StartCampaign) -> ApiResult<NewCampaign> {
    Ok(NewCampaign {
        name: body.name.clone(),
        scope: match body.scope {
            hourglass_api::CampaignScope::Eligibility => CampaignScope::Eligibility,
            hourglass_api::CampaignScope::Standing => CampaignScope::Standing,
            hourglass_api::CampaignScope::Identities => CampaignScope::Identities,
        },
        reviewers: ReviewerRule::parse(&body.reviewers)?,
        default_action: match body.default_action {
            hourglass_api::DefaultAction::Keep => DefaultAction::Keep,
            hourglass_api::DefaultAction::Remove => DefaultAction::Remove,
        },
        duration: duration(&body.duration, "duration")?,
        remind_before: body
            .remind_before
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| duration(s, "remind_before"))
            .transpose()?,
    })
}

#[utoipa::path(post, path = "/v1/campaigns", request_body = StartCampaign, responses((status = 201, description = "Started, with its items enumerated now", body = CampaignView), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Only administrators of every entitlement start campaigns", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn start(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Body(body): Body<StartCampaign>,
) -> ApiResult<Response> {
    let c = app
        .engine
        .start_campaign(&caller, new_campaign(&body)?)
        .await?;
    let progress = hourglass_core::campaign::Progress {
        total: u64::from(c.items),
        ..Default::default()
    };
    Ok((
        StatusCode::CREATED,
        Json(views::campaign(&c, Some(&progress))),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/campaigns", responses((status = 200, description = "Every campaign with its progress, newest first", body = List<CampaignView>), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Only administrators of every entitlement", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn list(
    State(app): State<Shared>,
    Authed(caller): Authed,
) -> ApiResult<Json<List<CampaignView>>> {
    let all = app.engine.campaigns(&caller).await?;
    Ok(Json(List {
        items: all
            .iter()
            .map(|s| views::campaign(&s.campaign, Some(&s.progress)))
            .collect(),
    }))
}

#[utoipa::path(get, path = "/v1/campaigns/mine", responses((status = 200, description = "Open campaigns with items waiting for the caller's decision", body = List<CampaignDetails>), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn mine(
    State(app): State<Shared>,
    Authed(caller): Authed,
) -> ApiResult<Json<List<CampaignDetails>>> {
    let mine = app.engine.my_reviews(&caller).await?;
    Ok(Json(List {
        items: mine
            .iter()
            .map(|(c, items)| CampaignDetails {
                campaign: views::campaign(c, None),
                items: items.iter().map(views::campaign_item).collect(),
            })
            .collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemsQuery {
    after: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/campaigns/{id}", params(("id" = String, Path, description = "cmp_…"), ("after" = Option<String>, Query, description = "the last item id of the page before"), ("limit" = Option<u32>, Query, description = "1-1000, default 500")), responses((status = 200, description = "The campaign with its progress and a page of items (every item for an administrator, the caller's own for a reviewer)", body = CampaignDetails), (status = 400, description = "Bad input, naming the field", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found, or nothing in it is the caller's", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn details(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> ApiResult<Json<CampaignDetails>> {
    let q: ItemsQuery = query(uri.query())?;
    let (status, items) = app
        .engine
        .campaign(
            &caller,
            &id,
            q.after.as_deref(),
            super::page_limit(q.limit, 500, 1_000)?,
        )
        .await?;
    Ok(Json(CampaignDetails {
        campaign: views::campaign(&status.campaign, Some(&status.progress)),
        items: items.iter().map(views::campaign_item).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/campaigns/items/{id}/decide", params(("id" = String, Path, description = "itm_…")), request_body = DecideItem, responses((status = 200, description = "Decided, and acted on: an eligibility removed is in force now; standing privilege is queued for its target; an identity is suspended", body = hourglass_api::CampaignItemView), (status = 400, description = "Bad input, or a decision this item cannot take; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "The item is about the caller, or the caller is an agent", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found, or not the caller's to review", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Already decided, or the campaign is closed", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn decide(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Body(body): Body<DecideItem>,
) -> ApiResult<Json<hourglass_api::CampaignItemView>> {
    let item = app
        .engine
        .decide_item(&caller, &id, views::item_decision(body.decision), body.note)
        .await?;
    Ok(Json(views::campaign_item(&item)))
}
