//! The web app: server-rendered pages (askama templates, escaped by default) over the same
//! engine use cases as the API, for a signed-in person. Request (the catalogue and the form),
//! Mine (requests and grants, live, with extend, release and the one-time credential reveal)
//! and Approve (the inbox and one request with what an approver needs to judge it).
//!
//! Every page needs a live session (else it goes to sign-in and comes back); every form is a
//! `POST` with the session's CSRF token from this server's own origin, and answers with a
//! redirect (post/redirect/get) or the form again with each error next to its field. Pages
//! carry a CSP that allows only this server's own script and style, and `no-store`.

use std::net::SocketAddr;

use askama::Template;
use axum::{
    body::Bytes,
    extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request, State},
    http::{HeaderValue, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use hourglass_core::{
    Error, GrantDuration, Timestamp,
    engine::{Caller, NewRequest, Offer, csrf_token},
    grant::GrantState,
    id::RequestId,
    request::RequestState,
};

use super::{
    Shared,
    web::{self, page_headers},
};
use crate::{App, metrics::RequestOutcome};

/// The policy of the app's assets (a stylesheet and a script need none of their own).
const ASSET_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
const CSS: &str = include_str!("../../static/app.css");
const JS: &str = include_str!("../../static/app.js");

/// What every page shows around its content.
pub(super) struct Chrome {
    pub(super) title: String,
    pub(super) nav: &'static str,
    pub(super) who: String,
    pub(super) mfa: bool,
    pub(super) csrf: String,
    /// Requests waiting for this person's decision.
    pub(super) inbox: usize,
    /// The page follows changes (`/v1/events`).
    pub(super) live: bool,
    /// The page's Content-Security-Policy.
    pub(super) csp: HeaderValue,
    /// The person may administer everything (the Admin pages).
    pub(super) admin: bool,
}

/// A signed-in person on a page.
pub(super) struct Person {
    pub(super) caller: Caller,
    session: String,
}

/// A page of the app: a template with the chrome around it.
pub(super) trait Page: Template {
    fn chrome(&self) -> &Chrome;
}

macro_rules! pages {
    ($($t:ty),* $(,)?) => {
        $(impl $crate::http::app::Page for $t {
            fn chrome(&self) -> &Chrome {
                &self.chrome
            }
        })*
    };
}

pub(super) use pages;

pages!(
    RequestPage,
    AskPage,
    MinePage,
    MessagePage,
    RevealPage,
    InboxPage,
    EntryPage,
);

pub(super) fn render(status: StatusCode, t: &impl Page) -> Response {
    match t.render() {
        Ok(html) => page_headers(
            (status, html).into_response(),
            "text/html; charset=utf-8",
            t.chrome().csp.clone(),
        ),
        Err(e) => {
            tracing::error!(error = %e, "a page did not render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page did not render").into_response()
        }
    }
}

fn see_other(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// The person the session cookie stands for, as an extractor: without a live session, the
/// rejection is the way to sign in, coming back to this page (a `GET`) or to its section.
impl FromRequestParts<Shared> for Person {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> Result<Self, Response> {
        let here = if parts.method == Method::GET {
            parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned()
        } else {
            let section = parts.uri.path().split('/').nth(1).unwrap_or_default();
            format!("/{section}")
        };
        let signin = || {
            let back: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
            see_other(&format!("/signin?return_to={back}"))
        };
        let Some(id) = web::session_cookie(&parts.headers, &app.web) else {
            return Err(signin());
        };
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        match app.engine.session_caller(&id, ip).await {
            Ok(Some((caller, _))) => Ok(Person {
                caller,
                session: id,
            }),
            Ok(None) => Err(signin()),
            Err(e) => Err(super::ApiError(e).into_response()),
        }
    }
}

/// A form posted from one of this server's pages, as an extractor: the person, and the fields,
/// once the session's CSRF token and our own origin are checked.
pub(super) struct Posted {
    pub(super) person: Person,
    pub(super) form: Vec<(String, String)>,
}

impl FromRequest<Shared> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, app: &Shared) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let person = Person::from_request_parts(&mut parts, app).await?;
        let body = Bytes::from_request(Request::from_parts(parts.clone(), body), app)
            .await
            .map_err(IntoResponse::into_response)?;
        let form = form(&body);
        if !web::csrf_ok(
            &Method::POST,
            &parts.headers,
            &person.session,
            field(&form, "csrf_token"),
        ) {
            return Err(super::problem(
                StatusCode::FORBIDDEN,
                hourglass_core::ErrorCode::AuthCsrf,
                "this form needs its CSRF token and must come from this server's own page; reload the page",
                None,
            ));
        }
        Ok(Posted { person, form })
    }
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

