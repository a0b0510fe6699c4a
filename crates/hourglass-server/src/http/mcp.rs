//! MCP over streamable HTTP at `/mcp`, authorized as the MCP specification says: a bearer
//! token on every request (no sessions, no cookies), refused with `401` and a
//! `WWW-Authenticate` that points at the protected-resource metadata (RFC 9728,
//! `/.well-known/oauth-protected-resource/mcp`), which names the issuers whose tokens are
//! accepted (those with an `mcp_audience`). Accepted: an agent's Hourglass API key; an agent's
//! token from such an issuer; a person's token from one whose `act` claim names the agent
//! acting for them (the agent then asks for that person). Anything else is refused: the
//! endpoint serves agents. Requests that carry an `Origin` (a browser's) are refused.
//!
//! Also the two API operations only tools need: `POST /v1/explain` and
//! `POST /v1/agents/tool-calls` (the record `hourglass mcp` sends per call).

use std::sync::Arc;

use async_trait::async_trait;
use axum::{
    Json, Router,
    extract::{ConnectInfo, Path, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use hourglass_api::{
    CreateRequest, DecisionView, ExplainBody, ExplainView, GrantTokenView, GrantView, List,
    OfferView, Problem, ReleaseTaskBody, RequestView, ToolCallBody, WhoAmI,
};
use hourglass_core::{
    Error, ErrorCode,
    engine::{AuthRefusal, AuthVia, Caller, ToolCall, ToolOutcome},
};
use hourglass_tokens::Purpose;
use rmcp::{
    ErrorData, RoleServer,
    service::RequestContext,
    transport::{
        StreamableHttpServerConfig, StreamableHttpService,
        streamable_http_server::session::never::NeverSessionManager,
    },
};

use super::{ApiResult, Authed, Body, Shared, auth_refused, submit};
use crate::{
    App,
    mcp::{Desk, DeskSource, McpServer},
    problem::{ApiError, problem, problem_of},
    views,
};

/// The path of the metadata document for `/mcp` (RFC 9728 §3.1: the resource's path appended
/// to the well-known prefix).
const METADATA_PATH: &str = "/.well-known/oauth-protected-resource/mcp";

/// The routes: `/mcp` behind its own authentication, the metadata, and the two API operations.
pub(super) fn routes(app: &Shared) -> Router<Shared> {
    let factory = {
        let app = Arc::clone(app);
        move || {
            Ok(McpServer(McpHttp {
                app: Arc::clone(&app),
            }))
        }
    };
    let config = StreamableHttpServerConfig::default()
        // Every request carries its bearer and is judged on its own.
        .with_legacy_session_mode(false)
        .with_json_response(true)
        // A bearer token is not sent by a browser that DNS rebinding tricked; any Host will
        // do. A browser's request (it carries Origin) is refused.
        .disable_allowed_hosts()
        .enforce_origin_validation();
    let service =
        StreamableHttpService::new(factory, Arc::new(NeverSessionManager::default()), config);
    Router::new()
        .route_service("/mcp", service)
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(app),
            authenticate,
        ))
        .route(METADATA_PATH, get(metadata))
        .route("/.well-known/oauth-protected-resource", get(metadata))
        .route("/v1/explain", post(explain))
        .route("/v1/tasks/release", post(release_task))
        .route("/v1/grants/{id}/token", post(grant_token))
        .route("/v1/agents/tool-calls", post(tool_called))
}

/// The agent a request to `/mcp` was authenticated as.
#[derive(Clone)]
struct McpCaller(Caller);

/// `GET /.well-known/oauth-protected-resource[/mcp]` (RFC 9728): the resource, the
/// authorization servers whose tokens it accepts, and how to send them.
async fn metadata(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let base = super::public_base(&app, &headers);
    let mut resp = Json(serde_json::json!({
        "resource": format!("{base}/mcp"),
        "authorization_servers": app.workload.issuers.mcp_issuers(),
        "bearer_methods_supported": ["header"],
        "resource_name": "Hourglass",
        "resource_documentation": "https://hourglass.dev/docs/agents",
    }))
    .into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    resp
}

