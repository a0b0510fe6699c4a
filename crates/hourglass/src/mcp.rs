//! `hourglass mcp`: an MCP server over stdio for an agent host on the same machine, on the
//! official Rust SDK (`rmcp`). It speaks to the Hourglass server as the agent, with the agent's
//! API key (`HOURGLASS_TOKEN`), so the server judges every call exactly as it judges the API:
//! policy at request time, the agent's own quotas, and no deciding (the engine refuses agents
//! approving, denying, breaking glass and administering on every path).
//!
//! The tools ask, watch and give back; none approves, denies, breaks glass, administers or reads
//! the audit. Each answers with structured content (the API's own views) and a one-line text for
//! a model to read; a refusal is a tool error carrying the server's code and reason.

use std::sync::Arc;

use hourglass_api::CreateRequest;
use hourglass_client::{Client, ClientError};
use rmcp::{
    ErrorData, RoleServer, ServerHandler, ServiceExt,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
        JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
        Tool,
    },
    service::RequestContext,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// The MCP server: the tools, over an API client acting as the agent.
pub struct HourglassMcp {
    client: Client,
}

fn schema(v: Value) -> Arc<JsonObject> {
    Arc::new(match v {
        Value::Object(o) => o,
        _ => JsonObject::new(),
    })
}

/// The tools, with what a model needs to use them well.
pub fn tools() -> Vec<Tool> {
    let none =
        || schema(json!({"type": "object", "properties": {}, "additionalProperties": false}));
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
             `pending` (waiting for a person: poll request_status), or an error saying why it was \
             refused. Ask only for what the current task needs, for as short as it needs.",
            schema(json!({
                "type": "object",
                "properties": {
                    "access": {"type": "string", "description": "The entitlement (`target/name`) or profile, as list_access names it."},
                    "duration": {"type": "string", "description": "How long: `15m`, `1h`, `1h30m`. The entitlement's default when absent."},
                    "reason": {"type": "string", "minLength": 1, "description": "What the access is for, for the people who review it."},
                    "ticket": {"type": "string", "description": "The ticket the task belongs to (`HD-1234`), where policy wants one."}
                },
                "required": ["access", "reason"],
                "additionalProperties": false
            })),
        ),
        Tool::new(
            "request_status",
            "The state of one of this agent's requests: `pending` (waiting for a decision until \
             `decide_by`), `fulfilled` (its grants are listed), `denied` (with the reason), \
             `cancelled`, `expired` or `failed`.",
            schema(json!({
                "type": "object",
                "properties": {"request_id": {"type": "string", "description": "The id request_access answered (`req_…`)."}},
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
            "End one of this agent's grants now, when the task is done: the access is revoked in \
             the target. Release as soon as the work is finished.",
            schema(json!({
                "type": "object",
                "properties": {
                    "grant_id": {"type": "string", "description": "The grant to end (`grt_…`), from my_grants or request_status."},
                    "reason": {"type": "string", "description": "Why it ends (`task done`)."}
                },
                "required": ["grant_id"],
                "additionalProperties": false
            })),
        ),
    ]
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusArgs {
    request_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseArgs {
    grant_id: String,
    #[serde(default)]
    reason: Option<String>,
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
fn refusal(e: ClientError) -> CallToolResult {
    let (value, text) = match e {
        ClientError::Problem(p) => (
            json!({"code": p.code, "status": p.status, "detail": p.detail}),
            format!("refused ({}): {}", p.code, p.detail),
        ),
        other => (
            json!({"code": "unavailable", "detail": other.to_string()}),
            format!("Hourglass could not be reached: {other}"),
        ),
    };
    let mut r = CallToolResult::structured_error(value);
    r.content = vec![ContentBlock::text(text)];
    r
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl HourglassMcp {
    pub fn new(client: Client) -> Self {
        HourglassMcp { client }
    }

    /// Runs one tool; an unknown tool or arguments that do not fit are protocol errors.
    pub async fn run_tool(
        &self,
        name: &str,
        given: Option<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        let c = &self.client;
        Ok(match name {
            "whoami" => {
                let NoArgs {} = args(name, given)?;
                match c.whoami().await {
                    Ok(w) => answer(format!("{} ({})", w.principal, w.kind), to_value(&w)),
                    Err(e) => refusal(e),
                }
            }
            "list_access" => {
                let NoArgs {} = args(name, given)?;
                match c.catalogue().await {
                    Ok(offers) => answer(
                        format!("{} entitlements or profiles may be asked for", offers.len()),
                        json!({"access": offers}),
                    ),
                    Err(e) => refusal(e),
                }
            }
            "request_access" => {
                let a: RequestArgs = args(name, given)?;
                let body = CreateRequest {
                    entitlement: a.access,
                    duration: a.duration,
                    reason: a.reason,
                    ticket: a.ticket,
                    ..CreateRequest::default()
                };
                match c.create_request(&body).await {
                    Ok(r) => answer(
                        format!("request {} is {}", r.id, r.state.as_str()),
                        to_value(&r),
                    ),
                    Err(e) => refusal(e),
                }
            }
            "request_status" => {
                let a: StatusArgs = args(name, given)?;
                match c.get_request(&a.request_id).await {
                    Ok(r) => answer(
                        format!("request {} is {}", r.id, r.state.as_str()),
                        to_value(&r),
                    ),
                    Err(e) => refusal(e),
                }
            }
            "my_grants" => {
                let NoArgs {} = args(name, given)?;
                let mut live = Vec::new();
                for state in ["active", "provisioning"] {
                    match c.list_grants(Some(state)).await {
                        Ok(g) => live.extend(g),
                        Err(e) => return Ok(refusal(e)),
                    }
                }
                answer(
                    format!("{} live grants", live.len()),
                    json!({"grants": live}),
                )
            }
            "release_access" => {
                let a: ReleaseArgs = args(name, given)?;
                let why = a.reason.unwrap_or_else(|| "released by the agent".into());
                match c.revoke(&a.grant_id, Some(why)).await {
                    Ok(g) => answer(
                        format!("grant {} is {}", g.id, g.state.as_str()),
                        to_value(&g),
                    ),
                    Err(e) => refusal(e),
                }
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!(
                        "no tool {other:?}; the tools are whoami, list_access, request_access, request_status, my_grants and release_access"
                    ),
                    None,
                ));
            }
        })
    }
}

impl ServerHandler for HourglassMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("hourglass", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Hourglass grants time-boxed access. Ask with request_access for what the task \
                 needs, for as short as it needs, with an honest reason; poll request_status \
                 while a person decides; release_access when done. This agent cannot approve \
                 anything.",
            )
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
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.run_tool(&request.name, request.arguments)
            .await
            .map(Into::into)
    }
}

/// Serves MCP on stdin and stdout until the host closes them.
pub async fn serve_stdio(client: Client) -> anyhow::Result<()> {
    let service = HourglassMcp::new(client)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("MCP: {e}"))?;
    service
        .waiting()
        .await
        .map_err(|e| anyhow::anyhow!("MCP: {e}"))?;
    Ok(())
}
