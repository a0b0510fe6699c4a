//! The MCP tools for agents, on the official Rust SDK (`rmcp`): what each is, its JSON schema,
//! and what it does through a [`Desk`], the agent's way into Hourglass. Two desks serve them:
//! the server's own endpoint (`/mcp`, streamable HTTP, the engine called as the authenticated
//! agent) and `hourglass mcp` over stdio (the API called with the agent's key). Either way a
//! tool calls the same use case as the API, so it decides nothing the API would not.
//!
//! The tools ask, watch, explain and give back; none approves, denies, breaks glass,
//! administers or reads the audit (and the engine refuses those to agents on every path).
//! Each answers with structured content (the API's own views) and a line of text for a model;
//! a refusal is a tool error carrying the server's code and reason. Every call is recorded as
//! `agent.tool_called` (tool, outcome, code; never the arguments).

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use hourglass_api::{
    CreateRequest, ExplainBody, ExplainView, GrantTokenView, GrantView, OfferView, Problem,
    RequestView, ToolCallBody, WhoAmI,
};
use rmcp::{
    ErrorData, Peer, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
        JsonObject, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
        ProgressToken, ServerCapabilities, ServerConfig, Tool,
    },
    service::RequestContext,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// The agent's way into Hourglass: each method is one API use case, answered with the API's
/// view or its problem.
#[async_trait]
pub trait Desk: Send + Sync {
    async fn whoami(&self) -> Result<WhoAmI, Problem>;
    async fn catalogue(&self) -> Result<Vec<OfferView>, Problem>;
    async fn ask(&self, body: CreateRequest) -> Result<RequestView, Problem>;
    async fn request(&self, id: &str) -> Result<RequestView, Problem>;
    /// The caller's grants, newest first (one listing, so that none is missed while it moves
    /// from one state to the next).
    async fn grants(&self) -> Result<Vec<GrantView>, Problem>;
    async fn release(&self, grant: &str, reason: String) -> Result<GrantView, Problem>;
    /// Ends every live grant of the task that is the caller's.
    async fn release_task(&self, task: &str, reason: String) -> Result<Vec<GrantView>, Problem>;
    /// An access token for the caller's active grant on a `token` target.
    async fn token(&self, grant: &str) -> Result<GrantTokenView, Problem>;
    async fn explain(&self, body: ExplainBody) -> Result<ExplainView, Problem>;
    /// Records the call (`agent.tool_called`).
    async fn tool_called(&self, call: ToolCallBody) -> Result<(), Problem>;
}

/// Where each tool call finds its desk: the stdio server has one agent, the HTTP endpoint the
/// agent each request authenticated as.
pub trait DeskSource: Send + Sync + 'static {
    type Desk: Desk;
    fn desk(&self, context: &RequestContext<RoleServer>) -> Result<Self::Desk, ErrorData>;
}

/// The MCP server over a [`DeskSource`]: the same tools on either transport.
pub struct McpServer<S>(pub S);

impl<S: DeskSource> ServerHandler for McpServer<S> {
    fn get_info(&self) -> ServerConfig {
        server_config()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let desk = self.0.desk(&context)?;
        let progress = Progress {
            token: context.meta.get_progress_token(),
            peer: context.peer.clone(),
        };
        run_tool(&desk, &request.name, request.arguments, &progress)
            .await
            .map(Into::into)
    }
}

/// A problem made here (the desk could not be reached, say).
pub fn problem(status: u16, code: &str, detail: impl Into<String>) -> Problem {
    Problem {
        kind: format!("https://hourglass.dev/problems/{code}"),
        title: "error".into(),
        status,
        detail: detail.into(),
        code: code.to_owned(),
        field: None,
        trace_id: None,
    }
}

fn schema(v: Value) -> Arc<JsonObject> {
    Arc::new(match v {
        Value::Object(o) => o,
        _ => JsonObject::new(),
    })
}

/// The longest a `request_status` call waits for a decision.
pub const MAX_WAIT_SECS: u64 = 60;