/// Authenticates a request to `/mcp` (see the module's documentation); the agent goes into
/// the request's extensions, where the tools find it.
async fn authenticate(State(app): State<Shared>, mut req: Request, next: Next) -> Response {
    let metadata_url = format!("{}{METADATA_PATH}", super::public_base(&app, req.headers()));
    let refuse = |status: StatusCode, code: ErrorCode, detail: &str, error: Option<&str>| {
        let mut r = problem(status, code, detail, None);
        let mut challenge = format!("Bearer resource_metadata=\"{metadata_url}\"");
        if let Some(e) = error {
            challenge.push_str(&format!(", error=\"{e}\""));
        }
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    };
    let source_ip = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::to_owned);
    let Some(token) = token else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            ErrorCode::AuthMissing,
            "send Authorization: Bearer <token>: an agent's API key, or a token for this resource",
            None,
        );
    };
    let caller = if token.matches('.').count() == 2 && !app.workload.issuers.is_empty() {
        let now = app.engine.clock().now().unix_millis() / 1000;
        let v = match app
            .workload
            .issuers
            .verify(&token, now, Purpose::McpBearer)
            .await
        {
            Ok(v) => v,
            Err(r) => {
                tracing::info!(code = r.code, reason = %r.reason, "MCP bearer token refused");
                let refusal = AuthRefusal {
                    issuer: super::token::peek_iss(&token),
                    ..AuthRefusal::new(
                        AuthVia::Mcp,
                        ErrorCode::AuthInvalid,
                        format!("{}: {}", r.code, r.reason),
                    )
                };
                let refused = refuse(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::AuthInvalid,
                    "the token is not valid for this resource",
                    Some("invalid_token"),
                );
                return auth_refused(&app, refusal, source_ip.as_deref(), refused).await;
            }
        };
        if v.act.is_some() && v.actor.is_none() {
            // A delegation to someone the issuer's rules do not name is no delegation at all;
            // never the person's own token instead.
            let detail = "the token's act names no identity this issuer maps";
            let refusal = AuthRefusal {
                issuer: Some(v.issuer_name.clone()),
                subject: Some(v.subject.clone()),
                ..AuthRefusal::new(AuthVia::Mcp, ErrorCode::AuthInvalid, detail)
            };
            let refused = refuse(
                StatusCode::UNAUTHORIZED,
                ErrorCode::AuthInvalid,
                detail,
                Some("invalid_token"),
            );
            return auth_refused(&app, refusal, source_ip.as_deref(), refused).await;
        }
        match app
            .engine
            .mcp_caller(&v.principal, v.actor.as_deref(), source_ip.clone())
            .await
        {
            Ok(Ok(c)) => c,
            Ok(Err((code, detail))) => {
                tracing::info!(code = code.as_str(), issuer = %v.issuer_name, subject = %v.subject, "MCP bearer token refused");
                return if code == ErrorCode::AuthInvalid {
                    let refusal = AuthRefusal {
                        issuer: Some(v.issuer_name.clone()),
                        subject: Some(v.subject.clone()),
                        ..AuthRefusal::new(AuthVia::Mcp, code, detail)
                    };
                    let refused = refuse(
                        StatusCode::UNAUTHORIZED,
                        code,
                        detail,
                        Some("invalid_token"),
                    );
                    auth_refused(&app, refusal, source_ip.as_deref(), refused).await
                } else {
                    refuse(
                        StatusCode::FORBIDDEN,
                        code,
                        detail,
                        Some("insufficient_scope"),
                    )
                };
            }
            Err(e) => return ApiError(e).into_response(),
        }
    } else {
        match app.engine.authenticate_key(&token).await {
            Ok(Ok(p)) => match app
                .engine
                .mcp_caller(p.id.as_str(), None, source_ip.clone())
                .await
            {
                Ok(Ok(c)) => c,
                Ok(Err((code, detail))) => {
                    let status = if code == ErrorCode::AuthInvalid {
                        StatusCode::UNAUTHORIZED
                    } else {
                        StatusCode::FORBIDDEN
                    };
                    return refuse(status, code, detail, None);
                }
                Err(e) => return ApiError(e).into_response(),
            },
            Ok(Err(key)) => {
                let refused = refuse(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::AuthInvalid,
                    "the token is not valid",
                    Some("invalid_token"),
                );
                let refusal = AuthRefusal::key(AuthVia::Mcp, key);
                return auth_refused(&app, refusal, source_ip.as_deref(), refused).await;
            }
            Err(e) => return ApiError(e).into_response(),
        }
    };
    req.extensions_mut().insert(McpCaller(caller));
    next.run(req).await
}

