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
    extract::{ConnectInfo, Query, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use hourglass_api::SessionView;
use hourglass_core::{
    engine::{SignIn, SignInAttempt, SignInOutcome, csrf_token, is_csrf_token},
    id::PrincipalId,
};
use secrecy::{ExposeSecret, SecretString};

use super::{ApiResult, Shared};
use crate::problem::{ApiError, problem};

/// How sessions are offered.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// The demo's pick-a-person sign-in (loopback only, checked at start).
    pub demo_sign_in: bool,
    /// `Secure` and the `__Host-` prefix (off only on a loopback listen address).
    pub secure_cookies: bool,
    /// The cookie's `Max-Age`: the session's absolute lifetime.
    pub session_secs: u64,
    /// The Content-Security-Policy of the app's pages (this server's script and style only).
    pub app_csp: HeaderValue,
    /// That of the sign-in pages (no script at all).
    pub signin_csp: HeaderValue,
}

/// The page policies: `form_action` is where forms may go, this server and, with single sign-on,
/// the provider's origin (a form that signs out here is redirected to its sign-out, and browsers
/// hold redirects after a form to `form-action` too).
pub fn page_policies(provider_origin: Option<&str>) -> (HeaderValue, HeaderValue) {
    let form_action = match provider_origin {
        Some(o) => format!("'self' {o}"),
        None => "'self'".to_owned(),
    };
    let app = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    let signin = format!(
        "default-src 'none'; style-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    (
        HeaderValue::from_str(&app).unwrap_or(HeaderValue::from_static("default-src 'none'")),
        HeaderValue::from_str(&signin).unwrap_or(HeaderValue::from_static("default-src 'none'")),
    )
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

    fn login_cookie_name(&self) -> &'static str {
        if self.secure_cookies {
            "__Host-hourglass-login"
        } else {
            "hourglass-login"
        }
    }

    /// The cookie that holds a login in flight (`SameSite=Lax`, so that the provider's
    /// redirect back, a top-level navigation, carries it).
    fn set_login_cookie(&self, value: &str) -> String {
        format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
            self.login_cookie_name(),
            crate::oidc::LOGIN_SECS,
            if self.secure_cookies { "; Secure" } else { "" }
        )
    }

    fn clear_login_cookie(&self) -> String {
        format!(
            "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
            self.login_cookie_name(),
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
    cookie(headers, web.cookie_name())
}

/// The value of the cookie `name`, if the request carries it.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
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

/// The headers every page and its assets carry: `csp`, a referrer for this server only, no
/// framing, no caching, no sniffing. (`same-origin`, not `no-referrer`: under `no-referrer`
/// browsers send `Origin: null` with a form, which the origin check rightly refuses.)
pub(super) fn page_headers(
    mut resp: Response,
    content_type: &'static str,
    csp: HeaderValue,
) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// `text` cut to `max` characters, printable ones only.
fn bounded(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// Whether the request names this server by a loopback name (`127.0.0.1`, `localhost`,
/// `[::1]`): a page on another name that was made to resolve to 127.0.0.1 (DNS rebinding)
/// sends its own name, and the demo's sign-in refuses it.
fn loopback_host(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let name = match host.rsplit_once(':') {
        Some((n, port)) if port.chars().all(|c| c.is_ascii_digit()) => n,
        _ => host,
    };
    matches!(name, "127.0.0.1" | "localhost" | "[::1]")
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
fn page(web: &WebSettings, status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Hourglass</title><link rel=\"stylesheet\" href=\"/static/app.css\"></head>\
         <body><main><h1>{}</h1>{body}</main></body></html>\n",
        esc(title),
        esc(title)
    );
    page_headers(
        (status, html).into_response(),
        "text/html; charset=utf-8",
        web.signin_csp.clone(),
    )
}

/// A `303` to `to`, setting each of `cookies`.
fn see_other(to: &str, cookies: &[String]) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// `GET /signin`: who is signed in, with a sign-out button; else how to sign in.
pub(super) async fn signin_page(
    State(app): State<Shared>,
    Query(q): Query<SigninQuery>,
    headers: HeaderMap,
) -> Response {
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
        return page(&app.web, StatusCode::OK, "Hourglass", &body);
    }
    let return_to = q.return_to.as_deref().unwrap_or("/");
    let sso = app.oidc.as_ref().map(|o| {
        let to: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
        format!(
            "<p><a class=\"button\" id=\"sso\" href=\"/signin/oidc?return_to={}\">{}</a></p>",
            esc(&to),
            esc(&o.settings.label)
        )
    });
    if !app.web.demo_sign_in {
        return page(
            &app.web,
            StatusCode::OK,
            "Sign in",
            &sso.unwrap_or_else(|| {
                "<p>No identity provider is configured for this server. Use the CLI or the API \
                 with an API key (<code>hourglass --token …</code>).</p>"
                    .to_owned()
            }),
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
                 <input type=\"hidden\" name=\"return_to\" value=\"{1}\">\
                 <button type=\"submit\">Sign in as {0}</button></form></li>",
                esc(p.as_str()),
                esc(&crate::oidc::local_path(return_to))
            )
        })
        .collect();
    page(
        &app.web,
        StatusCode::OK,
        "Sign in (demo)",
        &format!(
            "{}<p><strong>DEMO:</strong> anyone on this machine may sign in as anyone, with no \
             password. Never for production.</p><ul>{buttons}</ul>",
            sso.unwrap_or_default()
        ),
    )
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct SigninQuery {
    return_to: Option<String>,
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
    if !app.web.demo_sign_in || !peer.ip().is_loopback() || !loopback_host(&headers) {
        return Ok(problem(
            StatusCode::NOT_FOUND,
            hourglass_core::ErrorCode::RouteNotFound,
            "no such route",
            None,
        ));
    }
    if !same_origin(&headers) {
        return Ok(problem(
            StatusCode::FORBIDDEN,
            hourglass_core::ErrorCode::AuthCrossSite,
            "sign-in is posted from this server's own page only",
            None,
        ));
    }
    let name = form_field(&body, "principal").unwrap_or_default();
    let pid = PrincipalId::new(name.trim()).map_err(|m| {
        ApiError(hourglass_core::Error::invalid(
            hourglass_core::ErrorCode::SessionPrincipalInvalid,
            "principal",
            m,
        ))
    })?;
    let (id, _) = app
        .engine
        .start_session(&pid, false, "demo", Some(&peer.ip().to_string()))
        .await?;
    // The session the browser had before ends (a sign-in over another).
    if let Some(old) = session_cookie(&headers, &app.web) {
        app.engine.end_session(&SecretString::from(old)).await?;
    }
    // Back where the person was going (a path on this server only).
    let to = form_field(&body, "return_to")
        .map(|t| crate::oidc::local_path(&t))
        .filter(|t| t != "/")
        .unwrap_or_else(|| "/signin".to_owned());
    Ok(see_other(&to, &[app.web.set_cookie(&id)]))
}

/// `POST /signout`: ends the session everywhere (CSRF-checked) and clears the cookie.
pub(super) async fn signout(
    State(app): State<Shared>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(id) = session_cookie(&headers, &app.web) else {
        return see_other("/signin", &[app.web.clear_cookie()]);
    };
    let presented = form_field(&body, "csrf_token");
    if !csrf_ok(&method, &headers, &id, presented.as_deref()) {
        return problem(
            StatusCode::FORBIDDEN,
            hourglass_core::ErrorCode::AuthCsrf,
            "sign-out needs the page's CSRF token, from this server's own page",
            None,
        );
    }
    let via = match app.engine.session_caller(&id, None).await {
        Ok(Some((_, s))) => Some(s.via),
        _ => None,
    };
    if let Err(e) = app.engine.end_session(&SecretString::from(id)).await {
        return ApiError(e).into_response();
    }
    // Signed in through the provider: sign out there too, when it offers it.
    let at_provider = match (&app.oidc, via.as_deref()) {
        (Some(o), Some("oidc")) => o.logout_url().await,
        _ => None,
    };
    see_other(
        at_provider.as_deref().unwrap_or("/signin"),
        &[app.web.clear_cookie()],
    )
}

/// `GET /signin/oidc?return_to=…&step_up=1`: off to the identity provider, with a fresh login
/// cookie. A step-up asks the provider for a fresh sign-in with a second factor.
pub(super) async fn oidc_start(State(app): State<Shared>, Query(q): Query<StartQuery>) -> Response {
    let Some(oidc) = &app.oidc else {
        return page(
            &app.web,
            StatusCode::NOT_FOUND,
            "Sign in",
            "<p>No identity provider is configured for this server.</p>",
        );
    };
    match oidc
        .begin(q.return_to.as_deref().unwrap_or("/"), q.step_up.is_some())
        .await
    {
        Ok((url, login)) => see_other(&url, &[app.web.set_login_cookie(login.cookie_value())]),
        Err(r) => refusal_page(&app.web, &r),
    }
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct StartQuery {
    return_to: Option<String>,
    step_up: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn refusal_page(web: &WebSettings, r: &crate::oidc::Refusal) -> Response {
    let status = if r.unavailable {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::FORBIDDEN
    };
    let extra = if r.unavailable {
        "<p>Break-glass does not depend on the identity provider: with an API key, \
         <code>hourglass request ENTITLEMENT --break-glass --reason …</code> still works.</p>"
    } else {
        ""
    };
    page(
        web,
        status,
        "Sign-in refused",
        &format!(
            "<p>{}</p><p class=\"code\">{}</p>{extra}<p><a href=\"/signin\">Back to sign-in</a></p>",
            esc(&r.reason),
            esc(r.code)
        ),
    )
}

/// `GET /signin/callback`: the provider sends the person back with a code; the login is
/// checked against this browser's login cookie, the ID token verified, and a fresh session
/// started. Any refusal is audited and creates nothing.
pub(super) async fn oidc_callback(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(oidc) = &app.oidc else {
        return page(
            &app.web,
            StatusCode::NOT_FOUND,
            "Sign in",
            "<p>No identity provider is configured for this server.</p>",
        );
    };
    let ip = peer.ip().to_string();
    let clear = app.web.clear_login_cookie();
    let login =
        cookie(&headers, app.web.login_cookie_name()).and_then(|c| crate::oidc::Login::parse(&c));
    let result = match (&q.error, &q.code, &q.state) {
        // The provider's own words, bounded: the callback is a URL anyone can make.
        (Some(err), _, _) => Err(crate::oidc::Refusal {
            code: "sign_in.provider_refused",
            reason: format!(
                "the identity provider did not sign you in: {}{}",
                bounded(err, 64),
                q.error_description
                    .as_deref()
                    .map(|d| format!(" ({})", bounded(d, 200)))
                    .unwrap_or_default()
            ),
            unavailable: false,
        }),
        (None, Some(code), Some(state)) => match &login {
            // A finished login's callback again (before its code goes to the provider).
            Some(l) if app.engine.is_login_used(&l.used()).await.unwrap_or(true) => {
                Err(crate::oidc::Refusal {
                    code: "session.login_replayed",
                    reason: "this sign-in was already completed; start again".into(),
                    unavailable: false,
                })
            }
            _ => oidc.finish(login.as_ref(), state, code).await,
        },
        _ => Err(crate::oidc::Refusal {
            code: "sign_in.malformed",
            reason: "the provider's answer has no code or no state".into(),
            unavailable: false,
        }),
    };
    let vouched = match result {
        Ok(v) => v,
        Err(r) => {
            if let Err(e) = app
                .engine
                .refuse_sign_in(
                    r.code,
                    &r.reason,
                    SignInAttempt {
                        issuer: Some(oidc.issuer()),
                        ..SignInAttempt::default()
                    },
                    Some(&ip),
                )
                .await
            {
                return ApiError(e).into_response();
            }
            let mut resp = refusal_page(&app.web, &r);
            if let Ok(v) = HeaderValue::from_str(&clear) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            return resp;
        }
    };
    let replaces = session_cookie(&headers, &app.web);
    let outcome = app
        .engine
        .sign_in(SignIn {
            name: vouched.name,
            groups: vouched.groups,
            mfa: vouched.mfa,
            via: "oidc".into(),
            issuer: oidc.issuer().to_owned(),
            subject: vouched.subject,
            login: vouched.login,
            create_people: oidc.settings.create_people,
            replaces,
            source_ip: Some(ip),
        })
        .await;
    match outcome {
        Ok(SignInOutcome::Started(id, _)) => {
            see_other(&vouched.return_to, &[app.web.set_cookie(&id), clear])
        }
        Ok(SignInOutcome::Refused { code, reason }) => {
            let mut resp = refusal_page(
                &app.web,
                &crate::oidc::Refusal {
                    code,
                    reason,
                    unavailable: false,
                },
            );
            if let Ok(v) = HeaderValue::from_str(&clear) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) => ApiError(e).into_response(),
    }
}

/// `GET /v1/session`: who the session cookie stands for, and its CSRF token.
#[utoipa::path(get, path = "/v1/session", security(()), responses((status = 200, description = "The signed-in person of the session cookie, and the CSRF token that changes with it need", body = SessionView), (status = 401, description = "No live session cookie", body = hourglass_api::Problem, content_type = "application/problem+json")))]
pub(super) async fn session(State(app): State<Shared>, headers: HeaderMap) -> ApiResult<Response> {
    let none = || {
        problem(
            StatusCode::UNAUTHORIZED,
            hourglass_core::ErrorCode::AuthNoSession,
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
