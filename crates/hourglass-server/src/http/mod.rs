//! The HTTP API. A handler authenticates, parses and validates into domain input, calls one
//! engine use case and maps the result; it never calls a connector.

mod admin;
mod app;
mod app_admin;
mod app_reviews;
mod campaigns;
mod contract;
mod events;
mod identities;
mod mcp;
mod reviews;
mod scim;
mod slack;
mod tickets;
mod token;
pub(crate) mod web;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use hourglass_api::{
    ApproveBody, AuditEventView, CreateRequest, CredentialView, DenyBody, DriftView, ExtendBody,
    GrantView, List, PROBLEM_JSON, Problem, ReconcileView, RequestView, RevokeBody, StandingView,
    TargetStandingView, WhoAmI,
};
use hourglass_core::{
    Error,
    engine::{AuthRefusal, AuthVia, Caller, Charge, NewRequest, seconds_to_next_minute},
    grant::GrantState,
    request::RequestState,
};
use hourglass_tokens::Purpose;
use secrecy::ExposeSecret;
use serde::{Deserialize, de::DeserializeOwned};
use tower_http::{limit::RequestBodyLimitLayer, timeout::TimeoutLayer, trace::TraceLayer};

use crate::{
    App,
    metrics::{AuthOutcome, RequestOutcome},
    problem::{ApiError, problem},
    views,
    workers::TargetTask,
};

type Shared = Arc<App>;
type ApiResult<T> = Result<T, ApiError>;

/// The router with every route and layer.
pub fn router(app: Shared) -> Router {
    let api = Router::new()
        .route("/v1/requests", post(create_request).get(list_requests))
        .route("/v1/requests/{id}", get(get_request))
        .route("/v1/requests/{id}/approve", post(approve))
        .route("/v1/requests/{id}/deny", post(deny))
        .route("/v1/requests/{id}/cancel", post(cancel))
        .route("/v1/grants", get(list_grants))
        .route("/v1/grants/{id}", get(get_grant))
        .route("/v1/grants/{id}/revoke", post(revoke))
        .route("/v1/grants/{id}/extend", post(extend))
        .route("/v1/grants/{id}/credential", get(credential))
        .route("/v1/whoami", get(whoami))
        .route("/v1/catalogue", get(catalogue))
        .route("/v1/audit", get(audit))
        .route("/v1/admin/reconcile", post(reconcile))
        .route("/v1/admin/policies/reload", post(admin::reload_policies))
        .route("/v1/reports/standing", get(standing))
        .route("/v1/reports/revocation-debt", get(revocation_debt))
        .route("/v1/why", get(why))
        .route("/v1/reports/elevations", get(elevations))
        .route("/v1/ssh/krl", get(ssh_krl))
        .route(
            "/v1/identities",
            get(identities::list_identities).post(identities::create_identity),
        )
        .route("/v1/identities/{name}/suspend", post(identities::suspend))
        .route("/v1/identities/{name}/resume", post(identities::resume))
        .route("/v1/identities/{name}/offboard", post(identities::offboard))
        .route("/v1/token", post(token::exchange))
        .route("/.well-known/jwks.json", get(token::jwks))
        .route("/v1/keys", post(identities::create_key))
        .route("/v1/keys/{id}/rotate", post(identities::rotate_key))
        .route("/v1/keys/{id}/revoke", post(identities::revoke_key))
        .route("/v1/reports/identities", get(identities::identity_report))
        .route("/v1/campaigns", get(campaigns::list).post(campaigns::start))
        .route("/v1/campaigns/mine", get(campaigns::mine))
        .route("/v1/campaigns/{id}", get(campaigns::details))
        .route("/v1/campaigns/items/{id}/decide", post(campaigns::decide))
        .route("/v1/reviews", get(reviews::list_reviews))
        .route("/v1/reviews/{id}/close", post(reviews::close_review))
        .route(
            "/v1/tickets/sources/{name}/tickets/{reference}/reopen",
            post(tickets::reopen),
        )
        .route("/signin", get(web::signin_page))
        .route("/signin/demo", post(web::demo_signin))
        .route("/signin/oidc", get(web::oidc_start))
        .route("/signin/callback", get(web::oidc_callback))
        .route("/signout", post(web::signout))
        .route("/v1/session", get(web::session))
        .route("/v1/events", get(events::events))
        .route("/", get(app::home))
        .route("/request", get(app::catalogue))
        .route("/request/new", get(app::ask_form).post(app::ask))
        .route("/mine", get(app::mine))
        .route("/mine/grants/{id}/release", post(app::release))
        .route("/mine/grants/{id}/extend", post(app::extend))
        .route("/mine/grants/{id}/credential", post(app::reveal))
        .route("/mine/requests/{id}/cancel", post(app::cancel))
        .route("/inbox", get(app::inbox))
        .route("/inbox/{id}", get(app::entry))
        .route("/inbox/reviews/{id}/close", post(app::close_review))
        .route("/inbox/{id}/approve", post(app::approve))
        .route("/inbox/{id}/deny", post(app::deny))
        .route("/approve/{id}", get(app::approve_link))
        .route("/admin", get(app_admin::audit))
        .route("/admin/verify", post(app_admin::verify))
        .route("/admin/grants", get(app_admin::grants))
        .route("/admin/grants/{id}/revoke", post(app_admin::revoke))
        .route("/admin/identities", get(app_admin::identities))
        .route("/admin/identities/{name}/keys", post(app_admin::new_key))
        .route(
            "/admin/identities/{name}/{what}",
            post(app_admin::identity_status),
        )
        .route("/admin/reports", get(app_admin::reports))
        .route("/admin/reports/evidence", get(app_admin::evidence))
        .route("/admin/explain", get(app_admin::explain))
        .route("/admin/why", get(app_admin::why))
        .route(
            "/admin/campaigns",
            get(app_reviews::campaigns).post(app_reviews::start),
        )
        .route("/reviews", get(app_reviews::mine))
        .route("/reviews/{id}", get(app_reviews::campaign))
        .route("/reviews/items/{id}", post(app_reviews::decide))
        .route("/static/app.css", get(app::css))
        .route("/static/app.js", get(app::js))
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            problem(
                StatusCode::NOT_FOUND,
                hourglass_core::ErrorCode::RouteNotFound,
                "no such route",
                None,
            )
        });
    // Ticket systems post whole issues (Jira's include every field and the changelog): a larger
    // limit for their events only.
    let chat = Router::new()
        .route("/slack/{name}/interactions", post(slack::interactions))
        .route("/slack/{name}/options", post(slack::interactions))
        .route("/slack/{name}/commands", post(slack::commands));
    // Directories push whole groups (a thousand members in one PATCH): a larger limit.
    let scim = Router::new()
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(scim::service_provider_config),
        )
        .route("/scim/v2/ResourceTypes", get(scim::resource_type_list))
        .route("/scim/v2/ResourceTypes/{id}", get(scim::resource_type_one))
        .route("/scim/v2/Schemas", get(scim::schema_list))
        .route("/scim/v2/Schemas/{id}", get(scim::schema_one))
        .route("/scim/v2/{kind}", get(scim::list).post(scim::create))
        .route(
            "/scim/v2/{kind}/{id}",
            get(scim::get_one)
                .put(scim::replace)
                .patch(scim::patch)
                .delete(scim::delete),
        )
        .layer(RequestBodyLimitLayer::new(4 * 1024 * 1024));
    let ticket_events = Router::new()
        .route("/v1/tickets/events", post(tickets::generic_event))
        .route(
            "/v1/tickets/sources/{name}/events",
            post(tickets::source_event),
        )
        .layer(RequestBodyLimitLayer::new(1024 * 1024));
    api.merge(mcp::routes(&app))
        .layer(RequestBodyLimitLayer::new(64 * 1024))
        .merge(ticket_events)
        .merge(scim)
        .merge(chat.layer(RequestBodyLimitLayer::new(1024 * 1024)))
        // Inside the id: the request's span (and so every log line of it) names its trace id.
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let trace_id = req
                .headers()
                .get(TRACE_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", method = %req.method(), uri = %req.uri().path(), trace_id)
        }))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), request_id))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .with_state(app)
}

