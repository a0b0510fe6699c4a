//! `why`: "why was anyone elevated?" over a year of history. A store holding E audit events
//! (ten a grant: request, approval, provisioning, expiry, proof…) for E/10 grants of 1,000
//! people spread over a year; then `GET /v1/why` for one person at one moment, and over 30
//! days, p50 and p99 over HTTP. Side by side in the same run: reading what that person did by
//! scanning the audit (what an answer without the story's indexes would read).

use anyhow::Result;
use hourglass_store::SqliteStore;
use sqlx::{ConnectOptions, Connection, sqlite::SqliteConnectOptions};

use crate::{
    harness::{Server, receiver, write_config},
    stats::{Report, Samples, now},
};

const PEOPLE: usize = 1_000;
const YEAR_MS: i64 = 365 * 86_400_000;
const T0: i64 = 1_750_000_000_000;

/// Fills a migrated store with `events` audit events of `events / 10` grants.
async fn seed(path: &std::path::Path, events: usize) -> Result<usize> {
    let url = format!("sqlite://{}", path.display());
    SqliteStore::open(&url)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .close()
        .await;
    let grants = (events / 10).max(1);
    let step = YEAR_MS / i64::try_from(grants)?;
    let mut conn = SqliteConnectOptions::new().filename(path).connect().await?;
    let mut tx = conn.begin().await?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1)
         INSERT INTO requests (id, requester, access_kind, entitlement, duration_secs, reason, state,
           created_at, updated_at, decide_by, policy_hash, grant_id, version)
         SELECT printf('req_%032x', i), printf('u%d', i % ?2), 'entitlement', 'hook/read', 3600,
           'bench', 'fulfilled', ?3 + i * ?4, ?3 + i * ?4, ?3 + i * ?4, 'bench',
           printf('grt_%032x', i), 1 FROM n",
    )
    .bind(i64::try_from(grants)?)
    .bind(i64::try_from(PEOPLE)?)
    .bind(T0)
    .bind(step)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1)
         INSERT INTO grants (id, request_id, principal, entitlement, target, state, starts_at,
           expires_at, created_at, activated_at, revoke_due_at, ended_at, end_reason, version)
         SELECT printf('grt_%032x', i), printf('req_%032x', i), printf('u%d', i % ?2), 'hook/read',
           'hook', 'revoked', ?3 + i * ?4, ?3 + i * ?4 + 3600000, ?3 + i * ?4, ?3 + i * ?4,
           ?3 + i * ?4 + 3600000, ?3 + i * ?4 + 3600100, 'expired', 1 FROM n",
    )
    .bind(i64::try_from(grants)?)
    .bind(i64::try_from(PEOPLE)?)
    .bind(T0)
    .bind(step)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "WITH RECURSIVE n(s) AS (SELECT 1 UNION ALL SELECT s + 1 FROM n WHERE s < ?1)
         INSERT INTO audit_events (seq, at, actor, action, subject, details, prev_hash, hash)
         SELECT s, ?2 + ((s - 1) / 10) * ?3, printf('u%d', ((s - 1) / 10) % ?4),
           CASE (s - 1) % 10 WHEN 0 THEN 'request.created' WHEN 1 THEN 'approval.recorded'
             WHEN 2 THEN 'request.approved' WHEN 3 THEN 'request.fulfilled'
             WHEN 4 THEN 'grant.created' WHEN 5 THEN 'grant.activated' WHEN 6 THEN 'grant.expired'
             WHEN 7 THEN 'grant.revoke_requested' WHEN 8 THEN 'grant.revoked'
             ELSE 'grant.revocation_verified' END,
           CASE WHEN (s - 1) % 10 < 4 THEN printf('req_%032x', (s - 1) / 10)
             ELSE printf('grt_%032x', (s - 1) / 10) END,
           '[[\"reason\",\"bench\"]]', printf('%064x', s - 1), printf('%064x', s) FROM n",
    )
    .bind(i64::try_from(grants * 10)?)
    .bind(T0)
    .bind(step)
    .bind(i64::try_from(PEOPLE)?)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(grants)
}

/// A moment of the year, spread by `k`.
fn moment(k: usize) -> String {
    let at = T0 + (i64::try_from(k).unwrap_or(0) * 7_919_999_917) % YEAR_MS;
    hourglass_core::Timestamp::from_unix_millis(at).to_string()
}

pub async fn run(events: usize, queries: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let hook = receiver().await?;
    let (config, tokens) = write_config(dir.path(), hook, 1, "")?;
    let db = dir.path().join("hourglass.db");
    let t = now();
    let grants = seed(&db, events).await?;
    let seeded = t.elapsed().as_secs_f64();
    let server = Server::start(&config).await?;
    // u0 administers everything in the benchmark's policy.
    let admin = server.client(&tokens[0])?;
    let mut at_moment = Samples::default();
    let mut found = 0;
    for k in 0..queries {
        let who = format!("u{}", (k * 37) % PEOPLE);
        let at = moment(k);
        let t = now();
        let w = admin
            .why(&[("principal", who.as_str()), ("at", at.as_str())])
            .await?;
        at_moment.push(t.elapsed());
        found += w.elevated.len();
    }
    let mut month = Samples::default();
    let mut lines = 0;
    for k in 0..queries {
        let who = format!("u{}", (k * 53) % PEOPLE);
        let from = moment(k);
        let to = hourglass_core::Timestamp::parse_rfc3339(&from)
            .map(|f| f.plus_millis(30 * 86_400_000).to_string())
            .unwrap_or_default();
        let t = now();
        let w = admin
            .why(&[
                ("principal", who.as_str()),
                ("from", from.as_str()),
                ("to", to.as_str()),
            ])
            .await?;
        month.push(t.elapsed());
        lines += w.elevated.iter().map(|e| e.story.len()).sum::<usize>();
    }
    server.running.stop().await;
    // Side by side: what one person did, read by scanning the audit (no index on the actor).
    let mut conn = SqliteConnectOptions::new().filename(&db).connect().await?;
    let mut scan = Samples::default();
    for k in 0..queries.min(20) {
        let who = format!("u{}", (k * 37) % PEOPLE);
        let t = now();
        let _: Vec<(i64,)> = sqlx::query_as("SELECT seq FROM audit_events WHERE actor = ?1")
            .bind(&who)
            .fetch_all(&mut conn)
            .await?;
        scan.push(t.elapsed());
    }
    conn.close().await?;
    for (shape, s, answers) in [
        ("one person at a moment", &at_moment, found),
        ("one person over 30 days", &month, lines),
    ] {
        Report::new("why")
            .field("question", shape)
            .field("audit_events", grants * 10)
            .field("grants", grants)
            .field("queries", s.len())
            .field("answers", answers)
            .num("seed_s", seeded, 1)
            .num("median_ms", s.median() / 1000.0, 2)
            .num("p99_ms", s.percentile(99.0) / 1000.0, 2)
            .num("audit_scan_median_ms", scan.median() / 1000.0, 2)
            .num("ratio_scan_to_why", scan.median() / s.median(), 1)
            .print();
    }
    Ok(())
}
