//! Signing in with a browser: the session cookie, the CSRF check on everything that changes
//! state with it, the sign-in page, the demo's sign-in (pick a person, loopback only), sign-out,
//! and `GET /v1/session` (who the cookie stands for, and the CSRF token a page sends back).
//!
//! The session lives in the store (`Engine::start_session`); the cookie holds only its id:
//! `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure` with the `__Host-` prefix unless the server
//! listens on loopback (where browsers refuse `Secure` over plain HTTP). A sign-in always makes
//! a fresh id: a cookie planted before is ignored and replaced. A call with the cookie that is
//! not `GET` or `HEAD` needs the session's CSRF token (`X-CSRF-Token`, or the form's
//! `csrf_token`) and, when the browser says where it comes from (`Origin`), this server's own
//! origin.

use std::net::SocketAddr;

use axum::{
    Json,
    body::Bytes,
    extract::{ConnectInfo, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use hourglass_api::SessionView;
use hourglass_core::{
    engine::{csrf_token, is_csrf_token},
    id::PrincipalId,
};
use secrecy::{ExposeSecret, SecretString};

use super::{ApiResult, Shared};
use crate::problem::{ApiError, problem};

/// How sessions are offered.
#[derive(Debug, Clone, Copy)]
pub struct WebSettings {
    /// The demo's pick-a-person sign-in (loopback only, checked at start).
    pub demo_sign_in: bool,
    /// `Secure` and the `__Host-` prefix (off only on a loopback listen address).
    pub secure_cookies: bool,
    /// The cookie's `Max-Age`: the session's absolute lifetime.
    pub session_secs: u64,
}

impl WebSettings {
    fn cookie_name(&self) -> &'static str {
        if self.secure_cookies {
            "__Host-hourglass-session"
        } else {
            "hourglass-session"
        }
    }

    fn set_cookie(&self, id: &SecretString) -> String {
        format!(
            "{}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
            self.cookie_name(),
            id.expose_secret(),
            self.session_secs,
            if self.secure_cookies { "; Secure" } else { "" }
        )
    }

    fn clear_cookie(&self) -> String {
        format!(
            "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
            self.cookie_name(),
            if self.secure_cookies { "; Secure" } else { "" }
        )
    }
}

/// The session id the request's cookie carries, if any.
pub(super) fn session_cookie(headers: &HeaderMap, web: &WebSettings) -> Option<String> {
    let name = web.cookie_name();
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether a request with a session cookie may change state: a safe method, or the session's
/// CSRF token (header or `presented`) and, if the browser names one, our own origin.
pub(super) fn csrf_ok(
    method: &Method,
    headers: &HeaderMap,
    id: &str,
    presented: Option<&str>,
) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    same_origin(headers)
        && headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .or(presented)
            .is_some_and(|t| is_csrf_token(id, t))
}

/// Whether the `Origin` header, when present, is this server (its host and port as the request
/// names them). Browsers send it on every cross-site and same-site `POST`.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && rest == host)
}

/// HTML-escapes text for a page.
fn esc(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// A page with the headers every page carries: a strict CSP with no script at all, no framing,
/// no referrer, no caching.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Hourglass</title><link rel=\"stylesheet\" href=\"/approve/style.css\"></head>\
         <body><main><h1>{}</h1>{body}</main></body></html>\n",
        esc(title),
        esc(title)
    );
    super::approve::page_headers(
        (status, html).into_response(),
        "text/html; charset=utf-8",
        "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    )
}

