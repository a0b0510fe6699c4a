//! The web app's access reviews: the items waiting for the signed-in reviewer (keep, remove,
//! convert), one campaign's page (every item for an administrator, the reviewer's own
//! otherwise), and the administrators' list with the form that starts a campaign. The engine
//! decides who sees and decides what; the pages only call and show.

use askama::Template;
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use hourglass_core::campaign::{CampaignItem, CampaignScope, ItemDecision, Work};

use super::{
    Shared,
    app::{Chrome, Person, Posted, done, render, text},
    app_admin::Admin,
};

pub(super) struct ItemRow {
    id: String,
    about: String,
    what: String,
    reviewer: String,
    decided: Option<String>,
    work: String,
    can_convert: bool,
}

fn row(i: &CampaignItem) -> ItemRow {
    let about = i
        .principal
        .as_ref()
        .map_or_else(|| i.holder.clone().unwrap_or_default(), ToString::to_string);
    let what = match i.kind {
        CampaignScope::Eligibility => format!("may ask for {}", i.access.as_deref().unwrap_or("?")),
        CampaignScope::Standing => format!(
            "{} holds {} in {}{}",
            i.holder.as_deref().unwrap_or("?"),
            i.privilege.as_deref().unwrap_or("?"),
            i.target.as_deref().unwrap_or("?"),
            i.access
                .as_deref()
                .map(|a| format!(" (as {a})"))
                .unwrap_or_default()
        ),
        CampaignScope::Identities => i.privilege.clone().unwrap_or_default(),
    };
    ItemRow {
        id: i.id.to_string(),
        about,
        what,
        reviewer: i.reviewer.to_string(),
        decided: i.decision.map(|d| {
            format!(
                "{} by {}{}",
                d.as_str(),
                i.decided_by.as_deref().unwrap_or("?"),
                i.note
                    .as_deref()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default()
            )
        }),
        work: match i.work {
            Work::None => String::new(),
            Work::Pending => "removal queued for its target".into(),
            Work::Done => "removed from its target".into(),
            Work::Failed => format!(
                "removal failed: {}; remove it by hand",
                i.last_error.as_deref().unwrap_or("?")
            ),
        },
        can_convert: i.allows(ItemDecision::Convert),
    }
}

pub(super) struct CampaignBlock {
    id: String,
    name: String,
    scope: String,
    deadline: String,
    default_action: String,
    state: String,
    progress: Option<String>,
    items: Vec<ItemRow>,
}

#[derive(Template)]
#[template(path = "reviews.html")]
pub(super) struct ReviewsPage {
    chrome: Chrome,
    heading: String,
    campaigns: Vec<CampaignBlock>,
    empty: String,
}

#[derive(Template)]
#[template(path = "admin_campaigns.html")]
pub(super) struct CampaignsPage {
    chrome: Chrome,
    section: &'static str,
    campaigns: Vec<CampaignBlock>,
}

super::app::pages!(ReviewsPage, CampaignsPage);

fn block(
    c: &hourglass_core::campaign::Campaign,
    progress: Option<&hourglass_core::campaign::Progress>,
    items: &[CampaignItem],
) -> CampaignBlock {
    CampaignBlock {
        id: c.id.to_string(),
        name: c.name.clone(),
        scope: c.scope.as_str().to_owned(),
        deadline: c.deadline.to_string(),
        default_action: c.default_action.as_str().to_owned(),
        state: c.state.as_str().to_owned(),
        progress: progress.map(|p| {
            format!(
                "{} of {} decided: keep {}, remove {}, convert {} ({} by the deadline); {} removals queued, {} failed",
                p.decided, p.total, p.keep, p.remove, p.convert, p.by_default, p.work_pending, p.work_failed
            )
        }),
        items: items.iter().map(row).collect(),
    }
}

/// `GET /reviews`: the items waiting for the signed-in reviewer.
pub(super) async fn mine(State(app): State<Shared>, p: Person) -> Response {
    let mine = match app.engine.my_reviews(&p.caller).await {
        Ok(m) => m,
        Err(e) => return super::ApiError(e).into_response(),
    };
    let chrome = app.chrome(&p, "Access reviews", "reviews", false).await;
    render(
        StatusCode::OK,
        &ReviewsPage {
            chrome,
            heading: "Waiting for your review".into(),
            campaigns: mine
                .iter()
                .map(|(c, items)| block(c, None, items))
                .collect(),
            empty: "Nothing waits for your review.".into(),
        },
    )
}

