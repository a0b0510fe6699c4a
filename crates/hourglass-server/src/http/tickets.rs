//! Ticket events: a ticket system tells Hourglass that a ticket changed. Events are
//! authenticated by the source's webhook secret (no API token), checked before anything is read
//! from the body (the timeless `X-Hub-Signature` only for Jira sources); the engine applies each
//! delivery once, in the order of the ticket's own time, audits it, and ends the access bound to a
//! closed ticket in the same commit.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use hourglass_api::{Problem, ReopenTicketBody, TicketEventView};
use hourglass_connectors::webhook;
use hourglass_core::{engine::TicketReport, ticket::Ticket};
use hourglass_integrations::inbound::{self, Delivery, Refused, Signed};
use serde_json::Value;
use tracing::warn;

use super::{ApiResult, Authed, Body, Shared};
use crate::{
    config::TicketKind, integrations::TicketHook, metrics::TicketOutcome, problem::problem,
};

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn refused(app: &Shared, source: &str, e: &Refused) -> Response {
    warn!(source, reason = %e, "ticket event refused");
    app.metrics.ticket_event(source, TicketOutcome::Refused);
    match e {
        Refused::BadPayload(_) => problem(
            StatusCode::BAD_REQUEST,
            hourglass_core::ErrorCode::TicketEventInvalid,
            e.to_string(),
            Some("body"),
        ),
        _ => problem(
            StatusCode::UNAUTHORIZED,
            hourglass_core::ErrorCode::TicketEventUnauthenticated,
            e.to_string(),
            None,
        ),
    }
}

fn verify(
    app: &Shared,
    hook: &TicketHook,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Delivery, Refused> {
    use secrecy::ExposeSecret;
    let signed = Signed {
        timestamp: header(headers, webhook::TIMESTAMP_HEADER),
        signature: header(headers, webhook::SIGNATURE_HEADER),
        hub_signature: header(headers, inbound::HUB_SIGNATURE_HEADER),
    };
    let now = app.engine.clock().now().unix_millis() / 1000;
    inbound::verify(
        hook.secret.expose_secret(),
        signed,
        body,
        now,
        hook.kind == TicketKind::Jira,
    )
}

fn parse(body: &[u8]) -> Result<Value, Refused> {
    serde_json::from_slice(body).map_err(|e| Refused::BadPayload(format!("not JSON: {e}")))
}

/// Hands the event to the engine, which records it and ends bound access if the ticket closed.
/// Without a time of its own, the event counts as changed when it was signed.
async fn apply(app: &Shared, source: &str, mut t: Ticket, d: Delivery) -> ApiResult<Response> {
    if t.updated.is_none() {
        t.updated = d
            .signed_at
            .map(|s| hourglass_core::Timestamp::from_unix_millis(s.saturating_mul(1000)));
    }
    let now = app.engine.clock().now().unix_millis() / 1000;
    let until = d.remember_until(now);
    let report = TicketReport {
        source: source.to_owned(),
        ticket: t,
        delivery: Some((d.id, until)),
        via: format!("{source} webhook"),
    };
    let outcome = app.engine.ticket_reported(&report).await;
    let t = report.ticket;
    app.metrics.ticket_event(
        source,
        if outcome.is_ok() {
            TicketOutcome::Accepted
        } else {
            TicketOutcome::Refused
        },
    );
    let ended = outcome?;
    Ok(Json(TicketEventView {
        source: source.to_owned(),
        reference: t.reference,
        open: t.open,
        status: t.status,
        revoked: ended.revoked.iter().map(ToString::to_string).collect(),
        cancelled: ended.cancelled.iter().map(ToString::to_string).collect(),
    })
    .into_response())
}

#[utoipa::path(post, path = "/v1/tickets/events", security(()), request_body(content = String, description = "`{\"ref\": \"OPS-1\", \"status\": \"closed\", \"assignee\": \"alice\"}` (optionally `open`, `group`, `priority`), signed with `Hourglass-Timestamp` and `Hourglass-Signature: v1=<hex HMAC-SHA256(secret, \"<ts>.<body>\")>` by the secret of the source that owns `ref`", content_type = "application/json"), responses((status = 200, description = "Accepted; a closed ticket's access is ended", body = TicketEventView), (status = 400, description = "Not understood, or no source owns the reference; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Unsigned, or the signature does not verify; nothing changed", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn generic_event(
    State(app): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    // The signature is checked first, by the secret of a source that accepts generic events and
    // whose pattern owns the reference.
    let value = match parse(&body) {
        Ok(v) => v,
        Err(e) => return Ok(refused(&app, "-", &e)),
    };
    let reference = value.get("ref").and_then(Value::as_str).unwrap_or_default();
    // The source that owns the reference (the first whose pattern matches, in configuration
    // order, as for requests), if it takes generic events.
    let owner = app
        .engine
        .ticket_sources()
        .find(reference)
        .map(|b| b.source.name().to_owned());
    let Some((name, hook)) = owner
        .as_ref()
        .and_then(|n| app.ticket_hooks.get_key_value(n))
        .filter(|(_, h)| h.kind == TicketKind::Webhook && h.pattern.is_match(reference))
    else {
        app.metrics.ticket_event("-", TicketOutcome::Refused);
        return Ok(problem(
            StatusCode::BAD_REQUEST,
            hourglass_core::ErrorCode::TicketEventNoSource,
            format!("no webhook ticket source owns {reference:?}"),
            Some("ref"),
        ));
    };
    let delivery = match verify(&app, hook, &headers, &body) {
        Ok(d) => d,
        Err(e) => return Ok(refused(&app, name, &e)),
    };
    match inbound::generic_event(&value) {
        Ok(t) => apply(&app, name, t, delivery).await,
        Err(e) => Ok(refused(&app, name, &e)),
    }
}