/// The header that carries an exchange's trace id.
const TRACE_HEADER: &str = "x-request-id";

/// Gives every exchange a trace id before anything else runs: set on the request (so the
/// request's span and every log line in it carry it), returned as `x-request-id`, and put into
/// problem bodies as `trace_id`. An id the client sent is replaced: log correlation must not be
/// steered from outside.
async fn request_id(State(app): State<Shared>, mut req: Request, next: Next) -> Response {
    let id = hourglass_core::id::random_hex::<8>().unwrap_or_default();
    let value = HeaderValue::from_str(&id).ok();
    req.headers_mut().remove(TRACE_HEADER);
    if let Some(v) = &value {
        req.headers_mut().insert(TRACE_HEADER, v.clone());
    }
    let mut resp = next.run(req).await;
    if resp.status().is_server_error() {
        app.metrics.http_error();
    }
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    if is_problem {
        let (mut parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 64 * 1024)
            .await
            .unwrap_or_default();
        let body = match serde_json::from_slice::<Problem>(&bytes) {
            Ok(mut p) => {
                p.trace_id = Some(id.clone());
                serde_json::to_vec(&p).unwrap_or_else(|_| bytes.to_vec())
            }
            Err(_) => bytes.to_vec(),
        };
        parts.headers.remove(header::CONTENT_LENGTH);
        resp = Response::from_parts(parts, axum::body::Body::from(body));
    }
    if let Some(v) = value {
        resp.headers_mut().insert(TRACE_HEADER, v);
    }
    resp
}

/// The server's address as clients reach it: `notifications.public_url`, else this request's
/// `Host` (SCIM's `meta.location`, the MCP resource).
pub(crate) fn public_base(app: &App, headers: &HeaderMap) -> String {
    app.public_base.clone().unwrap_or_else(|| {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    })
}

/// Audits a refused key or token within the refusal budget and answers `refused` (a 401), or
/// 429 `auth.throttled` with `Retry-After` once the caller's address is over its budget this
/// minute. A valid key or token is never throttled: only refusals are charged, so nobody
/// behind the same address is locked out by someone else's guesses.
pub(crate) async fn auth_refused(
    app: &Shared,
    refusal: AuthRefusal,
    source_ip: Option<&str>,
    refused: Response,
) -> Response {
    let via = refusal.via;
    match app.engine.record_auth_refusal(refusal, source_ip).await {
        Ok(Charge::Over) => {
            app.metrics.auth_refused(via, AuthOutcome::Throttled);
            let wait = seconds_to_next_minute(app.engine.clock().now());
            let mut r = problem(
                StatusCode::TOO_MANY_REQUESTS,
                hourglass_core::ErrorCode::AuthThrottled,
                format!("too many refused keys or tokens from this address; retry in {wait} s"),
                None,
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
            r
        }
        Ok(_) => {
            app.metrics.auth_refused(via, AuthOutcome::Refused);
            refused
        }
        Err(e) => ApiError(e).into_response(),
    }
}

/// The address a request came from (the TCP peer; no proxy header is trusted).
pub(crate) struct Peer(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string()),
        ))
    }
}