pub(super) fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub(super) fn text(form: &[(String, String)], name: &str) -> String {
    field(form, name).unwrap_or_default().trim().to_owned()
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl App {
    pub(super) async fn chrome(
        &self,
        p: &Person,
        title: &str,
        nav: &'static str,
        live: bool,
    ) -> Chrome {
        let inbox = self
            .engine
            .inbox(&p.caller)
            .await
            .map(|i| i.len())
            .unwrap_or(0);
        self.chrome_counted(p, title, nav, live, inbox)
    }

    /// [`chrome`](Self::chrome) with the inbox already counted (the inbox page itself).
    pub(super) fn chrome_counted(
        &self,
        p: &Person,
        title: &str,
        nav: &'static str,
        live: bool,
        inbox: usize,
    ) -> Chrome {
        Chrome {
            title: title.to_owned(),
            nav,
            who: p.caller.principal.id.to_string(),
            mfa: p.caller.mfa,
            csrf: csrf_token(&p.session),
            inbox,
            live,
            csp: self.web.app_csp.clone(),
            admin: self
                .engine
                .require_admin_of_all(&p.caller, hourglass_core::ErrorCode::AdminNotAllowed)
                .is_ok(),
        }
    }
}

/// `3600` seconds as `1h`, `5400` as `1h30m`.
fn duration(d: GrantDuration) -> String {
    d.to_string()
}

/// Time left until `until` from `now`, for people (the script keeps it current).
fn left(now: Timestamp, until: Timestamp) -> String {
    let ms = until.unix_millis() - now.unix_millis();
    if ms <= 0 {
        return "ended".into();
    }
    let s = ms / 1000;
    let (h, m) = (s / 3600, (s % 3600) / 60);
    if h > 0 {
        format!("{h}h {m:02}m left")
    } else {
        format!("{m}m {:02}s left", s % 60)
    }
}

/// An offer as the catalogue shows it.
pub(super) struct OfferView {
    name: String,
    profile: bool,
    description: String,
    outcome: String,
    risk: String,
    max: String,
    needs_ticket: bool,
    break_glass: bool,
    needs_public_key: bool,
}

fn approvers(n: u32) -> String {
    if n == 1 {
        "1 approval".into()
    } else {
        format!("{n} approvals")
    }
}

impl From<&Offer> for OfferView {
    fn from(o: &Offer) -> Self {
        let outcome = match o.auto_up_to {
            Some(d) if d >= o.max_duration => {
                format!("Approved at once, up to {}.", duration(o.max_duration))
            }
            Some(d) => format!(
                "Approved at once up to {}; longer needs {}.",
                duration(d),
                approvers(o.approvals_required)
            ),
            None => format!("Needs {}.", approvers(o.approvals_required)),
        };
        OfferView {
            name: o.name.clone(),
            profile: o.profile,
            description: o.description.clone(),
            outcome,
            risk: format!("{:?}", o.risk).to_lowercase(),
            max: duration(o.max_duration),
            needs_ticket: o.needs_ticket,
            break_glass: o.break_glass,
            needs_public_key: o.needs_public_key,
        }
    }
}

#[derive(Template)]
#[template(path = "request.html")]
struct RequestPage {
    chrome: Chrome,
    offers: Vec<OfferView>,
}

/// `GET /`: the catalogue for a signed-in person, else sign-in.
pub(super) async fn home(_: Person) -> Response {
    see_other("/request")
}

/// `GET /request`: what I may ask for.
pub(super) async fn catalogue(State(app): State<Shared>, p: Person) -> Response {
    let offers = match app.engine.catalogue(&p.caller).await {
        Ok(o) => o.iter().map(OfferView::from).collect(),
        Err(e) => return super::ApiError(e).into_response(),
    };
    let chrome = app.chrome(&p, "Ask for access", "request", false).await;
    render(StatusCode::OK, &RequestPage { chrome, offers })
}

/// What the request form holds (given back with its errors).
#[derive(Default)]
pub(super) struct AskForm {
    duration: String,
    reason: String,
    ticket: String,
    starts_at: String,
    public_key: String,
    break_glass: bool,
}

/// Errors next to each field of the request form.
#[derive(Default)]
pub(super) struct AskErrors {
    duration: Option<String>,
    reason: Option<String>,
    ticket: Option<String>,
    starts_at: Option<String>,
    public_key: Option<String>,
    confirm: Option<String>,
}

#[derive(Template)]
#[template(path = "ask.html")]
struct AskPage {
    chrome: Chrome,
    offer: OfferView,
    form: AskForm,
    errors: AskErrors,
    general_error: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct WhatQuery {
    what: Option<String>,
}

async fn offer_for(app: &App, caller: &Caller, what: &str) -> Result<Option<Offer>, Error> {
    Ok(app
        .engine
        .catalogue(caller)
        .await?
        .into_iter()
        .find(|o| o.name == what))
}

fn not_offered(chrome: Chrome, what: &str) -> Response {
    render(
        StatusCode::NOT_FOUND,
        &MessagePage {
            chrome,
            text: format!("{what:?} is not something you may ask for now."),
            back: "/request".into(),
            error: true,
        },
    )
}

/// `GET /request/new?what=…`: the form for one offer.
pub(super) async fn ask_form(
    State(app): State<Shared>,
    Query(q): Query<WhatQuery>,
    p: Person,
) -> Response {
    let what = q.what.unwrap_or_default();
    let chrome = app
        .chrome(&p, &format!("Ask for {what}"), "request", false)
        .await;
    match offer_for(&app, &p.caller, &what).await {
        Ok(Some(o)) => {
            let form = AskForm {
                duration: duration(o.default_duration),
                ..AskForm::default()
            };
            render(
                StatusCode::OK,
                &AskPage {
                    chrome,
                    offer: OfferView::from(&o),
                    form,
                    errors: AskErrors::default(),
                    general_error: None,
                },
            )
        }
        Ok(None) => not_offered(chrome, &what),
        Err(e) => super::ApiError(e).into_response(),
    }
}

/// `POST /request/new`: asks; on success to Mine, else the form again with its errors.
pub(super) async fn ask(
    State(app): State<Shared>,
    Posted { person: p, form: f }: Posted,
) -> Response {
    let what = text(&f, "what");
    let filled = AskForm {
        duration: text(&f, "duration"),
        reason: field(&f, "reason").unwrap_or_default().to_owned(),
        ticket: text(&f, "ticket"),
        starts_at: text(&f, "starts_at"),
        public_key: text(&f, "public_key"),
        break_glass: field(&f, "break_glass") == Some("1"),
    };
    let offer = match offer_for(&app, &p.caller, &what).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            let chrome = app.chrome(&p, "Ask for access", "request", false).await;
            return not_offered(chrome, &what);
        }
        Err(e) => return super::ApiError(e).into_response(),
    };
    let mut errors = AskErrors::default();
    let mut general_error = None;
    if filled.break_glass && text(&f, "confirm") != "BREAK GLASS" {
        errors.confirm =
            Some("type BREAK GLASS to confirm the emergency, or untick break glass".into());
    } else {
        let result = app
            .engine
            .submit(
                &p.caller,
                NewRequest {
                    entitlement: what.clone(),
                    duration: non_empty(filled.duration.clone()),
                    reason: filled.reason.clone(),
                    ticket: non_empty(filled.ticket.clone()),
                    task: None,
                    public_key: non_empty(filled.public_key.clone()),
                    break_glass: filled.break_glass,
                    starts_at: non_empty(filled.starts_at.clone()),
                },
            )
            .await;
        match result {
            Ok(r) => {
                app.metrics
                    .request(match (r.break_glass, r.grant_id.is_some()) {
                        (true, _) => RequestOutcome::BreakGlass,
                        (false, true) => RequestOutcome::AutoApproved,
                        (false, false) => RequestOutcome::Pending,
                    });
                return see_other(&format!("/mine#{}", r.id));
            }
            Err(Error::Invalid { field, message, .. }) => {
                let slot = match field {
                    "duration" => &mut errors.duration,
                    "reason" => &mut errors.reason,
                    "ticket" => &mut errors.ticket,
                    "starts_at" => &mut errors.starts_at,
                    "public_key" => &mut errors.public_key,
                    _ => &mut general_error,
                };
                *slot = Some(message);
            }
            Err(
                e @ (Error::Forbidden { .. } | Error::Conflict { .. } | Error::NotFound { .. }),
            ) => {
                general_error = Some(e.to_string());
            }
            Err(e) => return super::ApiError(e).into_response(),
        }
    }
    let chrome = app
        .chrome(&p, &format!("Ask for {what}"), "request", false)
        .await;
    render(
        StatusCode::BAD_REQUEST,
        &AskPage {
            chrome,
            offer: OfferView::from(&offer),
            form: filled,
            errors,
            general_error,
        },
    )
}

