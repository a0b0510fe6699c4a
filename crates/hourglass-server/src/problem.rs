//! Errors → `application/problem+json`, in one exhaustive match. Internal detail goes to the
//! log; the client gets the stable code, a safe message and the request id to quote.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use hourglass_api::{PROBLEM_JSON, Problem};
use hourglass_core::Error;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

/// A problem response with its status.
pub fn problem(
    status: StatusCode,
    code: hourglass_core::ErrorCode,
    detail: impl Into<String>,
    field: Option<&str>,
) -> Response {
    let body = body(status, code, detail.into(), field);
    let mut resp = (status, serde_json::to_string(&body).unwrap_or_default()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = problem_of(self.0);
        let mut resp = (status, serde_json::to_string(&body).unwrap_or_default()).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        resp
    }
}

/// The problem an error is, with its status: what a client is told (internal detail goes to
/// the log). The API's responses and the MCP tools' refusals both come from here.
pub fn problem_of(e: Error) -> (StatusCode, Problem) {
    let code = e.code();
    let (status, detail, field) = match e {
        Error::Invalid { field, message, .. } => (StatusCode::BAD_REQUEST, message, Some(field)),
        Error::NotFound { message, .. } => (StatusCode::NOT_FOUND, message, None),
        Error::Forbidden { message, .. } => (StatusCode::FORBIDDEN, message, None),
        Error::Conflict { message, .. } => (StatusCode::CONFLICT, message, None),
        Error::Limited { message, .. } => (StatusCode::TOO_MANY_REQUESTS, message, None),
        Error::Upstream { message, .. } => (StatusCode::SERVICE_UNAVAILABLE, message, None),
        Error::StoreConflict => (
            StatusCode::CONFLICT,
            "a concurrent change got there first; try again".to_owned(),
            None,
        ),
        Error::Unavailable(detail) => {
            tracing::error!(%detail, "dependency unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the service cannot reach its store; try again".to_owned(),
                None,
            )
        }
        Error::Internal(detail) => {
            tracing::error!(%detail, "internal error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; the server log has the details".to_owned(),
                None,
            )
        }
    };
    (status, body(status, code, detail, field))
}

fn body(
    status: StatusCode,
    code: hourglass_core::ErrorCode,
    detail: String,
    field: Option<&str>,
) -> Problem {
    Problem {
        kind: format!("https://hourglass.dev/problems/{code}"),
        title: status.canonical_reason().unwrap_or("error").to_owned(),
        status: status.as_u16(),
        detail,
        code: code.as_str().to_owned(),
        field: field.map(str::to_owned),
        trace_id: None,
    }
}