/// The tools, with what a model needs to use them well.
pub fn tools() -> Vec<Tool> {
    let none =
        || schema(json!({"type": "object", "properties": {}, "additionalProperties": false}));
    let ask = |extra: &str| {
        json!({
            "access": {"type": "string", "minLength": 1, "description": format!("The entitlement (`target/name`) or profile, as list_access names it.{extra}")},
            "duration": {"type": "string", "description": "How long: `15m`, `1h`, `1h30m`. The entitlement's default when absent."},
            "ticket": {"type": "string", "description": "The ticket the task belongs to (`HD-1234`), where policy wants one."}
        })
    };
    let mut request_props = ask("");
    request_props["reason"] = json!({"type": "string", "minLength": 1, "description": "What the access is for, for the people who review it."});
    request_props["task"] = json!({"type": "string", "pattern": "^[A-Za-z0-9._:/-]{1,128}$", "description": "An id for the piece of work this access is for (`INC-7-triage`), when there is no ticket: every grant of the task can be released together. An agent gives a ticket or a task."});
    vec![
        Tool::new(
            "whoami",
            "Who this agent is to Hourglass: its principal name, kind and groups.",
            none(),
        ),
        Tool::new(
            "list_access",
            "What this agent may ask for now, and what asking would do for each: `at_once` \
             (policy approves it at once, up to `auto_up_to`), `needs_approval` (a person must \
             approve; the request waits), or `needs_ticket` (ask with an open ticket). Anything \
             not listed would be refused.",
            none(),
        ),
        Tool::new(
            "request_access",
            "Ask for time-boxed access to one entitlement (`target/name`) or task profile, for a \
             duration such as `15m` or `1h`, with the reason (what the task is) and, where policy \
             wants one, a ticket. Answers the request: `fulfilled` (access granted now), \
             `pending` (waiting for a person: call request_status), or an error saying why it \
             was refused (call explain to learn more). Name the ticket or a task id the work \
             is for. Ask only for what the current task needs, for as short as it needs.",
            schema(json!({
                "type": "object",
                "properties": request_props,
                "required": ["access", "reason"],
                "additionalProperties": false
            })),
        ),
        Tool::new(
            "request_status",
            "The state of one of this agent's requests: `pending` (waiting for a decision until \
             `decide_by`), `fulfilled` (its grants are listed), `denied` (with the reason), \
             `cancelled`, `expired` or `failed`. With `wait_seconds`, waits up to that long \
             (at most 60) for a pending request to be decided, sending progress notifications \
             meanwhile.",
            schema(json!({
                "type": "object",
                "properties": {
                    "request_id": {"type": "string", "minLength": 1, "description": "The id request_access answered (`req_…`)."},
                    "wait_seconds": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECS, "description": "Wait this long for a decision while the request is pending (0, the default: answer at once)."}
                },
                "required": ["request_id"],
                "additionalProperties": false
            })),
        ),
        Tool::new(
            "my_grants",
            "The access this agent holds now: each live grant with its entitlement and when it \
             ends.",
            none(),
        ),
        Tool::new(
            "release_access",
            "End access now, when the work is done: one grant (`grant_id`), or every grant of a \
             task (`task`, as request_access named it). The access is revoked in the target. \
             Release as soon as the work is finished.",
            schema(json!({
                "type": "object",
                "properties": {
                    "grant_id": {"type": "string", "minLength": 1, "description": "The grant to end (`grt_…`), from my_grants or request_status."},
                    "task": {"type": "string", "minLength": 1, "description": "The task whose grants all end."},
                    "reason": {"type": "string", "description": "Why it ends (`task done`)."}
                },
                "additionalProperties": false
            })),
        ),
        Tool::new(
            "get_token",
            "An access token for one of this agent's active grants whose target accepts \
             Hourglass tokens (an API that verifies them against Hourglass's published keys): \
             signed now, valid until the grant ends, naming this agent in `act` when it acts \
             for a person. Send it as `Authorization: Bearer` to that API only; never show it.",
            schema(json!({
                "type": "object",
                "properties": {"grant_id": {"type": "string", "minLength": 1, "description": "The active grant (`grt_…`) on a token target."}},
                "required": ["grant_id"],
                "additionalProperties": false
            })),
        ),
        Tool::new(
            "explain",
            "What asking for an entitlement or profile would do for this agent now, and why: \
             `at_once`, `needs_approval`, `needs_ticket` or `refused`, with the policies that \
             decided it. Use it after a refusal, or before asking. Writes nothing.",
            schema(json!({
                "type": "object",
                "properties": ask(" The one that was refused, or that you mean to ask for."),
                "required": ["access"],
                "additionalProperties": false
            })),
        ),
    ]
}

