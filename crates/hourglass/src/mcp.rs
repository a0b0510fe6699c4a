//! `hourglass mcp`: the MCP tools over stdio, for an agent host on the same machine. It speaks
//! to the Hourglass server as the agent, with the agent's API key (`HOURGLASS_TOKEN`), so the
//! server judges every call exactly as it judges the API (policy at request time, the agent's
//! own quotas, no deciding), and records each tool call (`agent.tool_called`, `via = stdio`).
//! The tools themselves are the server's ([`hourglass_server::mcp`]), the same as at `/mcp`.

use async_trait::async_trait;
use hourglass_api::{
    CreateRequest, ExplainBody, ExplainView, GrantTokenView, GrantView, OfferView, Problem,
    RequestView, ToolCallBody, WhoAmI,
};
use hourglass_client::{Client, ClientError};
use hourglass_server::mcp::{Desk, DeskSource, McpServer, problem};
use rmcp::{ErrorData, RoleServer, ServiceExt, service::RequestContext};

/// The stdio server's one agent: an API client with its key.
pub struct HourglassMcp {
    client: Client,
}

/// The tools' way in over the API.
pub struct ApiDesk(Client);

fn p(e: ClientError) -> Problem {
    match e {
        ClientError::Problem(p) => *p,
        other => problem(
            503,
            "unavailable",
            format!("Hourglass could not be reached: {other}"),
        ),
    }
}

#[async_trait]
impl Desk for ApiDesk {
    async fn whoami(&self) -> Result<WhoAmI, Problem> {
        self.0.whoami().await.map_err(p)
    }
    async fn catalogue(&self) -> Result<Vec<OfferView>, Problem> {
        self.0.catalogue().await.map_err(p)
    }
    async fn ask(&self, body: CreateRequest) -> Result<RequestView, Problem> {
        self.0.create_request(&body).await.map_err(p)
    }
    async fn request(&self, id: &str) -> Result<RequestView, Problem> {
        self.0.get_request(id).await.map_err(p)
    }
    async fn grants(&self) -> Result<Vec<GrantView>, Problem> {
        self.0.list_grants(None).await.map_err(p)
    }
    async fn release(&self, grant: &str, reason: String) -> Result<GrantView, Problem> {
        self.0.revoke(grant, Some(reason)).await.map_err(p)
    }
    async fn release_task(&self, task: &str, reason: String) -> Result<Vec<GrantView>, Problem> {
        self.0.release_task(task, Some(reason)).await.map_err(p)
    }
    async fn token(&self, grant: &str) -> Result<GrantTokenView, Problem> {
        self.0.grant_token(grant).await.map_err(p)
    }
    async fn explain(&self, body: ExplainBody) -> Result<ExplainView, Problem> {
        self.0.explain(&body).await.map_err(p)
    }
    async fn tool_called(&self, call: ToolCallBody) -> Result<(), Problem> {
        self.0.tool_called(&call).await.map_err(p)
    }
}

impl DeskSource for HourglassMcp {
    type Desk = ApiDesk;

    fn desk(&self, _context: &RequestContext<RoleServer>) -> Result<ApiDesk, ErrorData> {
        Ok(ApiDesk(self.client.clone()))
    }
}

/// Serves MCP on stdin and stdout until the host closes them.
pub async fn serve_stdio(client: Client) -> anyhow::Result<()> {
    let service = McpServer(HourglassMcp { client })
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("MCP: {e}"))?;
    service
        .waiting()
        .await
        .map_err(|e| anyhow::anyhow!("MCP: {e}"))?;
    Ok(())
}