/// The authenticated caller.
pub struct Authed(pub Caller);

impl FromRequestParts<Shared> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> Result<Self, Self::Rejection> {
        let unauthorized = |code: hourglass_core::ErrorCode, detail: &str| {
            let mut r = problem(StatusCode::UNAUTHORIZED, code, detail, None);
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        };
        let source_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        let Some(value) = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            // A browser's session cookie; what changes state needs the session's CSRF token.
            if let Some(id) = web::session_cookie(&parts.headers, &app.web) {
                let Some((caller, _)) = app
                    .engine
                    .session_caller(&id, source_ip)
                    .await
                    .map_err(|e| ApiError(e).into_response())?
                else {
                    return Err(unauthorized(
                        hourglass_core::ErrorCode::AuthSessionEnded,
                        "the session has ended; sign in again",
                    ));
                };
                if !web::csrf_ok(&parts.method, &parts.headers, &id, None) {
                    return Err(problem(
                        StatusCode::FORBIDDEN,
                        hourglass_core::ErrorCode::AuthCsrf,
                        "a change with a session needs its CSRF token (X-CSRF-Token) from this server's own pages",
                        None,
                    ));
                }
                return Ok(Authed(caller));
            }
            return Err(unauthorized(
                hourglass_core::ErrorCode::AuthMissing,
                "send Authorization: Bearer <token>, or sign in",
            ));
        };
        let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        else {
            return Err(unauthorized(
                hourglass_core::ErrorCode::AuthScheme,
                "use the Bearer scheme",
            ));
        };
        // A person's JWT from an issuer that opted in (`api_audience`), with its MFA facts; else
        // an Hourglass API key. A token for exchange or delegation is never a session, and no
        // workload or agent signs in this way (they exchange, and every grant records who acted).
        if token.matches('.').count() == 2 && !app.workload.issuers.is_empty() {
            let now = app.engine.clock().now();
            let v = match app
                .workload
                .issuers
                .verify(token, now.unix_millis() / 1000, Purpose::ApiBearer)
                .await
            {
                Ok(v) => v,
                Err(r) => {
                    tracing::info!(code = r.code, reason = %r.reason, "bearer JWT refused");
                    let refusal = AuthRefusal {
                        issuer: token::peek_iss(token),
                        ..AuthRefusal::new(
                            AuthVia::Api,
                            hourglass_core::ErrorCode::AuthInvalid,
                            format!("{}: {}", r.code, r.reason),
                        )
                    };
                    let refused = unauthorized(
                        hourglass_core::ErrorCode::AuthInvalid,
                        "the token is not valid",
                    );
                    return Err(auth_refused(app, refusal, source_ip.as_deref(), refused).await);
                }
            };
            let bearer = hourglass_core::engine::BearerToken {
                principal: v.principal.clone(),
                issuer_url: v.issuer.clone(),
                jti: v.jti.clone(),
                carries_act: v.act.is_some(),
                mfa: v.mfa,
            };
            return match app.engine.bearer_caller(&bearer, source_ip.clone()).await {
                Ok(Ok(caller)) => Ok(Authed(caller)),
                Ok(Err((code, detail))) => {
                    tracing::info!(code = code.as_str(), issuer = %v.issuer_name, subject = %v.subject, "bearer JWT refused");
                    let refusal = AuthRefusal {
                        issuer: Some(v.issuer_name.clone()),
                        subject: Some(v.subject.clone()),
                        ..AuthRefusal::new(AuthVia::Api, code, detail)
                    };
                    let refused = unauthorized(code, detail);
                    Err(auth_refused(app, refusal, source_ip.as_deref(), refused).await)
                }
                Err(e) => Err(ApiError(e).into_response()),
            };
        }
        let principal = match app.engine.authenticate_key(token).await {
            Ok(Ok(p)) => p,
            Ok(Err(key)) => {
                let refused = unauthorized(
                    hourglass_core::ErrorCode::AuthInvalid,
                    "the token is not valid",
                );
                let refusal = AuthRefusal::key(AuthVia::Api, key);
                return Err(auth_refused(app, refusal, source_ip.as_deref(), refused).await);
            }
            Err(e) => return Err(ApiError(e).into_response()),
        };
        Ok(Authed(Caller {
            principal,
            mfa: false,
            source_ip,
            on_behalf_of: None,
        }))
    }
}

/// A JSON body whose errors name the offending field.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Shared> for Body<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Shared) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            problem(
                StatusCode::BAD_REQUEST,
                hourglass_core::ErrorCode::BodyUnreadable,
                e.body_text(),
                None,
            )
        })?;
        let bytes = if bytes.is_empty() {
            Bytes::from_static(b"{}")
        } else {
            bytes
        };
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map(Body).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // serde names unknown and missing fields in its message; the path covers the rest.
            let field = if path == "." {
                inner.split('`').nth(1).map(str::to_owned)
            } else {
                Some(path)
            };
            problem(
                StatusCode::BAD_REQUEST,
                hourglass_core::ErrorCode::BodyInvalid,
                format!("malformed body: {inner}"),
                field.as_deref(),
            )
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    after: Option<u64>,
    limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    pub(crate) state: Option<String>,
    pub(crate) limit: Option<u32>,
}