pub(super) struct GrantRow {
    id: String,
    entitlement: String,
    state: String,
    expires_at: String,
    left: String,
    end_reason: Option<String>,
    live: bool,
    credential: bool,
}

pub(super) struct RequestRow {
    id: String,
    entitlement: String,
    duration: String,
    state: String,
    state_reason: Option<String>,
    reason: String,
    break_glass: bool,
    pending: bool,
}

#[derive(Template)]
#[template(path = "mine.html")]
struct MinePage {
    chrome: Chrome,
    grants: Vec<GrantRow>,
    requests: Vec<RequestRow>,
}

/// `GET /mine`: my grants (live first) and my requests, following changes.
pub(super) async fn mine(State(app): State<Shared>, p: Person) -> Response {
    let me = &p.caller.principal.id;
    let (requests, grants, waiting) = match tokio::try_join!(
        app.engine.list_requests(&p.caller, None, 200),
        app.engine.list_grants(&p.caller, None, 200),
        app.engine.waiting_credentials(&p.caller),
    ) {
        Ok(x) => x,
        Err(e) => return super::ApiError(e).into_response(),
    };
    let now = app.engine.clock().now();
    let mut grants: Vec<GrantRow> = grants
        .into_iter()
        .filter(|g| &g.principal == me)
        .map(|g| {
            let live = g.state == GrantState::Active;
            GrantRow {
                credential: live && waiting.contains(&g.id),
                id: g.id.to_string(),
                entitlement: g.entitlement.to_string(),
                state: g.state.as_str().to_owned(),
                expires_at: g.expires_at.to_string(),
                left: if live {
                    left(now, g.expires_at)
                } else {
                    g.expires_at.to_string()
                },
                end_reason: g.end_reason.clone(),
                live,
            }
        })
        .collect();
    grants.sort_by_key(|g| !g.live);
    let requests = requests
        .into_iter()
        .filter(|r| &r.requester == me)
        .take(50)
        .map(|r| RequestRow {
            id: r.id.to_string(),
            entitlement: r.access.to_string(),
            duration: duration(r.duration),
            state: r.state.as_str().to_owned(),
            state_reason: r.state_reason.clone(),
            reason: r.reason.clone(),
            break_glass: r.break_glass,
            pending: r.state == RequestState::Pending,
        })
        .collect();
    let chrome = app.chrome(&p, "Mine", "mine", true).await;
    render(
        StatusCode::OK,
        &MinePage {
            chrome,
            grants,
            requests,
        },
    )
}

