//! Slack's requests: button clicks and modal submissions (`/slack/<chat>/interactions`), the
//! `/hourglass` command (`/slack/<chat>/commands`) and options loaded as someone types
//! (`/slack/<chat>/options`). Each is verified by the app's signing secret before its body is
//! read, then acknowledged at once (Slack waits three seconds); the work happens after, and its
//! outcome is posted back to Slack. A repeat of a click or a submission changes nothing twice.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use hourglass_integrations::slack::{self, Interaction, SlackUser};
use tracing::{info, warn};

use super::Shared;
use crate::{chat::SlackChat, metrics::ChatOutcome};

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The chat and a verified body, or the refusal.
fn verified(
    app: &Shared,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Arc<SlackChat>, Box<Response>> {
    let Some(chat) = app.chats.get(name) else {
        return Err(Box::new(
            (StatusCode::NOT_FOUND, "no such chat app").into_response(),
        ));
    };
    if let Err(e) = chat.verify(
        header(headers, slack::TIMESTAMP_HEADER),
        header(headers, slack::SIGNATURE_HEADER),
        body,
    ) {
        warn!(chat = name, reason = %e, "a Slack request was refused");
        app.metrics.chat_request(name, ChatOutcome::Refused);
        return Err(Box::new(
            (StatusCode::UNAUTHORIZED, e.to_string()).into_response(),
        ));
    }
    Ok(Arc::clone(chat))
}

fn bad(app: &Shared, name: &str, e: &slack::Refused) -> Response {
    warn!(chat = name, reason = %e, "a Slack request was not understood");
    app.metrics.chat_request(name, ChatOutcome::Invalid);
    (StatusCode::BAD_REQUEST, e.to_string()).into_response()
}

/// Refuses a request from another workspace, and acknowledges a repeat (`once` seen before)
/// without doing anything; `None` lets it through.
fn admit(
    app: &Shared,
    chat: &SlackChat,
    headers: &HeaderMap,
    user: Option<&SlackUser>,
    once: Option<&str>,
) -> Option<Response> {
    if let Some(u) = user
        && !chat.our_team(u)
    {
        warn!(chat = %chat.name, team = ?u.team, "a Slack request from another workspace was refused");
        app.metrics.chat_request(&chat.name, ChatOutcome::Refused);
        return Some((StatusCode::FORBIDDEN, "not this app's workspace").into_response());
    }
    if let Some(key) = once
        && !chat.first_time(&format!("{}:{key}", user.map_or("", |u| u.id.as_str())))
    {
        info!(chat = %chat.name, retry = ?header(headers, slack::RETRY_HEADER), "a repeated Slack request; nothing done twice");
        app.metrics.chat_request(&chat.name, ChatOutcome::Repeat);
        return Some(StatusCode::OK.into_response());
    }
    app.metrics.chat_request(&chat.name, ChatOutcome::Accepted);
    None
}

/// `POST /slack/{chat}/interactions` (and `/options`, where Slack loads a select's options).
pub(super) async fn interactions(
    State(app): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let chat = match verified(&app, &name, &headers, &body) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let i = match slack::parse_interaction(&body) {
        Ok(i) => i,
        Err(e) => return bad(&app, &name, &e),
    };
    // A form with a mistake is answered in the form, before anything is remembered: the person
    // corrects it and submits the same form again.
    if let Some(errors) = SlackChat::form_errors(&i) {
        return Json(errors).into_response();
    }
    let (user, once) = match &i {
        Interaction::Action { user, once, .. } | Interaction::Submit { user, once, .. } => {
            (Some(user), once.as_deref())
        }
        Interaction::Suggest { user, .. } => (Some(user), None),
        Interaction::Other(_) => (None, None),
    };
    if let Some(r) = admit(&app, &chat, &headers, user, once) {
        return r;
    }
    match i {
        // Options are the answer itself, within Slack's three seconds.
        Interaction::Suggest { user, query, .. } => {
            Json(chat.options(&app.engine, &user, &query).await).into_response()
        }
        i => {
            tokio::spawn(chat.act(Arc::clone(&app.engine), i));
            StatusCode::OK.into_response()
        }
    }
}

/// `POST /slack/{chat}/commands`: `/hourglass [access]` opens the request modal.
pub(super) async fn commands(
    State(app): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let chat = match verified(&app, &name, &headers, &body) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let c = match slack::parse_command(&body) {
        Ok(c) => c,
        Err(e) => return bad(&app, &name, &e),
    };
    if let Some(r) = admit(&app, &chat, &headers, Some(&c.user), Some(&c.trigger_id)) {
        return r;
    }
    tokio::spawn(async move { chat.open_request(&c.trigger_id, &c.text).await });
    StatusCode::OK.into_response()
}