/// A number from the query: `default` when absent, refused outside `1..=max` (the document
/// states the same bounds, `contract.rs`).
pub(crate) fn bounded<T>(field: &'static str, q: Option<T>, default: T, max: T) -> ApiResult<T>
where
    T: Copy + PartialOrd + From<u8> + std::fmt::Display,
{
    match q {
        None => Ok(default),
        Some(n) if n >= T::from(1) && n <= max => Ok(n),
        Some(n) => Err(ApiError(Error::invalid(
            hourglass_core::ErrorCode::QueryInvalid,
            field,
            format!("{field} {n} is not between 1 and {max}"),
        ))),
    }
}

/// A page size from the query (`limit`).
pub(crate) fn page_limit(q: Option<u32>, default: u32, max: u32) -> ApiResult<u32> {
    bounded("limit", q, default, max)
}

pub(crate) fn parse_state<T>(
    s: Option<&str>,
    parse: impl Fn(&str) -> Option<T>,
) -> ApiResult<Option<T>> {
    match s {
        None => Ok(None),
        Some(s) => parse(s).map(Some).ok_or_else(|| {
            ApiError(Error::invalid(
                hourglass_core::ErrorCode::QueryStateUnknown,
                "state",
                format!("unknown state {s:?}"),
            ))
        }),
    }
}

pub(crate) fn query<T: DeserializeOwned>(q: Option<&str>) -> ApiResult<T> {
    serde_urlencoded_from(q.unwrap_or(""))
}

fn serde_urlencoded_from<T: DeserializeOwned>(q: &str) -> ApiResult<T> {
    Query::<T>::try_from_uri(&format!("/?{q}").parse().map_err(|_| {
        ApiError(Error::invalid(
            hourglass_core::ErrorCode::QueryInvalid,
            "query",
            "malformed query",
        ))
    })?)
    .map(|Query(v)| v)
    .map_err(|e| {
        ApiError(Error::invalid(
            hourglass_core::ErrorCode::QueryInvalid,
            "query",
            e.body_text(),
        ))
    })
}

#[utoipa::path(post, path = "/v1/requests", request_body = CreateRequest, responses((status = 201, description = "Created: pending, or fulfilled when policy approved it", body = RequestView), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json")))]
async fn create_request(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Body(body): Body<CreateRequest>,
) -> ApiResult<Response> {
    let view = submit(&app, &caller, body).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Asks for access as `caller` (the API and the MCP tools), counted in the metrics.
pub(crate) async fn submit(
    app: &App,
    caller: &Caller,
    body: CreateRequest,
) -> ApiResult<RequestView> {
    let result = app
        .engine
        .submit(
            caller,
            NewRequest {
                entitlement: body.entitlement,
                duration: body.duration,
                reason: body.reason,
                ticket: body.ticket,
                task: body.task,
                public_key: body.public_key,
                break_glass: body.break_glass,
                starts_at: body.starts_at,
            },
        )
        .await;
    let r = match result {
        Ok(r) => r,
        Err(e) => {
            app.metrics
                .request(if matches!(e, Error::Forbidden { .. }) {
                    RequestOutcome::Refused
                } else {
                    RequestOutcome::Invalid
                });
            return Err(e.into());
        }
    };
    app.metrics
        .request(match (r.break_glass, r.grant_id.is_some()) {
            (true, _) => RequestOutcome::BreakGlass,
            (false, true) => RequestOutcome::AutoApproved,
            (false, false) => RequestOutcome::Pending,
        });
    let details = app.engine.request_details(caller, r.id.as_str()).await?;
    Ok(views::details(&details))
}

#[utoipa::path(get, path = "/v1/requests", params(("state" = Option<String>, Query, description = "pending|approved|fulfilled|denied|cancelled|expired|failed"), ("limit" = Option<u32>, Query, description = "1-500, default 100")), responses((status = 200, description = "Requests the caller may see, newest first", body = List<RequestView>), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json")))]
async fn list_requests(
    State(app): State<Shared>,
    Authed(caller): Authed,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    let q: ListQuery = query(uri.query())?;
    let state = parse_state(q.state.as_deref(), RequestState::parse)?;
    let items = app
        .engine
        .list_requests(&caller, state, page_limit(q.limit, 100, 500)?)
        .await?;
    Ok(Json(List {
        items: items.iter().map(views::request).collect(),
    })
    .into_response())
}

#[utoipa::path(get, path = "/v1/requests/{id}", params(("id" = String, Path, description = "prefixed id")), responses((status = 200, description = "The request with its approvals and grant", body = RequestView), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to the caller)", body = Problem, content_type = "application/problem+json")))]
async fn get_request(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let d = app.engine.request_details(&caller, &id).await?;
    Ok(Json(views::details(&d)).into_response())
}

#[utoipa::path(post, path = "/v1/requests/{id}/approve", params(("id" = String, Path, description = "prefixed id")), request_body = ApproveBody, responses((status = 200, description = "Approval recorded; fulfilled at quorum", body = RequestView), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to the caller)", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Not in a state that allows this", body = Problem, content_type = "application/problem+json")))]
async fn approve(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Body(body): Body<ApproveBody>,
) -> ApiResult<Response> {
    let r = app.engine.approve(&caller, &id, body.comment).await?;
    if r.grant_id.is_some() {
        app.metrics.request(RequestOutcome::Approved);
    }
    let d = app.engine.request_details(&caller, r.id.as_str()).await?;
    Ok(Json(views::details(&d)).into_response())
}

#[utoipa::path(post, path = "/v1/requests/{id}/deny", params(("id" = String, Path, description = "prefixed id")), request_body = DenyBody, responses((status = 200, description = "Denied", body = RequestView), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to the caller)", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Not in a state that allows this", body = Problem, content_type = "application/problem+json")))]
async fn deny(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Body(body): Body<DenyBody>,
) -> ApiResult<Response> {
    let r = app.engine.deny(&caller, &id, &body.reason).await?;
    app.metrics.request(RequestOutcome::Denied);
    let d = app.engine.request_details(&caller, r.id.as_str()).await?;
    Ok(Json(views::details(&d)).into_response())
}

#[utoipa::path(post, path = "/v1/requests/{id}/cancel", params(("id" = String, Path, description = "prefixed id")), responses((status = 200, description = "Cancelled", body = RequestView), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to the caller)", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Not in a state that allows this", body = Problem, content_type = "application/problem+json")))]
async fn cancel(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let r = app.engine.cancel(&caller, &id).await?;
    app.metrics.request(RequestOutcome::Cancelled);
    let d = app.engine.request_details(&caller, r.id.as_str()).await?;
    Ok(Json(views::details(&d)).into_response())
}

#[utoipa::path(get, path = "/v1/grants", params(("state" = Option<String>, Query, description = "provisioning|active|revoking|revoked|failed"), ("limit" = Option<u32>, Query, description = "1-500, default 100")), responses((status = 200, description = "Grants the caller may see, newest first", body = List<GrantView>), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json")))]
async fn list_grants(
    State(app): State<Shared>,
    Authed(caller): Authed,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    let q: ListQuery = query(uri.query())?;
    let state = parse_state(q.state.as_deref(), GrantState::parse)?;
    let items = app
        .engine
        .list_grants(&caller, state, page_limit(q.limit, 100, 500)?)
        .await?;
    Ok(Json(List {
        items: items.iter().map(views::grant).collect(),
    })
    .into_response())
}

#[utoipa::path(get, path = "/v1/grants/{id}", params(("id" = String, Path, description = "prefixed id")), responses((status = 200, description = "The grant", body = GrantView), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to the caller)", body = Problem, content_type = "application/problem+json")))]
async fn get_grant(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let g = app.engine.grant(&caller, &id).await?;
    Ok(Json(views::grant(&g)).into_response())
}

#[utoipa::path(post, path = "/v1/grants/{id}/revoke", params(("id" = String, Path, description = "prefixed id")), request_body = RevokeBody, responses((status = 200, description = "Revocation scheduled (state revoking)", body = GrantView), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to the caller)", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Not in a state that allows this", body = Problem, content_type = "application/problem+json")))]
async fn revoke(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Body(body): Body<RevokeBody>,
) -> ApiResult<Response> {
    let g = app.engine.revoke(&caller, &id, body.reason).await?;
    Ok(Json(views::grant(&g)).into_response())
}

#[utoipa::path(post, path = "/v1/grants/{id}/extend", params(("id" = String, Path, description = "grt_…")), request_body = ExtendBody, responses((status = 201, description = "An extension request: fulfilled (the grant's end moved) when policy approved it, else pending for approvers", body = RequestView), (status = 400, description = "Bad input, or past the maximum total, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not the holder, or policy does not permit extending", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to the caller)", body = Problem, content_type = "application/problem+json"), (status = 409, description = "The grant is not active, or an extension is already pending", body = Problem, content_type = "application/problem+json"), (status = 429, description = "A quota is used up", body = Problem, content_type = "application/problem+json")))]
async fn extend(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Body(body): Body<ExtendBody>,
) -> ApiResult<Response> {
    let r = app
        .engine
        .extend(&caller, &id, &body.by, &body.reason)
        .await?;
    app.metrics.request(if r.grant_id.is_some() {
        RequestOutcome::Extended
    } else {
        RequestOutcome::ExtensionPending
    });
    let details = app.engine.request_details(&caller, r.id.as_str()).await?;
    Ok((StatusCode::CREATED, Json(views::details(&details))).into_response())
}

#[utoipa::path(get, path = "/v1/grants/{id}/credential", params(("id" = String, Path, description = "prefixed id")), responses((status = 200, description = "The grant's credential; shown once", body = CredentialView), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to the caller)", body = Problem, content_type = "application/problem+json")))]
async fn credential(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    // A GET spends the credential, so a browser's cookie (sent on any top-level link, prefetch
    // or history) never does: the web app reveals it with a POST and its CSRF token.
    if !headers.contains_key(header::AUTHORIZATION) {
        return Err(ApiError(Error::forbidden(
            hourglass_core::ErrorCode::CredentialBearerOnly,
            "fetch a credential with your API token, or reveal it in the web app (Mine)",
        )));
    }
    let mut resp = Json(take_credential(&app, &caller, &id).await?).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Hands `caller` the credential of grant `id`, once (the API and the web app's reveal).
pub(super) async fn take_credential(
    app: &App,
    caller: &Caller,
    id: &str,
) -> ApiResult<CredentialView> {
    let (secret, expires_at) = app.engine.take_credential(caller, id).await?;
    Ok(CredentialView {
        grant_id: id.to_owned(),
        credential: secret.expose_secret().to_owned(),
        expires_at: expires_at.to_string(),
    })
}

#[utoipa::path(get, path = "/v1/audit", params(("after" = Option<u64>, Query, description = "events with a higher sequence number"), ("limit" = Option<u32>, Query, description = "1-1000")), responses((status = 200, description = "Audit events in order", body = List<AuditEventView>), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json")))]
async fn audit(
    State(app): State<Shared>,
    Authed(caller): Authed,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    let q: AuditQuery = query(uri.query())?;
    let events = app
        .engine
        .audit_after(
            &caller,
            q.after.unwrap_or(0),
            page_limit(q.limit, 1_000, 1_000)?,
        )
        .await?;
    Ok(Json(List {
        items: events.into_iter().map(views::audit_event).collect(),
    })
    .into_response())
}

#[utoipa::path(post, path = "/v1/admin/reconcile", responses((status = 200, description = "What the run found and removed", body = ReconcileView), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Takes Administer on every entitlement", body = Problem, content_type = "application/problem+json")))]
async fn reconcile(
    State(app): State<Shared>,
    Authed(caller): Authed,
) -> ApiResult<Json<ReconcileView>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let report = ask_worker(&app, TargetTask::Reconcile(caller, tx), rx).await?;
    Ok(Json(ReconcileView {
        targets_checked: report.targets_checked,
        drift: report
            .drift
            .into_iter()
            .map(|d| DriftView {
                target: d.target,
                kind: match d.kind {
                    hourglass_core::engine::DriftKind::Leftover => "leftover".into(),
                    hourglass_core::engine::DriftKind::Missing => "missing".into(),
                },
                name: d.name,
                grant_id: d.grant_id,
                ledger_state: d.ledger_state,
                removed: d.removed,
                error: d.error,
            })
            .collect(),
        errors: report.errors,
    }))
}

#[utoipa::path(get, path = "/v1/reports/standing", responses((status = 200, description = "Standing privilege per target: what the targets hold outside any live grant", body = List<TargetStandingView>), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Takes Administer on every entitlement", body = Problem, content_type = "application/problem+json")))]
async fn standing(
    State(app): State<Shared>,
    Authed(caller): Authed,
) -> ApiResult<Json<List<TargetStandingView>>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let items = ask_worker(&app, TargetTask::Standing(caller, tx), rx)
        .await?
        .into_iter()
        .map(|t| TargetStandingView {
            standing: t
                .standing
                .into_iter()
                .map(|s| StandingView {
                    target: t.target.clone(),
                    holder: s.holder,
                    privilege: s.privilege,
                })
                .collect(),
            target: t.target,
            just_in_time: t.just_in_time,
            error: t.error,
        })
        .collect();
    Ok(Json(List { items }))
}

/// Hands a task to the reconciler worker and waits for its answer.
async fn ask_worker<T>(
    app: &App,
    task: TargetTask,
    rx: tokio::sync::oneshot::Receiver<hourglass_core::Result<T>>,
) -> ApiResult<T> {
    let stopped = || Error::Unavailable("the reconciler is stopping".into());
    app.target_tasks.send(task).await.map_err(|_| stopped())?;
    Ok(rx.await.map_err(|_| stopped())??)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KrlQuery {
    target: Option<String>,
}

#[utoipa::path(get, path = "/v1/ssh/krl", security(()), params(("target" = Option<String>, Query, description = "the SSH target; needed only when there are several")), responses((status = 200, description = "The OpenSSH key revocation list (binary), for sshd RevokedKeys", content_type = "application/octet-stream"), (status = 404, description = "No such SSH target", body = Problem, content_type = "application/problem+json")))]
async fn ssh_krl(State(app): State<Shared>, uri: axum::http::Uri) -> ApiResult<Response> {
    let q: KrlQuery = query(uri.query())?;
    let ca = match q.target {
        Some(t) => app
            .ssh
            .iter()
            .find(|(id, _)| id.as_str() == t)
            .map(|(_, c)| c),
        None if app.ssh.len() == 1 => app.ssh.values().next(),
        None => None,
    };
    let Some(ca) = ca else {
        return Err(Error::not_found(
            hourglass_core::ErrorCode::SshTargetUnknown,
            format!(
                "no such SSH target; give ?target= one of: {}",
                app.ssh
                    .keys()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .into());
    };
    let bytes = ca
        .krl()
        .await
        .map_err(|e| Error::Unavailable(format!("rendering the KRL: {}", e.message)))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        bytes,
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/whoami", responses((status = 200, description = "The caller", body = WhoAmI), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json")))]
async fn whoami(Authed(caller): Authed) -> Json<WhoAmI> {
    Json(who(&caller))
}

/// Who the caller is, as `whoami` says.
fn who(caller: &Caller) -> WhoAmI {
    let p = &caller.principal;
    WhoAmI {
        principal: p.id.to_string(),
        kind: p.kind.as_str().to_owned(),
        groups: p.groups.clone(),
        acting_for: caller.on_behalf_of.as_ref().map(|o| o.id.to_string()),
    }
}

#[utoipa::path(get, path = "/v1/catalogue", responses((status = 200, description = "What the caller may ask for now, and what asking would do", body = List<hourglass_api::OfferView>), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json")))]
async fn catalogue(
    State(app): State<Shared>,
    Authed(caller): Authed,
) -> ApiResult<Json<List<hourglass_api::OfferView>>> {
    let offers = app.engine.catalogue(&caller).await?;
    Ok(Json(List {
        items: offers.into_iter().map(views::offer).collect(),
    }))
}

#[utoipa::path(get, path = "/readyz", security(()), responses((status = 200, description = "The store answers"), (status = 503, description = "The store does not answer, a worker is down, or this replica's policy set is not the one in force", body = Problem, content_type = "application/problem+json")))]
async fn readyz(State(app): State<Shared>) -> Response {
    let down = app.supervisor.down();
    if !down.is_empty() {
        tracing::warn!(workers = ?down, "not ready: workers down");
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            hourglass_core::ErrorCode::WorkerDown,
            format!(
                "workers stopped and are being restarted: {}",
                down.join(", ")
            ),
            None,
        );
    }
    if app.metrics.policy_stale() {
        tracing::warn!("not ready: deciding under a policy set other than the one in force");
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            hourglass_core::ErrorCode::PolicyStale,
            "this replica's policy files differ from the set in force (another replica reloaded or started with other files): deploy the same files and reload",
            None,
        );
    }
    match app.engine.store().ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                hourglass_core::ErrorCode::StoreUnreachable,
                "the store does not answer",
                None,
            )
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhyQuery {
    principal: Option<String>,
    target: Option<String>,
    entitlement: Option<String>,
    at: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

#[utoipa::path(get, path = "/v1/why", params(("principal" = Option<String>, Query, description = "whose elevations"), ("target" = Option<String>, Query, description = "on which target"), ("entitlement" = Option<String>, Query, description = "of which entitlement"), ("at" = Option<String>, Query, description = "a moment (RFC 3339)"), ("from" = Option<String>, Query, description = "or a range's start (RFC 3339)"), ("to" = Option<String>, Query, description = "and its end (RFC 3339, at most 400 days later)")), responses((status = 200, description = "Every elevated state in scope with its story from the audit chain, and the chain head that covers it", body = hourglass_api::WhyView), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not allowed (administrators of everything, or a person about themselves)", body = Problem, content_type = "application/problem+json")))]
async fn why(
    State(app): State<Shared>,
    Authed(caller): Authed,
    uri: axum::http::Uri,
) -> ApiResult<Json<hourglass_api::WhyView>> {
    let q: WhyQuery = query(uri.query())?;
    let time =
        |v: Option<String>, field: &'static str| -> ApiResult<Option<hourglass_core::Timestamp>> {
            match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => hourglass_core::Timestamp::parse_rfc3339(s)
                    .map(Some)
                    .ok_or_else(|| {
                        ApiError(Error::invalid(
                            hourglass_core::ErrorCode::WhyRangeInvalid,
                            field,
                            format!("{s:?} is not an RFC 3339 time"),
                        ))
                    }),
            }
        };
    let (from, to) = match (time(q.at, "at")?, time(q.from, "from")?, time(q.to, "to")?) {
        (Some(at), None, None) => (Some(at), None),
        (None, from, to) => (from, to),
        _ => {
            return Err(ApiError(Error::invalid(
                hourglass_core::ErrorCode::WhyRangeInvalid,
                "at",
                "give at, or from and to, not both",
            )));
        }
    };
    let answer = app
        .engine
        .why(
            &caller,
            hourglass_core::engine::WhyQuestion {
                principal: q.principal,
                target: q.target,
                entitlement: q.entitlement,
                from,
                to,
            },
        )
        .await?;
    Ok(Json(views::why(&answer)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    from: Option<String>,
    to: Option<String>,
    principal: Option<String>,
    target: Option<String>,
    entitlement: Option<String>,
    format: Option<String>,
}

#[utoipa::path(get, path = "/v1/reports/elevations", params(("from" = String, Query, description = "the period's start (RFC 3339)"), ("to" = String, Query, description = "its end (RFC 3339, at most 400 days later)"), ("principal" = Option<String>, Query, description = "whose"), ("target" = Option<String>, Query, description = "where"), ("entitlement" = Option<String>, Query, description = "which"), ("format" = Option<String>, Query, description = "json (default), csv, or html: the printable report with charts (privileged hours per person, target and day, JIT against standing privilege, time to revoke, overdue revocations, break-glass and reviews, automatic approvals per policy) ending with the chain head, the command and the JSON export's signed manifest")), responses((status = 200, description = "Evidence: every elevated window of the period in scope. Headers: x-hourglass-export-sha256 (of the body), x-hourglass-head-seq and x-hourglass-head-hash (the chain head it was read under), x-hourglass-manifest (all of it in a JWT signed with Hourglass's key, verified against /.well-known/jwks.json)"), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json")))]
async fn elevations(
    State(app): State<Shared>,
    Authed(caller): Authed,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    let q: ExportQuery = query(uri.query())?;
    let format = crate::evidence::Format::parse(q.format.as_deref()).ok_or_else(|| {
        ApiError(Error::invalid(
            hourglass_core::ErrorCode::WhyRangeInvalid,
            "format",
            "json, csv or html",
        ))
    })?;
    let time = |v: &Option<String>, field: &'static str| -> ApiResult<hourglass_core::Timestamp> {
        v.as_deref()
            .map(str::trim)
            .and_then(hourglass_core::Timestamp::parse_rfc3339)
            .ok_or_else(|| {
                ApiError(Error::invalid(
                    hourglass_core::ErrorCode::WhyRangeInvalid,
                    field,
                    "an RFC 3339 time is required",
                ))
            })
    };
    let given = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let scope = crate::evidence::Scope {
        from: time(&q.from, "from")?,
        to: time(&q.to, "to")?,
        principal: given(q.principal),
        target: given(q.target),
        entitlement: given(q.entitlement),
    };
    let (w, e) = crate::evidence::build(&app, &caller, &scope, format).await?;
    Ok(export_response(&w, e))
}