/// What the MCP server says about itself, on either transport.
pub fn server_config() -> ServerConfig {
    ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        .with_server_info(Implementation::new("hourglass", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Hourglass grants time-boxed access. Ask with request_access for what the task \
             needs, for as short as it needs, with an honest reason; while a person decides, \
             call request_status (with wait_seconds to wait); after a refusal, explain says \
             why; release_access when done. This agent cannot approve anything.",
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestArgs {
    access: String,
    #[serde(default)]
    duration: Option<String>,
    reason: String,
    #[serde(default)]
    ticket: Option<String>,
    #[serde(default)]
    task: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusArgs {
    request_id: String,
    #[serde(default)]
    wait_seconds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseArgs {
    #[serde(default)]
    grant_id: Option<String>,
    #[serde(default)]
    task: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenArgs {
    grant_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainArgs {
    access: String,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    ticket: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

/// A tool's arguments, or an `invalid_params` error naming what is wrong.
fn args<T: for<'de> Deserialize<'de>>(
    tool: &str,
    given: Option<JsonObject>,
) -> Result<T, ErrorData> {
    serde_json::from_value(Value::Object(given.unwrap_or_default())).map_err(|e| {
        ErrorData::invalid_params(
            format!("{tool}: the arguments do not fit its schema: {e}"),
            None,
        )
    })
}

/// A successful answer: the value as structured content, and a line of text.
fn answer(text: String, value: Value) -> CallToolResult {
    let mut r = CallToolResult::structured(value);
    r.content = vec![ContentBlock::text(text)];
    r
}

/// A refusal or failure as a tool error: the server's code, status and reason.
fn refusal(p: &Problem) -> CallToolResult {
    let mut r = CallToolResult::structured_error(
        json!({"code": p.code, "status": p.status, "detail": p.detail}),
    );
    r.content = vec![ContentBlock::text(format!(
        "refused ({}): {}",
        p.code, p.detail
    ))];
    r
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Where a long call reports progress: the client's token, if it gave one.
pub struct Progress {
    pub peer: Peer<RoleServer>,
    pub token: Option<ProgressToken>,
}

impl Progress {
    async fn report(&self, done: u64, total: u64, message: String) {
        if let Some(token) = &self.token {
            // A client that went away misses a progress note; the answer still comes.
            #[allow(clippy::cast_precision_loss)]
            let param = ProgressNotificationParam::new(token.clone(), done as f64)
                .with_total(total as f64)
                .with_message(message);
            let _ = self.peer.notify_progress(param).await;
        }
    }
}

/// What one tool did, for the record.
struct Done {
    result: CallToolResult,
    code: Option<String>,
    subject: Option<String>,
}

fn done(result: Result<(String, Value, Option<String>), Problem>) -> Done {
    match result {
        Ok((text, value, subject)) => Done {
            result: answer(text, value),
            code: None,
            subject,
        },
        Err(p) => Done {
            result: refusal(&p),
            code: Some(p.code),
            subject: None,
        },
    }
}

/// Runs one tool and records the call; an unknown tool or arguments that do not fit are
/// protocol errors (recorded too).
pub async fn run_tool<D: Desk + ?Sized>(
    desk: &D,
    name: &str,
    given: Option<JsonObject>,
    progress: &Progress,
) -> Result<CallToolResult, ErrorData> {
    let known = hourglass_core::engine::TOOLS.contains(&name);
    let outcome = if known {
        dispatch(desk, name, given, progress).await
    } else {
        Err(ErrorData::invalid_params(
            format!(
                "no tool {name:?}; the tools are {}",
                hourglass_core::engine::TOOLS.join(", ")
            ),
            None,
        ))
    };
    let record = match &outcome {
        Ok(d) => ToolCallBody {
            tool: name.to_owned(),
            outcome: if d.code.is_some() { "refused" } else { "ok" }.into(),
            code: d.code.clone(),
            subject: d.subject.clone(),
        },
        Err(_) => ToolCallBody {
            tool: name.to_owned(),
            outcome: if known { "invalid" } else { "unknown" }.into(),
            code: None,
            subject: None,
        },
    };
    if let Err(p) = desk.tool_called(record).await {
        tracing::warn!(tool = name, code = %p.code, detail = %p.detail, "the tool call was not recorded");
    }
    outcome.map(|d| d.result)
}

async fn dispatch<D: Desk + ?Sized>(
    desk: &D,
    name: &str,
    given: Option<JsonObject>,
    progress: &Progress,
) -> Result<Done, ErrorData> {
    Ok(match name {
        "whoami" => {
            let NoArgs {} = args(name, given)?;
            done(
                desk.whoami()
                    .await
                    .map(|w| (format!("{} ({})", w.principal, w.kind), to_value(&w), None)),
            )
        }
        "list_access" => {
            let NoArgs {} = args(name, given)?;
            done(desk.catalogue().await.map(|offers| {
                (
                    format!("{} entitlements or profiles may be asked for", offers.len()),
                    json!({"access": offers}),
                    None,
                )
            }))
        }
        "request_access" => {
            let a: RequestArgs = args(name, given)?;
            let body = CreateRequest {
                entitlement: a.access,
                duration: a.duration,
                reason: a.reason,
                ticket: a.ticket,
                task: a.task,
                ..CreateRequest::default()
            };
            done(desk.ask(body).await.map(|r| {
                (
                    format!("request {} is {}", r.id, r.state.as_str()),
                    to_value(&r),
                    Some(r.id.clone()),
                )
            }))
        }
        "request_status" => {
            let a: StatusArgs = args(name, given)?;
            if a.wait_seconds > MAX_WAIT_SECS {
                return Err(ErrorData::invalid_params(
                    format!("request_status: wait_seconds is at most {MAX_WAIT_SECS}"),
                    None,
                ));
            }
            done(status(desk, &a.request_id, a.wait_seconds, progress).await)
        }
        "my_grants" => {
            let NoArgs {} = args(name, given)?;
            let live: Vec<GrantView> = match desk.grants().await {
                Ok(g) => g
                    .into_iter()
                    .filter(|g| matches!(g.state.as_str(), "provisioning" | "active"))
                    .collect(),
                Err(p) => return Ok(done(Err(p))),
            };
            done(Ok((
                format!("{} live grants", live.len()),
                json!({"grants": live}),
                None,
            )))
        }
        "release_access" => {
            let a: ReleaseArgs = args(name, given)?;
            let why = a.reason.unwrap_or_else(|| "released by the agent".into());
            match (a.grant_id, a.task) {
                (Some(grant), None) => done(desk.release(&grant, why).await.map(|g| {
                    (
                        format!("grant {} is {}", g.id, g.state.as_str()),
                        to_value(&g),
                        Some(g.id.clone()),
                    )
                })),
                (None, Some(task)) => done(desk.release_task(&task, why).await.map(|g| {
                    (
                        format!("{} grants of task {task} are ending", g.len()),
                        json!({"grants": g}),
                        None,
                    )
                })),
                _ => {
                    return Err(ErrorData::invalid_params(
                        "release_access: give grant_id or task, one of them",
                        None,
                    ));
                }
            }
        }
        "get_token" => {
            let a: TokenArgs = args(name, given)?;
            done(desk.token(&a.grant_id).await.map(|t| {
                (
                    format!(
                        "a token for {} until {} (in structured content)",
                        t.audience, t.expires_at
                    ),
                    to_value(&t),
                    Some(t.grant_id.clone()),
                )
            }))
        }
        "explain" => {
            let a: ExplainArgs = args(name, given)?;
            let body = ExplainBody {
                access: a.access,
                duration: a.duration,
                ticket: a.ticket,
            };
            done(
                desk.explain(body)
                    .await
                    .map(|e| (format!("{}: {}", e.outcome, e.detail), to_value(&e), None)),
            )
        }
        other => {
            return Err(ErrorData::invalid_params(
                format!("no tool {other:?}"),
                None,
            ));
        }
    })
}

/// The request's state; while it is pending, waits up to `wait` seconds for a decision,
/// reporting progress each second.
async fn status<D: Desk + ?Sized>(
    desk: &D,
    id: &str,
    wait: u64,
    progress: &Progress,
) -> Result<(String, Value, Option<String>), Problem> {
    let mut waited = 0;
    loop {
        let r = desk.request(id).await?;
        let pending = r.state.as_str() == "pending";
        if !pending || waited >= wait {
            let text = if pending && wait > 0 {
                format!("request {} is still pending after {wait}s", r.id)
            } else {
                format!("request {} is {}", r.id, r.state.as_str())
            };
            return Ok((text, to_value(&r), Some(r.id.clone())));
        }
        progress
            .report(
                waited,
                wait,
                format!("request {} is waiting for a decision", r.id),
            )
            .await;
        // Polling, not an expiry: how often the answer is looked at again.
        tokio::time::sleep(Duration::from_secs(1)).await;
        waited += 1;
    }
}
