//! `startup`: a store holding F finished grants and A active ones (their requests too), then
//! the time from starting a server process to `/readyz` answering 200, and its resident memory
//! once ready; then the same with ten times fewer rows, to show how both grow. The server runs
//! as a separate process (this binary, re-executed as `serve-child`), so that its start and its
//! memory are its own. Nothing at start may grow with the number of grants: expiry is driven by
//! an index, not by loading grants.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use hourglass_store::SqliteStore;
use sqlx::{ConnectOptions, Connection, sqlite::SqliteConnectOptions};

use crate::{
    harness::{receiver, write_config},
    stats::{Report, now},
};

/// Fills a migrated store with `finished` revoked grants and `active` ones far from expiry.
async fn seed(path: &std::path::Path, finished: usize, active: usize) -> Result<()> {
    let url = format!("sqlite://{}", path.display());
    SqliteStore::open(&url)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .close()
        .await;
    let mut conn = SqliteConnectOptions::new().filename(path).connect().await?;
    let total = i64::try_from(finished + active)?;
    let now = 1_800_000_000_000_i64;
    let mut tx = conn.begin().await?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1)
         INSERT INTO requests (id, requester, access_kind, entitlement, duration_secs, reason, state,
           created_at, updated_at, decide_by, policy_hash, grant_id, version)
         SELECT printf('req_%032x', i), 'u0', 'entitlement', 'hook/read', 3600, 'bench', 'fulfilled',
           ?2, ?2, ?2, 'bench', printf('grt_%032x', i), 1 FROM n",
    )
    .bind(total)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1)
         INSERT INTO grants (id, request_id, principal, entitlement, target, state, starts_at,
           expires_at, created_at, activated_at, revoke_due_at, ended_at, end_reason, version)
         SELECT printf('grt_%032x', i), printf('req_%032x', i), 'u0', 'hook/read', 'hook',
           CASE WHEN i < ?2 THEN 'revoked' ELSE 'active' END,
           ?3, CASE WHEN i < ?2 THEN ?3 + 3600000 ELSE ?4 END, ?3, ?3,
           CASE WHEN i < ?2 THEN ?3 + 3600000 END, CASE WHEN i < ?2 THEN ?3 + 3600100 END,
           CASE WHEN i < ?2 THEN 'expired' END, 1 FROM n",
    )
    .bind(total)
    .bind(i64::try_from(finished)?)
    .bind(now)
    // Active grants end in a year: nothing expires while the start is measured.
    .bind(now + 365 * 24 * 3_600_000)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // As a server that ran would have left it: checkpointed, the WAL empty.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .context("no VmRSS")?;
    Ok(kb / 1024.0)
}

/// Starts a server process on `config`; returns (seconds to ready, MiB resident when ready).
async fn measure(config: &std::path::Path) -> Result<(f64, f64)> {
    let exe = std::env::current_exe()?;
    let t = now();
    let mut child = Command::new(exe)
        .args(["serve-child", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let addr = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(std::result::Result::ok)
            .find_map(|l| l.strip_prefix("listening on ").map(str::to_owned))
    })
    .await?
    .context("the server exited before listening")?;
    let client = hourglass_client::Client::new(&format!("http://{addr}"), None)?;
    let ready = loop {
        if client.get_status("/readyz").await.is_ok_and(|s| s == 200) {
            break t.elapsed().as_secs_f64();
        }
        if t.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            bail!("startup: not ready after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let rss = rss_mib(child.id())?;
    let _ = child.kill();
    let _ = child.wait();
    Ok((ready, rss))
}

pub async fn run(finished: usize, active: usize) -> Result<()> {
    let hook = receiver().await?;
    let mut rows = Vec::new();
    for div in [10usize, 1] {
        let dir = tempfile::tempdir()?;
        let (config, _) = write_config(dir.path(), hook, 1, "")?;
        let (f, a) = (finished / div, active / div);
        seed(&dir.path().join("hourglass.db"), f, a).await?;
        let (ready, rss) = measure(&config).await?;
        rows.push((f + a, ready, rss));
        Report::new("startup")
            .field("finished_grants", f)
            .field("active_grants", a)
            .num("seconds_to_ready", ready, 3)
            .num("rss_mib", rss, 1)
            .print();
    }
    if let [(small, t1, m1), (large, t2, m2)] = rows[..] {
        Report::new("startup")
            .num("rows_ratio", large as f64 / small as f64, 0)
            .num("time_ratio", t2 / t1, 2)
            .num("rss_ratio", m2 / m1, 2)
            .print();
    }
    Ok(())
}

/// The child: serve `config` until killed, saying where it listens.
pub async fn serve_child(config: &std::path::Path) -> Result<()> {
    let server = crate::harness::Server::start(config).await?;
    println!("listening on {}", server.running.addr);
    std::future::pending::<()>().await;
    Ok(())
}
