//! `audit`: events appended per second through the store (one transaction per batch, each event
//! hash-chained to the one before, the head read inside the transaction) against the same rows
//! inserted with no chain, in the same kind of database, in the same run; then the offline
//! `audit verify` rate over a chain of N events, read in pages as the CLI does.

use anyhow::{Result, bail};
use hourglass_core::{
    Timestamp,
    audit::AuditRecord,
    store::{Commit, Store},
};
use hourglass_store::SqliteStore;
use sqlx::{ConnectOptions, Connection, sqlite::SqliteConnectOptions};

use crate::stats::{Report, now};

fn record(i: usize) -> AuditRecord {
    AuditRecord::new(
        Timestamp::from_unix_millis(1_800_000_000_000 + i as i64),
        "u1",
        hourglass_core::event::EventKind::GrantRevoked,
        format!("grt_{i:032x}"),
    )
    .with("lag_ms", i % 997)
    .with("reason", "expired")
}

async fn chained(store: &SqliteStore, events: usize, batch: usize) -> Result<f64> {
    let t = now();
    let mut i = 0;
    while i < events {
        let n = batch.min(events - i);
        store
            .commit(Commit {
                audit: (i..i + n).map(record).collect(),
                ..Commit::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        i += n;
    }
    Ok(events as f64 / t.elapsed().as_secs_f64())
}

async fn plain(path: &std::path::Path, events: usize, batch: usize) -> Result<f64> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
        .connect()
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS plain_events (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL,
           actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL, details TEXT NOT NULL) STRICT",
    )
    .execute(&mut conn)
    .await?;
    let t = now();
    let mut i = 0;
    while i < events {
        let n = batch.min(events - i);
        let mut tx = conn.begin().await?;
        for k in i..i + n {
            let r = record(k);
            sqlx::query(
                "INSERT INTO plain_events (at, actor, action, subject, details) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(r.at.unix_millis())
            .bind(&r.actor)
            .bind(&r.action)
            .bind(&r.subject)
            .bind(serde_json::to_string(&r.details)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        i += n;
    }
    Ok(events as f64 / t.elapsed().as_secs_f64())
}

pub async fn run(append_events: usize, verify_events: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    for batch in [1usize, 100] {
        let events = if batch == 1 {
            append_events / 10
        } else {
            append_events
        };
        let store = SqliteStore::open(&format!(
            "sqlite://{}",
            dir.path().join(format!("chain{batch}.db")).display()
        ))
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let with = chained(&store, events, batch).await?;
        store.close().await;
        let without = plain(&dir.path().join(format!("plain{batch}.db")), events, batch).await?;
        Report::new("audit-append")
            .field("events", events)
            .field("events_per_commit", batch)
            .num("chained_per_s", with, 0)
            .num("unchained_per_s", without, 0)
            .num("ratio", with / without, 2)
            .print();
    }

    let url = format!("sqlite://{}", dir.path().join("verify.db").display());
    let store = SqliteStore::open(&url)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    chained(&store, verify_events, 10_000).await?;
    store.close().await;
    let reader = SqliteStore::open_read_only(&url)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    // What `hourglass audit verify` runs: pages from the store, hashes on every core.
    let t = now();
    let (v, broken) = hourglass_core::store::verify_chain(&reader)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    if let Some(b) = broken {
        bail!("audit verify: broken at {}: {}", b.seq, b.reason);
    }
    let secs = t.elapsed().as_secs_f64();
    if v.checked() != verify_events as u64 {
        bail!("audit verify: {} of {verify_events} events", v.checked());
    }
    Report::new("audit-verify")
        .field("events", verify_events)
        .num("seconds", secs, 2)
        .num("events_per_s", verify_events as f64 / secs, 0)
        .print();
    Ok(())
}
