//! `decide`: an auto-approved request until its grant is active, over HTTP, with 1, 8 and 64
//! concurrent clients (each its own principal). Each client then revokes its grant, so that the
//! next request is not a duplicate; a cycle is six durable write transactions (request,
//! provisioning claim, activation, revocation, revocation claim, confirmation). The bound is
//! SQLite's raw durable commit rate here, measured in the same run, divided by six.

use std::time::Duration;

use anyhow::{Context, Result};
use hourglass_api::CreateRequest;

use crate::{
    harness::{Server, concurrently, receiver, sqlite_commits_per_sec, write_config_batched},
    stats::{Report, Samples, now},
};

/// Each client (one per token, spread round-robin over `servers`) runs `per_client` cycles: an
/// auto-approved request of `hook/read`, timed until its grant is active, then revoked. All
/// samples, and the seconds the whole run took.
pub async fn cycles(
    scenario: &str,
    servers: &[&Server],
    tokens: &[String],
    per_client: usize,
) -> Result<(Samples, f64)> {
    let mut tasks = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let client = servers[i % servers.len()].client(token)?;
        tasks.push(async move {
            let mut samples = Samples::default();
            for _ in 0..per_client {
                let t = now();
                let r = client
                    .create_request(&CreateRequest {
                        entitlement: "hook/read".into(),
                        duration: Some("15m".into()),
                        reason: "bench".into(),
                        ..CreateRequest::default()
                    })
                    .await?;
                let gid = r.grant_id.context("not auto-approved")?;
                loop {
                    if client.get_grant(&gid).await?.state == "active" {
                        break;
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                samples.push(t.elapsed());
                client.revoke(&gid, None).await?;
            }
            anyhow::Ok(samples)
        });
    }
    concurrently(scenario, tasks, per_client).await
}

/// Write transactions per measured cycle.
const TX_PER_CYCLE: f64 = 6.0;

/// The two write paths compared side by side: each write its own durable transaction (as
/// before group commit), and group commit.
pub const WRITE_PATHS: [(&str, u32); 2] = [
    ("one transaction per write", 1),
    ("group commit", hourglass_store::MAX_BATCH),
];

pub async fn run(concurrency: &[usize], per_client: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let raw = sqlite_commits_per_sec(dir.path(), 2_000).await?;
    let hook = receiver().await?;
    let max = concurrency.iter().copied().max().unwrap_or(1);
    let mut servers = Vec::new();
    for (label, max_batch) in WRITE_PATHS {
        let sub = dir.path().join(max_batch.to_string());
        let (config, tokens) = write_config_batched(&sub, hook, max, max_batch)?;
        servers.push((label, Server::start(&config).await?, tokens));
    }
    for &clients in concurrency {
        // The two servers take turns, so that the machine's moods fall on both alike.
        for (label, server, tokens) in &servers {
            let before = server.running.store().write_stats();
            let (all, secs) = cycles("decide", &[server], &tokens[..clients], per_client).await?;
            let after = server.running.store().write_stats();
            let rps = all.len() as f64 / secs;
            let bound = raw / TX_PER_CYCLE;
            let writes_per_tx = (after.writes - before.writes) as f64
                / (after.transactions - before.transactions).max(1) as f64;
            Report::new("decide")
                .field("write_path", *label)
                .field("clients", clients)
                .field("requests", all.len())
                .num("median_ms", all.median() / 1000.0, 2)
                .num("p99_ms", all.percentile(99.0) / 1000.0, 2)
                .num("requests_per_s", rps, 0)
                .num("writes_per_transaction", writes_per_tx, 2)
                .num("raw_sqlite_commits_per_s", raw, 0)
                .num("bound_requests_per_s", bound, 0)
                .num("ratio_to_bound", rps / bound, 2)
                .print();
        }
    }
    for (_, server, _) in servers {
        server.running.stop().await;
    }
    Ok(())
}