#[derive(Template)]
#[template(path = "message.html")]
pub(super) struct MessagePage {
    pub(super) chrome: Chrome,
    pub(super) text: String,
    pub(super) back: String,
    pub(super) error: bool,
}

/// The outcome of a form that changes one thing: back to `back`, or a page saying why not.
pub(super) async fn done(
    app: &App,
    p: &Person,
    result: Result<(), Error>,
    back: &str,
    nav: &'static str,
) -> Response {
    match result {
        Ok(()) => see_other(back),
        Err(
            e @ (Error::Invalid { .. }
            | Error::Forbidden { .. }
            | Error::Conflict { .. }
            | Error::NotFound { .. }),
        ) => {
            let chrome = app.chrome(p, "Not done", nav, false).await;
            render(
                StatusCode::BAD_REQUEST,
                &MessagePage {
                    chrome,
                    text: e.to_string(),
                    back: back.to_owned(),
                    error: true,
                },
            )
        }
        Err(e) => super::ApiError(e).into_response(),
    }
}

/// `POST /mine/grants/{id}/release`: ends my grant now.
pub(super) async fn release(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Posted { person: p, .. }: Posted,
) -> Response {
    // Only the holder releases here (an administrator revokes on the Admin pages, with a reason).
    let r = match app.engine.grant(&p.caller, &id).await {
        Ok(g) if g.principal == p.caller.principal.id => app
            .engine
            .revoke(&p.caller, &id, Some("released early by its holder".into()))
            .await
            .map(|_| ()),
        Ok(_) => Err(Error::forbidden(
            hourglass_core::ErrorCode::GrantNotYours,
            "only its holder releases a grant here; administrators revoke on the Admin pages",
        )),
        Err(e) => Err(e),
    };
    done(&app, &p, r, "/mine", "mine").await
}

