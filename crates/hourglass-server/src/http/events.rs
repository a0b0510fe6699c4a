//! `GET /v1/events`: a server-sent event stream of changes to the requests and grants the
//! caller may see (the web app's live views, and `hourglass request --wait`).
//!
//! Each event is `event: change`, `id: SEQ` (the audit sequence number) and a JSON
//! [`ChangeView`]. A client resumes after the last id it saw, with `Last-Event-ID` (browsers'
//! `EventSource` sends it when it reconnects) or `?after=`. The ledger is the source, so every
//! replica's changes appear on every replica's stream. A stream lasts at most five minutes, and
//! ends at shutdown; the client reconnects (and so is authenticated again: a signed-out session
//! gets no more events).

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::{Query, State},
    http::HeaderMap,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use hourglass_api::ChangeView;
use hourglass_core::engine::Caller;

use super::{ApiResult, Authed, Shared};

/// How often the ledger is read for new changes.
const POLL: Duration = Duration::from_millis(500);
/// How long one stream lasts before the client must reconnect.
const LIFETIME: Duration = Duration::from_secs(300);
/// Audit records read per poll.
const BATCH: u32 = 500;

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub(super) struct EventsQuery {
    /// Resume after this audit sequence number (`Last-Event-ID` wins). Without either, the
    /// stream starts at the ledger's end: only changes from now on.
    after: Option<u64>,
}

struct Feed {
    app: Shared,
    caller: Caller,
    after: u64,
    pending: std::collections::VecDeque<ChangeView>,
    deadline: tokio::time::Instant,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Feed {
    /// The next change, or `None` when the stream ends (its lifetime, shutdown, an error).
    async fn next(&mut self) -> Option<ChangeView> {
        loop {
            if let Some(c) = self.pending.pop_front() {
                return Some(c);
            }
            if *self.stop.borrow() || tokio::time::Instant::now() >= self.deadline {
                return None;
            }
            match self
                .app
                .engine
                .changes_after(&self.caller, self.after, BATCH)
                .await
            {
                Ok((changes, last)) => {
                    self.after = last;
                    self.pending.extend(changes.into_iter().map(|c| ChangeView {
                        seq: c.seq,
                        at: c.at.to_string(),
                        action: c.action,
                        subject: c.subject,
                    }));
                    if !self.pending.is_empty() {
                        continue;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event stream: reading the ledger failed");
                    return None;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = self.stop.changed() => return None,
            }
        }
    }
}

/// `GET /v1/events`.
#[utoipa::path(get, path = "/v1/events", params(EventsQuery, ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id")), responses((status = 200, description = "A text/event-stream of `change` events, each a ChangeView; at most five minutes, then reconnect", body = ChangeView, content_type = "text/event-stream"), (status = 401, description = "No valid token or session", body = hourglass_api::Problem, content_type = "application/problem+json")))]
pub(super) async fn events(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(q.after);
    let after = match resume {
        Some(a) => a,
        None => app.engine.audit_head_seq().await?,
    };
    let feed = Feed {
        stop: app.stop.clone(),
        app,
        caller,
        after,
        pending: std::collections::VecDeque::new(),
        deadline: tokio::time::Instant::now() + LIFETIME,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let c = feed.next().await?;
        let event = Event::default()
            .event("change")
            .id(c.seq.to_string())
            .json_data(&c)
            .unwrap_or_else(|_| Event::default().comment("unserialisable change"));
        Some((Ok::<_, Infallible>(event), feed))
    });
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}