/// `GET /reviews/{id}`: one campaign (the link reminders carry).
pub(super) async fn campaign(
    State(app): State<Shared>,
    Path(id): Path<String>,
    p: Person,
) -> Response {
    let (status, items) = match app.engine.campaign(&p.caller, &id, None, 1_000).await {
        Ok(c) => c,
        Err(e) => return super::ApiError(e).into_response(),
    };
    let chrome = app
        .chrome(&p, &status.campaign.name, "reviews", false)
        .await;
    render(
        StatusCode::OK,
        &ReviewsPage {
            chrome,
            heading: format!("Access review: {}", status.campaign.name),
            campaigns: vec![block(&status.campaign, Some(&status.progress), &items)],
            empty: String::new(),
        },
    )
}

/// `POST /reviews/items/{id}`: keep, remove or convert, with an optional note.
pub(super) async fn decide(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Posted { person: p, form: f }: Posted,
) -> Response {
    let Some(decision) = ItemDecision::parse(&text(&f, "decision")) else {
        return done(
            &app,
            &p,
            Err(hourglass_core::Error::invalid(
                hourglass_core::ErrorCode::CampaignDecisionInvalid,
                "decision",
                "choose keep, remove or convert",
            )),
            "/reviews",
            "reviews",
        )
        .await;
    };
    let note = text(&f, "note");
    let back = match text(&f, "back").as_str() {
        b if b.starts_with("/reviews/cmp_") && b.len() < 64 => b.to_owned(),
        _ => "/reviews".to_owned(),
    };
    let r = app
        .engine
        .decide_item(&p.caller, &id, decision, (!note.is_empty()).then_some(note))
        .await
        .map(|_| ());
    done(&app, &p, r, &back, "reviews").await
}

/// `GET /admin/campaigns`: every campaign with its progress, and the form to start one.
pub(super) async fn campaigns(State(app): State<Shared>, Admin(p): Admin) -> Response {
    let all = match app.engine.campaigns(&p.caller).await {
        Ok(a) => a,
        Err(e) => return super::ApiError(e).into_response(),
    };
    let chrome = app.chrome(&p, "Access reviews", "admin", false).await;
    render(
        StatusCode::OK,
        &CampaignsPage {
            chrome,
            section: "campaigns",
            campaigns: all
                .iter()
                .map(|s| block(&s.campaign, Some(&s.progress), &[]))
                .collect(),
        },
    )
}

/// `POST /admin/campaigns`: start one from the form.
pub(super) async fn start(
    State(app): State<Shared>,
    Posted { person: p, form: f }: Posted,
) -> Response {
    let bad = |field: &'static str, what: &str| {
        hourglass_core::Error::invalid(hourglass_core::ErrorCode::CampaignInvalid, field, what)
    };
    let scope = hourglass_api::CampaignScope::parse(&text(&f, "scope"))
        .ok_or_else(|| bad("scope", "choose eligibility, standing or identities"));
    let default_action = hourglass_api::DefaultAction::parse(&text(&f, "default_action"))
        .ok_or_else(|| bad("default_action", "choose keep or remove"));
    let (scope, default_action) = match (scope, default_action) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => {
            return done(&app, &p, Err(e), "/admin/campaigns", "admin").await;
        }
    };
    let body = hourglass_api::StartCampaign {
        name: text(&f, "name"),
        scope,
        reviewers: text(&f, "reviewers"),
        default_action,
        duration: text(&f, "duration"),
        remind_before: Some(text(&f, "remind_before")),
    };
    let r = match super::campaigns::new_campaign(&body) {
        Ok(new) => app.engine.start_campaign(&p.caller, new).await.map(|_| ()),
        Err(super::ApiError(e)) => Err(e),
    };
    done(&app, &p, r, "/admin/campaigns", "admin").await
}