/// `POST /mine/grants/{id}/extend`: asks for more time on my grant.
pub(super) async fn extend(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Posted { person: p, form: f }: Posted,
) -> Response {
    let r = app
        .engine
        .extend(&p.caller, &id, &text(&f, "by"), &text(&f, "reason"))
        .await
        .map(|_| ());
    done(&app, &p, r, "/mine", "mine").await
}

/// `POST /mine/requests/{id}/cancel`.
pub(super) async fn cancel(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Posted { person: p, .. }: Posted,
) -> Response {
    let r = app.engine.cancel(&p.caller, &id).await.map(|_| ());
    done(&app, &p, r, "/mine", "mine").await
}

#[derive(Template)]
#[template(path = "reveal.html")]
struct RevealPage {
    chrome: Chrome,
    grant_id: String,
    credential: String,
    expires_at: String,
}

/// `POST /mine/grants/{id}/credential`: the one-time reveal (a `POST`, so that no prefetch
/// or history can spend it; the page is never cached).
pub(super) async fn reveal(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Posted { person: p, .. }: Posted,
) -> Response {
    match super::take_credential(&app, &p.caller, &id).await {
        Ok(c) => {
            let chrome = app.chrome(&p, "Your credential", "mine", false).await;
            render(
                StatusCode::OK,
                &RevealPage {
                    chrome,
                    grant_id: c.grant_id,
                    credential: c.credential,
                    expires_at: c.expires_at,
                },
            )
        }
        Err(super::ApiError(e)) => done(&app, &p, Err(e), "/mine", "mine").await,
    }
}

pub(super) struct InboxRow {
    id: String,
    requester: String,
    entitlement: String,
    duration: String,
    risk: String,
    reason: String,
    created_at: String,
    step_up: bool,
}

pub(super) struct ReviewRow {
    id: String,
    principal: String,
    access: String,
    reason: String,
    grant_id: String,
    opened_at: String,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    chrome: Chrome,
    entries: Vec<InboxRow>,
    reviews: Vec<ReviewRow>,
}