/// An export with its digest, chain head and manifest in headers. The printable report is a
/// page that runs nothing: its CSP allows only its own inline style.
pub(crate) fn export_response(
    w: &hourglass_core::engine::Windows,
    e: crate::evidence::Export,
) -> Response {
    let html = e.content_type.starts_with("text/html");
    let mut resp = (StatusCode::OK, e.body).into_response();
    let h = resp.headers_mut();
    let put = |h: &mut HeaderMap, k: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    put(h, "content-type", e.content_type);
    put(h, "cache-control", "no-store");
    put(h, "x-hourglass-export-sha256", &e.sha256);
    put(h, "x-hourglass-head-seq", &w.head_seq.to_string());
    put(h, "x-hourglass-head-hash", &w.head_hash);
    if let Some(m) = &e.manifest {
        put(h, "x-hourglass-manifest", m);
    }
    if html {
        put(
            h,
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        );
        put(h, "x-content-type-options", "nosniff");
    }
    resp
}

#[utoipa::path(get, path = "/v1/reports/revocation-debt", responses((status = 200, description = "Per target: revocations overdue (due longer than server.overdue_after ago and not yet proven), longest first, and leftovers the last reconciliation could not remove", body = List<hourglass_api::RevocationDebtView>), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json")))]
async fn revocation_debt(
    State(app): State<Shared>,
    Authed(caller): Authed,
) -> ApiResult<Json<List<hourglass_api::RevocationDebtView>>> {
    let now = app.engine.clock().now();
    let grants = app
        .engine
        .overdue_revocations(&caller, now.plus_millis(-app.overdue_after_ms), 1_000)
        .await?;
    let leftovers = app.metrics.leftovers_by_target();
    let mut by_target: std::collections::BTreeMap<String, hourglass_api::RevocationDebtView> = app
        .engine
        .catalog()
        .targets()
        .map(|t| {
            let name = t.id.to_string();
            let view = hourglass_api::RevocationDebtView {
                target: name.clone(),
                overdue: Vec::new(),
                leftovers: leftovers.get(&name).copied().unwrap_or(0),
            };
            (name, view)
        })
        .collect();
    for g in grants {
        let due = g.revoke_due_at.unwrap_or(now);
        if let Some(v) = by_target.get_mut(g.target.as_str()) {
            v.overdue.push(hourglass_api::OverdueView {
                grant_id: g.id.to_string(),
                principal: g.principal.to_string(),
                entitlement: g.entitlement.to_string(),
                due_at: due.to_string(),
                overdue_secs: now.millis_since(due) / 1000,
            });
        }
    }
    Ok(Json(List {
        items: by_target.into_values().collect(),
    }))
}