/// The desks of `/mcp`: the engine, as the agent each request authenticated as.
struct McpHttp {
    app: Shared,
}

impl DeskSource for McpHttp {
    type Desk = EngineDesk;

    fn desk(&self, ctx: &RequestContext<RoleServer>) -> Result<EngineDesk, ErrorData> {
        let caller = ctx
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<McpCaller>())
            .map(|c| c.0.clone())
            .ok_or_else(|| ErrorData::internal_error("the request was not authenticated", None))?;
        Ok(EngineDesk {
            app: Arc::clone(&self.app),
            caller,
        })
    }
}

/// The tools' way in on the server: the engine, as the agent.
struct EngineDesk {
    app: Shared,
    caller: Caller,
}

fn p(e: impl Into<ApiError>) -> Problem {
    problem_of(e.into().0).1
}

#[async_trait]
impl Desk for EngineDesk {
    async fn whoami(&self) -> Result<WhoAmI, Problem> {
        Ok(super::who(&self.caller))
    }

    async fn catalogue(&self) -> Result<Vec<OfferView>, Problem> {
        let offers = self.app.engine.catalogue(&self.caller).await.map_err(p)?;
        Ok(offers.into_iter().map(views::offer).collect())
    }

    async fn ask(&self, body: CreateRequest) -> Result<RequestView, Problem> {
        submit(&self.app, &self.caller, body).await.map_err(p)
    }

    async fn request(&self, id: &str) -> Result<RequestView, Problem> {
        let d = self
            .app
            .engine
            .request_details(&self.caller, id)
            .await
            .map_err(p)?;
        Ok(views::details(&d))
    }

    async fn grants(&self) -> Result<Vec<GrantView>, Problem> {
        let g = self
            .app
            .engine
            .list_grants(&self.caller, None, 200)
            .await
            .map_err(p)?;
        Ok(g.iter().map(views::grant).collect())
    }

    async fn release(&self, grant: &str, reason: String) -> Result<GrantView, Problem> {
        let g = self
            .app
            .engine
            .revoke(&self.caller, grant, Some(reason))
            .await
            .map_err(p)?;
        Ok(views::grant(&g))
    }

    async fn release_task(&self, task: &str, reason: String) -> Result<Vec<GrantView>, Problem> {
        let g = self
            .app
            .engine
            .release_task(&self.caller, task, Some(reason))
            .await
            .map_err(p)?;
        Ok(g.iter().map(views::grant).collect())
    }

    async fn token(&self, grant: &str) -> Result<GrantTokenView, Problem> {
        signed(&self.app, &self.caller, grant).await.map_err(p)
    }

    async fn explain(&self, body: ExplainBody) -> Result<ExplainView, Problem> {
        explained(&self.app, &self.caller, body).await.map_err(p)
    }

    async fn tool_called(&self, call: ToolCallBody) -> Result<(), Problem> {
        record(&self.app, &self.caller, call, "http")
            .await
            .map_err(p)
    }
}

async fn explained(app: &App, caller: &Caller, body: ExplainBody) -> ApiResult<ExplainView> {
    let e = app
        .engine
        .explain_ask(caller, &body.access, body.duration, body.ticket)
        .await?;
    let view = |d: &hourglass_core::policy::Decision| DecisionView {
        allowed: d.allowed,
        policy_ids: d.policy_ids.clone(),
    };
    Ok(ExplainView {
        access: e.access,
        duration: e.duration.to_string(),
        max_duration: e.max_duration.to_string(),
        outcome: e.outcome.to_owned(),
        detail: e.detail,
        eligible: view(&e.eligible),
        auto_approve: view(&e.auto_approve),
        approvals_required: e.approvals_required,
        policy_hash: e.eligible.policy_hash.clone(),
    })
}

