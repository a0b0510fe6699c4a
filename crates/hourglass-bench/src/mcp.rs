//! `mcp`: agents asking for an auto-approved entitlement through the MCP endpoint (`/mcp`,
//! streamable HTTP, a `tools/call` of `request_access`), side by side with the same request
//! over the API (`POST /v1/requests`), 1 and 8 concurrent agents (each its own identity). Each
//! agent then releases its grant over the API (untimed) so that the next ask is not a
//! duplicate. The tool call writes one more transaction than the API call (its
//! `agent.tool_called` record); the ratio says what MCP costs on top of the API.

use anyhow::{Context, Result, bail};
use hourglass_api::CreateRequest;
use serde_json::{Value, json};

use crate::{
    harness::{Server, concurrently, receiver, write_config_on},
    stats::{Report, Samples, now},
};

/// A server whose clients are agents, with quotas out of the way; their tokens.
fn config(
    dir: &std::path::Path,
    hook: std::net::SocketAddr,
    agents: usize,
) -> Result<(std::path::PathBuf, Vec<String>)> {
    let (path, _) = write_config_on(dir, hook, 1, "", "sqlite://hourglass.db", "")?;
    let mut text = std::fs::read_to_string(&path)?.replace(
        "[quotas]\n",
        "[quotas]\nmax_live_grants_per_agent = 1000000\nmax_requests_per_hour_per_agent = 1000000\n",
    );
    let mut tokens = Vec::new();
    for i in 0..agents {
        let token = hourglass_server::auth::new_token().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        text.push_str(&format!(
            "\n[[identities]]\nname = \"agent{i}\"\nkind = \"agent\"\nowner = \"u0\"\ngroups = [\"bench\"]\ntoken_sha256 = [\"{}\"]\n",
            hourglass_server::auth::token_hash(&token)
        ));
        tokens.push(token);
    }
    std::fs::write(&path, text)?;
    Ok((path, tokens))
}

/// One `tools/call` of `request_access` over `/mcp`; the grant it opened.
async fn tool_call(http: &reqwest::Client, base: &str, token: &str, id: u64) -> Result<String> {
    let body = json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "request_access", "arguments": {
            "access": "hook/read", "duration": "15m", "reason": "bench", "task": "bench"}}
    });
    let resp = http
        .post(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let answer: Value = resp.json().await?;
    if !status.is_success() || answer["result"]["isError"] == true {
        bail!("request_access failed ({status}): {answer}");
    }
    answer["result"]["structuredContent"]["grant_id"]
        .as_str()
        .map(str::to_owned)
        .context("not auto-approved")
}

/// `per_client` asks by each agent, through MCP (`mcp`) or the API; all samples and seconds.
async fn asks(
    server: &Server,
    tokens: &[String],
    per_client: usize,
    mcp: bool,
) -> Result<(Samples, f64)> {
    let mut tasks = Vec::new();
    for token in tokens {
        let client = server.client(token)?;
        let http = reqwest::Client::new();
        let (base, token) = (server.base.clone(), token.clone());
        tasks.push(async move {
            let mut samples = Samples::default();
            for n in 0..per_client {
                let t = now();
                let grant = if mcp {
                    tool_call(&http, &base, &token, n as u64).await?
                } else {
                    client
                        .create_request(&CreateRequest {
                            entitlement: "hook/read".into(),
                            duration: Some("15m".into()),
                            reason: "bench".into(),
                            task: Some("bench".into()),
                            ..CreateRequest::default()
                        })
                        .await?
                        .grant_id
                        .context("not auto-approved")?
                };
                samples.push(t.elapsed());
                client.revoke(&grant, None).await?;
            }
            anyhow::Ok(samples)
        });
    }
    concurrently("mcp", tasks, per_client).await
}

pub async fn run(concurrency: &[usize], per_client: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let hook = receiver().await?;
    let max = concurrency.iter().copied().max().unwrap_or(1);
    let (config, tokens) = config(dir.path(), hook, max)?;
    let server = Server::start(&config).await?;
    for &clients in concurrency {
        let mut api_rate = 0.0;
        // API first, then MCP, for each client count: the same server, the same moment.
        for mcp in [false, true] {
            let (all, secs) = asks(&server, &tokens[..clients], per_client, mcp).await?;
            let rate = all.len() as f64 / secs;
            let mut r = Report::new("mcp")
                .field(
                    "path",
                    if mcp {
                        "MCP tools/call request_access"
                    } else {
                        "API POST /v1/requests"
                    },
                )
                .field("agents", clients)
                .field("asks", all.len())
                .num("median_ms", all.median() / 1000.0, 2)
                .num("p99_ms", all.percentile(99.0) / 1000.0, 2)
                .num("asks_per_s", rate, 0);
            if mcp {
                r = r.num("ratio_to_api", rate / api_rate, 2);
            } else {
                api_rate = rate;
            }
            r.print();
        }
    }
    server.running.stop().await;
    Ok(())
}