#[utoipa::path(get, path = "/metrics", security(()), responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(app): State<Shared>) -> ApiResult<Response> {
    let now = app.engine.clock().now();
    let counts = app
        .engine
        .store()
        .grant_counts(now.plus_millis(-app.overdue_after_ms))
        .await?;
    let queues = app.engine.store().notification_stats().await?;
    let writes = app.engine.store().write_stats();
    let mut overdue: std::collections::BTreeMap<String, u64> = app
        .engine
        .store()
        .overdue_by_target(now.plus_millis(-app.overdue_after_ms))
        .await?
        .into_iter()
        .map(|(t, n)| (t.to_string(), n))
        .collect();
    // Every target appears, at zero when it owes nothing.
    for t in app.engine.catalog().targets() {
        overdue.entry(t.id.to_string()).or_insert(0);
    }
    let text = app.metrics.render(&crate::metrics::Stored {
        grants: counts,
        queues,
        writes,
        overdue,
        oncall: app.facts.board().status(now),
    });
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    Ok(resp)
}

/// Adds the bearer token scheme and makes it the default.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An Hourglass API token (hgt_…)"))
                    .build(),
            ),
        );
        doc.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Hourglass", description = "Just-in-time privileged access broker. Errors are application/problem+json with a stable `code` and the offending `field`."),
    paths(why, elevations, revocation_debt, create_request, list_requests, get_request, approve, deny, cancel, list_grants, get_grant, revoke, extend, credential, audit, reconcile, standing, ssh_krl, reviews::list_reviews, reviews::close_review, campaigns::start, campaigns::list, campaigns::mine, campaigns::details, campaigns::decide, identities::list_identities, identities::create_identity, identities::suspend, identities::resume, identities::offboard, identities::create_key, identities::rotate_key, identities::revoke_key, identities::identity_report, token::exchange, token::jwks, tickets::generic_event, tickets::source_event, tickets::reopen, web::session, events::events, admin::reload_policies, whoami, catalogue, mcp::explain, mcp::tool_called, mcp::release_task, mcp::grant_token, readyz, metrics),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The OpenAPI document of this API (checked in as `docs/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    // Completed as JSON (the same statements for every operation: `contract.rs`); the round
    // trip cannot fail for a document utoipa wrote, and the checked-in copy would show it.
    let Ok(mut value) = serde_json::to_value(&doc) else {
        return doc;
    };
    contract::complete(&mut value);
    serde_json::from_value(value).unwrap_or(doc)
}

#[cfg(test)]
mod tests {
    /// The checked-in document matches the code. Regenerate with
    /// `HOURGLASS_UPDATE_OPENAPI=1 cargo test -p hourglass-server openapi`.
    #[test]
    fn openapi_document_is_checked_in_and_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        let generated = format!(
            "{}\n",
            serde_json::to_string_pretty(&super::openapi()).unwrap()
        );
        if std::env::var_os("HOURGLASS_UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/openapi.json is stale: regenerate it (see this test's doc comment)"
        );
        let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
        for p in [
            "/v1/requests",
            "/v1/requests/{id}",
            "/v1/requests/{id}/approve",
            "/v1/requests/{id}/deny",
            "/v1/requests/{id}/cancel",
            "/v1/grants",
            "/v1/grants/{id}",
            "/v1/grants/{id}/revoke",
            "/v1/grants/{id}/extend",
            "/v1/grants/{id}/credential",
            "/v1/audit",
            "/v1/whoami",
            "/v1/reviews",
            "/v1/reviews/{id}/close",
            "/v1/admin/policies/reload",
        ] {
            assert!(doc["paths"][p].is_object(), "{p} is not documented");
        }
    }
}