#[utoipa::path(post, path = "/v1/tickets/sources/{name}/events", security(()), params(("name" = String, Path, description = "The ticket source")), request_body(content = String, description = "The source's native payload: a Jira webhook (`jira:issue_updated`, `jira:issue_deleted`, signed with `X-Hub-Signature: sha256=…`), a ServiceNow record posted by a business rule, or a generic event, signed with the source's webhook secret", content_type = "application/json"), responses((status = 200, description = "Accepted; a closed ticket's access is ended", body = TicketEventView), (status = 400, description = "Not understood; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "Unsigned, or the signature does not verify; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No source of that name accepts events", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn source_event(
    State(app): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let Some(hook) = app.ticket_hooks.get(&name) else {
        return Ok(problem(
            StatusCode::NOT_FOUND,
            hourglass_core::ErrorCode::TicketEventUnknownSource,
            format!("no ticket source {name:?} accepts events (is webhook_secret set?)"),
            None,
        ));
    };
    let delivery = match verify(&app, hook, &headers, &body) {
        Ok(d) => d,
        Err(e) => return Ok(refused(&app, &name, &e)),
    };
    let value = match parse(&body) {
        Ok(v) => v,
        Err(e) => return Ok(refused(&app, &name, &e)),
    };
    let ticket = match (hook.kind, hook.http.as_deref()) {
        (TicketKind::Jira, Some(src)) => inbound::jira_event(src, &value),
        (TicketKind::Servicenow, Some(src)) => inbound::servicenow_event(src, &value),
        _ => inbound::generic_event(&value),
    };
    match ticket {
        Ok(t) => apply(&app, &name, t, delivery).await,
        Err(e) => Ok(refused(&app, &name, &e)),
    }
}

#[utoipa::path(post, path = "/v1/tickets/sources/{name}/tickets/{reference}/reopen", params(("name" = String, Path, description = "A webhook-only ticket source"), ("reference" = String, Path, description = "The ticket it reported closed")), request_body = ReopenTicketBody, responses((status = 200, description = "Reopened: the source's next reports apply again", body = TicketEventView), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Takes Administer on every entitlement", body = Problem, content_type = "application/problem+json"), (status = 404, description = "The source reported no such ticket", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Not closed, or the source has a lookup API (reopen it there)", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn reopen(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Path((name, reference)): Path<(String, String)>,
    Body(body): Body<ReopenTicketBody>,
) -> ApiResult<Response> {
    let t = app
        .engine
        .reopen_ticket(&caller, &name, &reference, &body.reason)
        .await?;
    Ok(Json(TicketEventView {
        source: name,
        reference: t.reference,
        open: t.open,
        status: t.status,
        revoked: Vec::new(),
        cancelled: Vec::new(),
    })
    .into_response())
}