async fn record(
    app: &App,
    caller: &Caller,
    call: ToolCallBody,
    via: &'static str,
) -> ApiResult<()> {
    let outcome = ToolOutcome::parse(&call.outcome).ok_or_else(|| {
        Error::invalid(
            ErrorCode::AgentToolCallInvalid,
            "outcome",
            "one of ok, refused, invalid, unknown",
        )
    })?;
    app.engine
        .tool_called(
            caller,
            ToolCall {
                tool: call.tool,
                outcome,
                code: call.code,
                subject: call.subject,
                via,
            },
        )
        .await?;
    Ok(())
}

#[utoipa::path(post, path = "/v1/explain", request_body = ExplainBody, responses((status = 200, description = "What asking would do for the caller now, and the policies that decide it; nothing is written", body = ExplainView), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn explain(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Body(body): Body<ExplainBody>,
) -> ApiResult<Json<ExplainView>> {
    Ok(Json(explained(&app, &caller, body).await?))
}

#[utoipa::path(post, path = "/v1/agents/tool-calls", request_body = ToolCallBody, responses((status = 204, description = "Recorded (`agent.tool_called`, via stdio)"), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not an agent", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn tool_called(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Body(body): Body<ToolCallBody>,
) -> ApiResult<StatusCode> {
    record(&app, &caller, body, "stdio").await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/tasks/release", request_body = ReleaseTaskBody, responses((status = 200, description = "Every live grant of the task that was the caller's, now revoking (in one commit)", body = List<GrantView>), (status = 400, description = "Bad input, naming the field; nothing changed", body = Problem, content_type = "application/problem+json"), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No live grant of the task is the caller's", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn release_task(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Body(body): Body<ReleaseTaskBody>,
) -> ApiResult<Json<List<GrantView>>> {
    let g = app
        .engine
        .release_task(&caller, &body.task, body.reason)
        .await?;
    Ok(Json(List {
        items: g.iter().map(views::grant).collect(),
    }))
}

/// Signs an access token for `caller`'s active grant `id` on a `token` target, once the engine
/// recorded it.
async fn signed(app: &App, caller: &Caller, id: &str) -> ApiResult<GrantTokenView> {
    let Some(signer) = app.workload.signer.as_ref() else {
        return Err(ApiError(Error::conflict(
            ErrorCode::TokenNotATokenTarget,
            "this server has no signing key: it issues no tokens",
        )));
    };
    let (grant, request, jti) = app.engine.grant_token(caller, id).await?;
    let holder = app
        .engine
        .principal(&grant.principal)
        .await?
        .map_or("human", |p| p.kind.as_str());
    let now = app.engine.clock().now();
    let claims =
        super::token::access_token_claims(app, signer, &grant, &request.actors, holder, &jti, now);
    // A handed-out token cannot be called back: it lives 15 minutes at most (the agent asks
    // again while the grant lasts).
    let exp = grant.expires_at.min(now.plus_millis(15 * 60_000));
    let mut claims = claims;
    claims["exp"] = serde_json::json!(exp.unix_millis() / 1000);
    let audience = claims["aud"].as_str().unwrap_or_default().to_owned();
    let (access_token, _kid) = signer
        .sign(&claims, now.unix_millis() / 1000)
        .map_err(|e| ApiError(Error::internal(format!("signing: {e}"))))?;
    Ok(GrantTokenView {
        grant_id: grant.id.to_string(),
        access_token,
        token_type: "Bearer".into(),
        expires_at: exp.to_string(),
        audience,
    })
}

#[utoipa::path(post, path = "/v1/grants/{id}/token", params(("id" = String, Path, description = "prefixed id")), responses((status = 200, description = "An access token for the caller's active grant on a token target, valid until the grant ends (never stored; `token.issued` records its jti)", body = GrantTokenView), (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "Not the caller's grant", body = Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to the caller)", body = Problem, content_type = "application/problem+json"), (status = 409, description = "Not active, or its target issues no tokens", body = Problem, content_type = "application/problem+json")))]
pub(super) async fn grant_token(
    State(app): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let mut resp = Json(signed(&app, &caller, &id).await?).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
