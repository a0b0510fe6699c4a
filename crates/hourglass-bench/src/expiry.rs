//! `expiry-burst`: N active grants on a webhook target, all expiring within the same 10 seconds.
//! The grants are written straight into a fresh store before the server starts (as a server that
//! granted them earlier would have left them). Measured: the scheduler's CPU while idle before
//! the burst (the process's CPU time over a quiet window), and each grant's revocation lag
//! (revoked-at minus expires-at, from its `grant.revoked` audit event). The bound: every
//! revocation is confirmed in its own durable commit, so N grants take at least N / (raw SQLite
//! commit rate) to drain; that floor is printed next to the measured drain time.

use std::time::Duration;

use anyhow::{Result, bail};
use hourglass_core::{
    GrantDuration, Timestamp,
    grant::{Grant, GrantState},
    id::{AccessId, EntitlementId, GrantId, PrincipalId, RequestId, TargetId},
    request::{Request, RequestState},
    store::{Commit, Store},
};
use hourglass_store::SqliteStore;

use crate::{
    harness::{Server, receiver, sqlite_commits_per_sec, write_config_batched},
    stats::{Report, Samples, now},
};

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime), counted after the command name; clock ticks of 10 ms.
    Ok((ticks(11) + ticks(12)) / 100.0)
}

/// Writes `n` active grants (and their requests) that expire spread over `[from, from + 10 s)`.
pub async fn seed_active(
    store: &dyn Store,
    n: usize,
    from: Timestamp,
    created: Timestamp,
) -> Result<()> {
    let ent = EntitlementId::new("hook/read").map_err(anyhow::Error::msg)?;
    let who = PrincipalId::new("u0").map_err(anyhow::Error::msg)?;
    let target = TargetId::new("hook").map_err(anyhow::Error::msg)?;
    let mut i = 0;
    while i < n {
        let mut commit = Commit::default();
        for k in i..(i + 1_000).min(n) {
            let expires = from.plus_millis((k as i64 * 10_000) / n as i64);
            let request = Request {
                id: RequestId::generate(created).map_err(|e| anyhow::anyhow!("{e:?}"))?,
                requester: who.clone(),
                access: AccessId::Entitlement(ent.clone()),
                duration: GrantDuration::from_secs(3600),
                reason: "bench".into(),
                ticket: None,
                state: RequestState::Fulfilled,
                state_reason: None,
                created_at: created,
                updated_at: created,
                decide_by: created,
                policy_hash: "bench".into(),
                grant_id: None,
                public_key: None,
                break_glass: false,
                mfa: false,
                source_ip: None,
                starts_at: None,
                extends: None,
                actors: Vec::new(),
                exchange: None,
                ticket_facts: None,
                task: None,
                version: 0,
            };
            let grant = Grant {
                id: GrantId::generate(created).map_err(|e| anyhow::anyhow!("{e:?}"))?,
                request_id: request.id.clone(),
                principal: who.clone(),
                entitlement: ent.clone(),
                target: target.clone(),
                state: GrantState::Active,
                starts_at: created,
                expires_at: expires,
                created_at: created,
                activated_at: Some(created),
                revoke_due_at: None,
                ended_at: None,
                end_reason: None,
                handle: None,
                credential_fingerprint: None,
                public_key: None,
                break_glass: false,
                version: 0,
            };
            commit.requests.push(request);
            commit.grants.push(grant);
        }
        store
            .commit(commit)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        i += 1_000;
    }
    Ok(())
}

/// Waits until no grant is active or revoking (the burst is drained), at most `deadline`.
pub async fn wait_drained(store: &dyn Store, deadline: Duration) -> Result<()> {
    let drain = now();
    loop {
        let c = store
            .grant_counts(Timestamp::from_unix_millis(0))
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if c.active == 0 && c.revoking == 0 {
            return Ok(());
        }
        if drain.elapsed() > deadline {
            bail!(
                "expiry-burst: {} active, {} revoking after {deadline:?}",
                c.active,
                c.revoking
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each revocation's lag (revoked-at minus expires-at), from the `grant.revoked` records.
pub async fn revocation_lags(store: &dyn Store) -> Result<Samples> {
    let mut lags = Samples::default();
    hourglass_core::store::walk_audit(store, 0, |e| {
        if e.record.action == "grant.revoked"
            && let Some((_, v)) = e.record.details.iter().find(|(k, _)| k == "lag_ms")
        {
            lags.push(Duration::from_millis(v.parse().unwrap_or(0)));
        }
        anyhow::Ok(true)
    })
    .await?;
    Ok(lags)
}

/// The burst on each write path of [`crate::decide::WRITE_PATHS`], one after the other.
pub async fn run(n: usize, idle: Duration) -> Result<()> {
    for (label, max_batch) in crate::decide::WRITE_PATHS {
        run_on(n, idle, label, max_batch).await?;
    }
    Ok(())
}

async fn run_on(n: usize, idle: Duration, label: &str, max_batch: u32) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let raw = sqlite_commits_per_sec(dir.path(), 2_000).await?;
    let hook = receiver().await?;
    let (config, _) = write_config_batched(dir.path(), hook, 1, max_batch)?;
    let url = format!("sqlite://{}", dir.path().join("hourglass.db").display());
    let store = SqliteStore::open(&url)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let wall = hourglass_core::Clock::now(&hourglass_server::clock::SystemClock);
    // Seeding, starting and the idle window all happen before the first expiry.
    let lead = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX) + 5_000 + (n as i64 / 5);
    let burst = wall.plus_millis(lead);
    seed_active(&store, n, burst, wall).await?;
    store.close().await;

    let server = Server::start(&config).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0 = cpu_seconds()?;
    let t = now();
    tokio::time::sleep(idle).await;
    let idle_cpu = (cpu_seconds()? - cpu0) / t.elapsed().as_secs_f64();
    if hourglass_core::Clock::now(&hourglass_server::clock::SystemClock) >= burst {
        bail!("expiry-burst: seeding took so long that the idle window reached the burst");
    }

    let store = server.running.store().clone();
    wait_drained(store.as_ref(), Duration::from_secs(600 + n as u64 / 100)).await?;
    let now_ms = hourglass_core::Clock::now(&hourglass_server::clock::SystemClock);
    let burst_end = burst.plus_millis(10_000);
    let drained_after_burst_s = now_ms.millis_since(burst_end).max(0) as f64 / 1000.0;
    let lags = revocation_lags(store.as_ref()).await?;
    server.running.stop().await;
    if lags.len() != n {
        bail!("expiry-burst: {} of {n} revocations recorded", lags.len());
    }
    let ms = |us: f64| us / 1000.0;
    let writes = store.write_stats();
    Report::new("expiry-burst")
        .field("write_path", label)
        .field("grants", n)
        .num("lag_median_ms", ms(lags.median()), 0)
        .num("lag_p99_ms", ms(lags.percentile(99.0)), 0)
        .num("lag_max_ms", ms(lags.percentile(100.0)), 0)
        .num("idle_cpu_percent", idle_cpu * 100.0, 2)
        .num("drained_after_window_s", drained_after_burst_s, 1)
        .num("raw_sqlite_commits_per_s", raw, 0)
        .num("floor_drain_s", n as f64 / raw, 1)
        .num(
            "writes_per_transaction",
            writes.writes as f64 / writes.transactions.max(1) as f64,
            2,
        )
        .print();
    Ok(())
}
