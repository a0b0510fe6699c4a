//! `postgres`: the decide cycle and an expiry burst on SQLite, on PostgreSQL with one replica,
//! and on PostgreSQL with three replicas sharing it (three servers in this process, clients
//! spread over them), side by side in one run. Then what the audit chain's lock costs:
//! concurrent audit-only commits through the store next to raw one-row PostgreSQL commits from
//! as many connections. The server is `HOURGLASS_BENCH_POSTGRES_URL` (default the local one);
//! each setup gets a fresh database, dropped afterwards.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use hourglass_core::{
    Clock, Timestamp,
    audit::AuditRecord,
    store::{Commit, Store},
};
use sqlx::{AssertSqlSafe, Connection};

use crate::{
    decide::cycles,
    expiry::{revocation_lags, seed_active, wait_drained},
    harness::{Server, receiver, write_config_on},
    stats::{Report, now},
};

fn admin_url() -> String {
    std::env::var("HOURGLASS_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database on the benchmark server: its URL and name.
async fn fresh_database() -> Result<(String, String)> {
    let admin = admin_url();
    let mut c = sqlx::PgConnection::connect(&admin)
        .await
        .with_context(|| format!("PostgreSQL at {}", hourglass_store::redact(&admin)))?;
    let name = format!(
        "hgbench_{}",
        hourglass_core::id::random_hex::<5>().map_err(|e| anyhow::anyhow!("{e:?}"))?
    );
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await?;
    let root = admin.rsplit_once('/').map_or(admin.as_str(), |(r, _)| r);
    Ok((format!("{root}/{name}"), name))
}

async fn drop_database(name: &str) -> Result<()> {
    let mut c = sqlx::PgConnection::connect(&admin_url()).await?;
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut c)
    .await?;
    Ok(())
}

/// One store setup: where it is, how many replicas serve it, and what to drop afterwards.
struct Setup {
    label: &'static str,
    replicas: usize,
    url: String,
    database: Option<String>,
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
}

async fn setups() -> Result<Vec<Setup>> {
    let mut out = Vec::new();
    for (label, replicas) in [("sqlite", 1), ("postgres", 1), ("postgres", 3)] {
        let dir = tempfile::tempdir()?;
        let (url, database) = if label == "sqlite" {
            ("sqlite://hourglass.db".to_owned(), None)
        } else {
            let (url, name) = fresh_database().await?;
            (url, Some(name))
        };
        out.push(Setup {
            label,
            replicas,
            url,
            database,
            dir: dir.path().to_owned(),
            _dir: dir,
        });
    }
    Ok(out)
}

async fn start(config: &std::path::Path, n: usize) -> Result<Vec<Server>> {
    let mut servers = Vec::new();
    for _ in 0..n {
        servers.push(Server::start(config).await?);
    }
    Ok(servers)
}

async fn stop(servers: Vec<Server>) {
    for s in servers {
        s.running.stop().await;
    }
}

pub async fn run(clients: usize, per_client: usize, burst: usize) -> Result<()> {
    let hook = receiver().await?;
    let mut sqlite_rps = None;
    for s in setups().await? {
        let (config, tokens) = write_config_on(&s.dir, hook, clients, "", &s.url, "")?;
        let servers = start(&config, s.replicas).await?;
        let refs: Vec<&Server> = servers.iter().collect();
        let (all, secs) = cycles("postgres-decide", &refs, &tokens, per_client).await?;
        stop(servers).await;
        let rps = all.len() as f64 / secs;
        let base = *sqlite_rps.get_or_insert(rps);
        Report::new("decide")
            .field("store", s.label)
            .field("replicas", s.replicas)
            .field("clients", clients)
            .field("requests", all.len())
            .num("median_ms", all.median() / 1000.0, 2)
            .num("p99_ms", all.percentile(99.0) / 1000.0, 2)
            .num("requests_per_s", rps, 0)
            .num("ratio_to_sqlite", rps / base, 2)
            .print();
        if let Some(db) = &s.database {
            drop_database(db).await?;
        }
    }
    for s in setups().await? {
        expiry_burst(&s, hook, burst).await?;
        if let Some(db) = &s.database {
            drop_database(db).await?;
        }
    }
    audit_lock().await
}

/// `n` grants expiring over the same 10 seconds, served by the setup's replicas: each grant's
/// revocation lag (from its `grant.revoked` record) and how long after the window all were done.
async fn expiry_burst(s: &Setup, hook: std::net::SocketAddr, n: usize) -> Result<()> {
    let (config, _) = write_config_on(&s.dir, hook, 1, "", &s.url, "")?;
    let url = if s.url.starts_with("sqlite:") {
        format!("sqlite://{}", s.dir.join("hourglass.db").display())
    } else {
        s.url.clone()
    };
    let store = hourglass_store::open(&url, &hourglass_store::PoolOptions::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let wall = hourglass_server::clock::SystemClock.now();
    let burst = wall.plus_millis(3_000 + n as i64 / 3);
    seed_active(store.as_ref(), n, burst, wall).await?;
    drop(store);
    let servers = start(&config, s.replicas).await?;
    let store = servers[0].running.store().clone();
    wait_drained(store.as_ref(), Duration::from_secs(600)).await?;
    let after_window = hourglass_server::clock::SystemClock
        .now()
        .millis_since(burst.plus_millis(10_000))
        .max(0) as f64
        / 1000.0;
    let lags = revocation_lags(store.as_ref()).await?;
    drop(store);
    stop(servers).await;
    if lags.len() != n {
        bail!(
            "postgres expiry-burst: {} of {n} revocations recorded",
            lags.len()
        );
    }
    Report::new("expiry-burst")
        .field("store", s.label)
        .field("replicas", s.replicas)
        .field("grants", n)
        .num("lag_median_ms", lags.median() / 1000.0, 0)
        .num("lag_p99_ms", lags.percentile(99.0) / 1000.0, 0)
        .num("lag_max_ms", lags.percentile(100.0) / 1000.0, 0)
        .num("drained_after_window_s", after_window, 1)
        .print();
    Ok(())
}

/// Audit-only commits through the store from 8 tasks (every one takes the chain's lock) next to
/// raw one-row commits from 8 connections, for 3 seconds each.
async fn audit_lock() -> Result<()> {
    const WRITERS: usize = 8;
    let window = Duration::from_secs(3);
    let (url, name) = fresh_database().await?;
    let store = std::sync::Arc::new(
        hourglass_store::PgStore::open(&url, &hourglass_store::PoolOptions::default())
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?,
    );
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let store = std::sync::Arc::clone(&store);
        tasks.spawn(async move {
            let t = now();
            let mut n = 0u64;
            while t.elapsed() < window {
                store
                    .commit(Commit {
                        audit: vec![AuditRecord::with_action(
                            Timestamp::from_unix_millis(0),
                            "bench",
                            "bench.append",
                            format!("w{w}"),
                        )],
                        ..Commit::default()
                    })
                    .await
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                n += 1;
            }
            anyhow::Ok(n)
        });
    }
    let mut chained = 0;
    while let Some(n) = tasks.join_next().await {
        chained += n??;
    }
    store.close().await;
    let mut c = sqlx::PgConnection::connect(&url).await?;
    sqlx::query("CREATE TABLE raw_bench (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)")
        .execute(&mut c)
        .await?;
    c.close().await?;
    for _ in 0..WRITERS {
        let url = url.clone();
        tasks.spawn(async move {
            let mut c = sqlx::PgConnection::connect(&url).await?;
            let t = now();
            let mut n = 0u64;
            while t.elapsed() < window {
                sqlx::query("INSERT INTO raw_bench (v) VALUES ('x')")
                    .execute(&mut c)
                    .await?;
                n += 1;
            }
            anyhow::Ok(n)
        });
    }
    let mut raw = 0;
    while let Some(n) = tasks.join_next().await {
        raw += n??;
    }
    drop_database(&name).await?;
    let secs = window.as_secs_f64();
    Report::new("audit-chain-lock")
        .field("writers", WRITERS)
        .num("chained_appends_per_s", chained as f64 / secs, 0)
        .num("raw_pg_commits_per_s", raw as f64 / secs, 0)
        .num("ratio", chained as f64 / raw as f64, 2)
        .print();
    Ok(())
}