/// `GET /inbox`: what waits for my decision, following changes.
pub(super) async fn inbox(State(app): State<Shared>, p: Person) -> Response {
    let entries = match app.engine.inbox(&p.caller).await {
        Ok(e) => e,
        Err(e) => return super::ApiError(e).into_response(),
    };
    let waiting = entries.len();
    let entries = entries
        .into_iter()
        .map(|(r, risk, step_up)| InboxRow {
            id: r.id.to_string(),
            requester: r.who(),
            entitlement: r.access.to_string(),
            duration: duration(r.duration),
            risk: format!("{risk:?}").to_lowercase(),
            reason: r.reason,
            created_at: r.created_at.to_string(),
            step_up,
        })
        .collect();
    // Open break-glass reviews this person may close (someone else's glass).
    let reviews = match app
        .engine
        .list_reviews(
            &p.caller,
            Some(hourglass_core::review::ReviewState::Open),
            100,
        )
        .await
    {
        Ok(r) => r
            .into_iter()
            .filter(|r| r.principal != p.caller.principal.id)
            .map(|r| ReviewRow {
                id: r.id.to_string(),
                principal: r.principal.to_string(),
                access: r.access.to_string(),
                reason: r.reason,
                grant_id: r.grant_id.to_string(),
                opened_at: r.opened_at.to_string(),
            })
            .collect(),
        Err(e) => return super::ApiError(e).into_response(),
    };
    let chrome = app.chrome_counted(&p, "Waiting for you", "inbox", true, waiting);
    render(
        StatusCode::OK,
        &InboxPage {
            chrome,
            entries,
            reviews,
        },
    )
}

/// `POST /inbox/reviews/{id}/close`: closes a break-glass review with what was checked.
pub(super) async fn close_review(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Posted { person: p, form: f }: Posted,
) -> Response {
    let r = app
        .engine
        .close_review(&p.caller, &id, &text(&f, "comment"))
        .await
        .map(|_| ());
    done(&app, &p, r, "/inbox", "inbox").await
}

pub(super) struct HistoryRow {
    created_at: String,
    duration: String,
    state: String,
    reason: String,
}

pub(super) struct HolderRow {
    principal: String,
    entitlement: String,
    expires_at: String,
}

pub(super) struct EntryView {
    id: String,
    requester: String,
    entitlement: String,
    risk: String,
    duration: String,
    starts_at: Option<String>,
    reason: String,
    ticket: Option<String>,
    approvals: usize,
    approvals_required: u32,
    decide_by: String,
    eligible_by: Vec<String>,
    decide_by_policies: Vec<String>,
    history: Vec<HistoryRow>,
    holders: Vec<HolderRow>,
    step_up: bool,
}

#[derive(Template)]
#[template(path = "entry.html")]
struct EntryPage {
    chrome: Chrome,
    e: EntryView,
    general_error: Option<String>,
    deny_error: Option<String>,
}

/// The ticket: as its source last reported it when it has, else as the request recorded it;
/// reference, status, assignee, and whether its source confirmed it.
fn ticket_line(e: &hourglass_core::engine::InboxEntry) -> Option<String> {
    let r = &e.request;
    let reference = r.ticket.clone()?;
    if let Some(t) = &e.ticket_now {
        return Some(format!(
            "{reference} ({}{}{}, as its source last reported it{})",
            t.status,
            if t.open { ", open" } else { ", closed" },
            t.assignee
                .as_deref()
                .map(|a| format!(", assigned to {a}"))
                .unwrap_or_default(),
            t.updated.map(|u| format!(" at {u}")).unwrap_or_default()
        ));
    }
    Some(match &r.ticket_facts {
        Some(t) => format!(
            "{reference} ({}{}{}, when asked)",
            t.status.as_deref().unwrap_or("status unknown"),
            t.assignee
                .as_deref()
                .map(|a| format!(", assigned to {a}"))
                .unwrap_or_default(),
            if t.verified {
                ", confirmed by its source"
            } else {
                ", not confirmed"
            }
        ),
        None => reference,
    })
}

