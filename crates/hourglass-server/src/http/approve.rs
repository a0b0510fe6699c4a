//! The approval page that notifications link to. `GET /approve/{id}` only renders a page naming
//! the request: it reads nothing and changes nothing. The page asks the approver for their own
//! API token, shows the request through the API, and approves or denies only on a button press
//! (a `POST` with that token). Served with a strict Content-Security-Policy, no referrer, no
//! caching and no framing.

use axum::{
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use hourglass_core::id::RequestId;

const PAGE: &str = include_str!("approve/page.html");
const SCRIPT: &str = include_str!("approve/page.js");
const STYLE: &str = include_str!("approve/style.css");

fn with_headers(resp: Response, content_type: &'static str) -> Response {
    page_headers(
        resp,
        content_type,
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    )
}

/// The headers every page and its assets carry: `csp`, no referrer, no framing, no caching,
/// no sniffing.
pub(super) fn page_headers(
    mut resp: Response,
    content_type: &'static str,
    csp: &'static str,
) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

pub(super) async fn page(Path(id): Path<String>) -> Response {
    // Only a well-formed id is echoed into the page (it is hex after a fixed prefix).
    match RequestId::parse(&id) {
        Some(id) => with_headers(
            PAGE.replace("{{REQUEST_ID}}", id.as_str()).into_response(),
            "text/html; charset=utf-8",
        ),
        None => with_headers(
            (StatusCode::NOT_FOUND, "no such request link").into_response(),
            "text/plain; charset=utf-8",
        ),
    }
}

pub(super) async fn script() -> Response {
    with_headers(SCRIPT.into_response(), "text/javascript; charset=utf-8")
}

pub(super) async fn style() -> Response {
    with_headers(STYLE.into_response(), "text/css; charset=utf-8")
}
