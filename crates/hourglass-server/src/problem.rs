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
    let body = Problem {
        kind: format!("https://hourglass.dev/problems/{code}"),
        title: status.canonical_reason().unwrap_or("error").to_owned(),
        status: status.as_u16(),
        detail: detail.into(),
        code: code.as_str().to_owned(),
        field: field.map(str::to_owned),
        trace_id: None,
    };
    let mut resp = (status, serde_json::to_string(&body).unwrap_or_default()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let code = e.code();
        match e {
            Error::Invalid { field, message, .. } => {
                problem(StatusCode::BAD_REQUEST, code, message, Some(field))
            }
            Error::NotFound { message, .. } => problem(StatusCode::NOT_FOUND, code, message, None),
            Error::Forbidden { message, .. } => problem(StatusCode::FORBIDDEN, code, message, None),
            Error::Conflict { message, .. } => problem(StatusCode::CONFLICT, code, message, None),
            Error::Limited { message, .. } => {
                problem(StatusCode::TOO_MANY_REQUESTS, code, message, None)
            }
            Error::Upstream { message, .. } => {
                problem(StatusCode::SERVICE_UNAVAILABLE, code, message, None)
            }
            Error::StoreConflict => problem(
                StatusCode::CONFLICT,
                code,
                "a concurrent change got there first; try again",
                None,
            ),
            Error::Unavailable(detail) => {
                tracing::error!(%detail, "dependency unavailable");
                problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    code,
                    "the service cannot reach its store; try again",
                    None,
                )
            }
            Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    code,
                    "internal error; the server log has the details",
                    None,
                )
            }
        }
    }
}