async fn entry_page(
    app: &App,
    p: &Person,
    id: &str,
    status: StatusCode,
    general_error: Option<String>,
    deny_error: Option<String>,
) -> Response {
    let e = match app.engine.inbox_entry(&p.caller, id).await {
        Ok(e) => e,
        Err(e @ Error::NotFound { .. }) => {
            let chrome = app.chrome(p, "Not waiting for you", "inbox", false).await;
            return render(
                StatusCode::NOT_FOUND,
                &MessagePage {
                    chrome,
                    text: e.to_string(),
                    back: "/inbox".into(),
                    error: true,
                },
            );
        }
        Err(e) => return super::ApiError(e).into_response(),
    };
    let r = &e.request;
    let view = EntryView {
        id: r.id.to_string(),
        requester: r.who(),
        entitlement: r.access.to_string(),
        risk: format!("{:?}", e.risk).to_lowercase(),
        duration: duration(r.duration),
        starts_at: r.starts_at.map(|s| s.to_string()),
        reason: r.reason.clone(),
        ticket: ticket_line(&e),
        approvals: e
            .approvals
            .iter()
            .filter(|a| a.verdict == hourglass_core::request::Verdict::Approve)
            .count(),
        approvals_required: e.approvals_required,
        decide_by: r.decide_by.to_string(),
        eligible_by: e.eligible_by.clone(),
        decide_by_policies: e.decide_by.clone(),
        history: e
            .history
            .iter()
            .map(|h| HistoryRow {
                created_at: h.created_at.to_string(),
                duration: duration(h.duration),
                state: h.state.as_str().to_owned(),
                reason: h.reason.clone(),
            })
            .collect(),
        holders: e
            .holders
            .iter()
            .map(|g| HolderRow {
                principal: g.principal.to_string(),
                entitlement: g.entitlement.to_string(),
                expires_at: g.expires_at.to_string(),
            })
            .collect(),
        step_up: e.needs_step_up,
    };
    let title = format!("{} asks for {}", view.requester, view.entitlement);
    let chrome = app.chrome(p, &title, "inbox", false).await;
    render(
        status,
        &EntryPage {
            chrome,
            e: view,
            general_error,
            deny_error,
        },
    )
}

/// `GET /inbox/{id}`: one request with what I need to judge it.
pub(super) async fn entry(
    State(app): State<Shared>,
    Path(id): Path<String>,
    p: Person,
) -> Response {
    entry_page(&app, &p, &id, StatusCode::OK, None, None).await
}

/// `POST /inbox/{id}/approve` and `/deny`.
async fn decide(app: &App, id: &str, posted: Posted, approve: bool) -> Response {
    let Posted { person: p, form: f } = posted;
    let result = if approve {
        app.engine
            .approve(&p.caller, id, non_empty(text(&f, "comment")))
            .await
    } else {
        app.engine.deny(&p.caller, id, &text(&f, "reason")).await
    };
    match result {
        Ok(r) => {
            app.metrics.request(if !approve {
                RequestOutcome::Denied
            } else if r.grant_id.is_some() {
                RequestOutcome::Approved
            } else {
                RequestOutcome::ApprovalRecorded
            });
            see_other("/inbox")
        }
        Err(Error::Invalid { message, .. }) if !approve => {
            entry_page(app, &p, id, StatusCode::BAD_REQUEST, None, Some(message)).await
        }
        Err(e @ (Error::Invalid { .. } | Error::Forbidden { .. } | Error::Conflict { .. })) => {
            entry_page(
                app,
                &p,
                id,
                StatusCode::BAD_REQUEST,
                Some(e.to_string()),
                None,
            )
            .await
        }
        Err(e) => super::ApiError(e).into_response(),
    }
}

pub(super) async fn approve(
    State(app): State<Shared>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    decide(&app, &id, posted, true).await
}

pub(super) async fn deny(
    State(app): State<Shared>,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    decide(&app, &id, posted, false).await
}

/// `GET /approve/{id}`: where notifications link; the inbox entry (after sign-in).
pub(super) async fn approve_link(Path(id): Path<String>) -> Response {
    match RequestId::parse(&id) {
        Some(id) => see_other(&format!("/inbox/{id}")),
        None => see_other("/inbox"),
    }
}

pub(super) async fn css() -> Response {
    page_headers(
        CSS.into_response(),
        "text/css; charset=utf-8",
        HeaderValue::from_static(ASSET_CSP),
    )
}

pub(super) async fn js() -> Response {
    page_headers(
        JS.into_response(),
        "text/javascript; charset=utf-8",
        HeaderValue::from_static(ASSET_CSP),
    )
}