fn see_other(to: &'static str, cookie: String) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `GET /signin`: who is signed in, with a sign-out button; else how to sign in.
pub(super) async fn signin_page(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers, &app.web)
        && let Ok(Some((caller, session))) = app.engine.session_caller(&id, None).await
    {
        let body = format!(
            "<p>Signed in as <strong>{}</strong> ({}{}), until {}.</p>\
             <form method=\"post\" action=\"/signout\">\
             <input type=\"hidden\" name=\"csrf_token\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form>",
            esc(caller.principal.id.as_str()),
            esc(&session.via),
            if session.mfa {
                ", with a second factor"
            } else {
                ""
            },
            esc(&session.expires_at.to_string()),
            esc(&csrf_token(&id)),
        );
        return page(StatusCode::OK, "Hourglass", &body);
    }
    if !app.web.demo_sign_in {
        return page(
            StatusCode::OK,
            "Sign in",
            "<p>No identity provider is configured for this server. Use the CLI or the API with \
             an API key (<code>hourglass --token …</code>).</p>",
        );
    }
    let people = match app.engine.people().await {
        Ok(p) => p,
        Err(e) => return ApiError(e).into_response(),
    };
    let buttons: String = people
        .iter()
        .map(|p| {
            format!(
                "<li><form method=\"post\" action=\"/signin/demo\">\
                 <input type=\"hidden\" name=\"principal\" value=\"{0}\">\
                 <button type=\"submit\">Sign in as {0}</button></form></li>",
                esc(p.as_str())
            )
        })
        .collect();
    page(
        StatusCode::OK,
        "Sign in (demo)",
        &format!(
            "<p><strong>DEMO:</strong> anyone on this machine may sign in as anyone, with no \
             password. Never for production.</p><ul>{buttons}</ul>"
        ),
    )
}

/// The `principal` field of a form body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `POST /signin/demo`: the demo's sign-in (a person picked on the page), loopback only.
pub(super) async fn demo_signin(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    if !app.web.demo_sign_in || !peer.ip().is_loopback() {
        return Ok(problem(
            StatusCode::NOT_FOUND,
            "route.not_found",
            "no such route",
            None,
        ));
    }
    if !same_origin(&headers) {
        return Ok(problem(
            StatusCode::FORBIDDEN,
            "auth.cross_site",
            "sign-in is posted from this server's own page only",
            None,
        ));
    }
    let name = form_field(&body, "principal").unwrap_or_default();
    let pid = PrincipalId::new(name.trim()).map_err(|m| {
        ApiError(hourglass_core::Error::invalid(
            "session.principal_invalid",
            "principal",
            m,
        ))
    })?;
    let (id, _) = app
        .engine
        .start_session(&pid, false, "demo", Some(&peer.ip().to_string()))
        .await?;
    Ok(see_other("/signin", app.web.set_cookie(&id)))
}

/// `POST /signout`: ends the session everywhere (CSRF-checked) and clears the cookie.
pub(super) async fn signout(
    State(app): State<Shared>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(id) = session_cookie(&headers, &app.web) else {
        return see_other("/signin", app.web.clear_cookie());
    };
    let presented = form_field(&body, "csrf_token");
    if !csrf_ok(&method, &headers, &id, presented.as_deref()) {
        return problem(
            StatusCode::FORBIDDEN,
            "auth.csrf",
            "sign-out needs the page's CSRF token, from this server's own page",
            None,
        );
    }
    match app.engine.end_session(&SecretString::from(id)).await {
        Ok(_) => see_other("/signin", app.web.clear_cookie()),
        Err(e) => ApiError(e).into_response(),
    }
}

/// `GET /v1/session`: who the session cookie stands for, and its CSRF token.
#[utoipa::path(get, path = "/v1/session", security(()), responses((status = 200, description = "The signed-in person of the session cookie, and the CSRF token that changes with it need", body = SessionView), (status = 401, description = "No live session cookie", body = hourglass_api::Problem, content_type = "application/problem+json")))]
pub(super) async fn session(State(app): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    let none = || {
        problem(
            StatusCode::UNAUTHORIZED,
            "auth.no_session",
            "not signed in (no live session cookie)",
            None,
        )
    };
    let Some(id) = session_cookie(&headers, &app.web) else {
        return Ok(none());
    };
    let Some((caller, s)) = app.engine.session_caller(&id, None).await? else {
        return Ok(none());
    };
    let mut resp = Json(SessionView {
        principal: caller.principal.id.to_string(),
        mfa: s.mfa,
        via: s.via,
        expires_at: s.expires_at.to_string(),
        csrf_token: csrf_token(&id),
    })
    .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
