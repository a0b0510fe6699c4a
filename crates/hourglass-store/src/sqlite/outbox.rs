//! Tickets bound to access, and the notification outbox.

use hourglass_core::{
    Result, Timestamp,
    id::NotificationId,
    job::Lease,
    notify::{Notification, NotifierStats, Settle},
    request::Request,
    ticket::Ticket,
};
use sqlx::{Sqlite, SqlitePool, Transaction, sqlite::SqliteRow};

use super::{
    rows::{get, opt_ts, request_from, ts},
    write::json,
};
use crate::error::{corrupt, map};

/// How long sent and dropped notifications are kept (to recognise a repeat of their event).
const KEEP_SETTLED_MS: i64 = 7 * 24 * 3_600_000;

pub(super) async fn requests_with_ticket(
    pool: &SqlitePool,
    reference: &str,
    limit: u32,
) -> Result<Vec<Request>> {
    sqlx::query("SELECT * FROM requests WHERE ticket = ? ORDER BY id DESC LIMIT ?")
        .bind(reference)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(map)?
        .iter()
        .map(request_from)
        .collect()
}

pub(super) async fn live_tickets(pool: &SqlitePool, limit: u32) -> Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT ticket FROM requests WHERE ticket IS NOT NULL AND state IN ('pending', 'approved')
         UNION
         SELECT r.ticket FROM grants g JOIN requests r ON r.id = g.request_id
          WHERE g.state IN ('provisioning', 'active') AND r.ticket IS NOT NULL
         ORDER BY 1 LIMIT ?",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(map)
}

pub(super) async fn record_ticket(
    pool: &SqlitePool,
    source: &str,
    ticket: &Ticket,
    at: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO tickets (source, reference, ticket, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (source, reference) DO UPDATE SET ticket = ?3, updated_at = ?4",
    )
    .bind(source)
    .bind(&ticket.reference)
    .bind(json(ticket)?)
    .bind(at.unix_millis())
    .execute(pool)
    .await
    .map_err(map)?;
    Ok(())
}

pub(super) async fn get_ticket(
    pool: &SqlitePool,
    source: &str,
    reference: &str,
) -> Result<Option<Ticket>> {
    let text: Option<String> =
        sqlx::query_scalar("SELECT ticket FROM tickets WHERE source = ? AND reference = ?")
            .bind(source)
            .bind(reference)
            .fetch_optional(pool)
            .await
            .map_err(map)?;
    text.map(|t| serde_json::from_str(&t).map_err(|_| corrupt("ticket", &t)))
        .transpose()
}

/// Queues notifications in a commit; a repeat of a notifier's event is skipped.
pub(super) async fn write_notification(
    tx: &mut Transaction<'_, Sqlite>,
    n: &Notification,
) -> Result<()> {
    let subject = n
        .message
        .grant_id
        .as_ref()
        .or(n.message.request_id.as_ref());
    sqlx::query(
        "INSERT INTO notifications (id, notifier, dedup_key, event, subject, message, state, run_at,
           due_at, attempts, last_error, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7, ?8, ?9, ?10, ?10)
         ON CONFLICT (notifier, dedup_key) DO NOTHING",
    )
    .bind(n.id.as_str())
    .bind(&n.notifier)
    .bind(&n.dedup_key)
    .bind(n.message.event.as_str())
    .bind(subject)
    .bind(json(&n.message)?)
    .bind(n.run_at.unix_millis())
    .bind(i64::from(n.attempts))
    .bind(&n.last_error)
    .bind(n.created_at.unix_millis())
    .execute(&mut **tx)
    .await
    .map_err(map)?;
    Ok(())
}

fn notification_from(row: &SqliteRow) -> Result<Notification> {
    let id: String = get(row, "id")?;
    let text: String = get(row, "message")?;
    let attempts: i64 = get(row, "attempts")?;
    let owner: Option<String> = get(row, "lease_owner")?;
    let token: Option<String> = get(row, "lease_token")?;
    let until: Option<i64> = get(row, "lease_until")?;
    Ok(Notification {
        id: NotificationId::parse(&id).ok_or_else(|| corrupt("notification id", &id))?,
        notifier: get(row, "notifier")?,
        dedup_key: get(row, "dedup_key")?,
        message: serde_json::from_str(&text).map_err(|_| corrupt("notification", &id))?,
        run_at: ts(get(row, "run_at")?),
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        last_error: get(row, "last_error")?,
        created_at: ts(get(row, "created_at")?),
        lease: match (owner, token, opt_ts(until)) {
            (Some(owner), Some(token), Some(until)) => Some(Lease {
                owner,
                token,
                until,
            }),
            _ => None,
        },
    })
}

pub(super) async fn claim(
    writer: &SqlitePool,
    now: Timestamp,
    owner: &str,
    lease_until: Timestamp,
    limit: u32,
) -> Result<Vec<Notification>> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await.map_err(map)?;
    sqlx::query("DELETE FROM notifications WHERE state IN ('sent', 'dropped') AND updated_at < ?")
        .bind(now.unix_millis() - KEEP_SETTLED_MS)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM notifications WHERE state = 'pending' AND due_at <= ?
         ORDER BY due_at LIMIT ?",
    )
    .bind(now.unix_millis())
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await
    .map_err(map)?;
    let mut out = Vec::with_capacity(due.len());
    for id in due {
        let token = hourglass_core::id::random_hex::<16>()?;
        let row = sqlx::query(
            "UPDATE notifications SET lease_owner = ?1, lease_token = ?2, lease_until = ?3, due_at = ?3
             WHERE id = ?4 RETURNING *",
        )
        .bind(owner)
        .bind(&token)
        .bind(lease_until.unix_millis())
        .bind(&id)
        .fetch_one(&mut *tx)
        .await
        .map_err(map)?;
        out.push(notification_from(&row)?);
    }
    tx.commit().await.map_err(map)?;
    Ok(out)
}

pub(super) async fn settle(
    writer: &SqlitePool,
    id: &NotificationId,
    lease_token: &str,
    settle: &Settle,
    at: Timestamp,
) -> Result<bool> {
    let (state, run_at, error, failed) = match settle {
        Settle::Sent => ("sent", None, None, 0),
        Settle::Retry { run_at, error } => ("pending", Some(*run_at), Some(error.as_str()), 1),
        Settle::Dead { error } => ("dead", None, Some(error.as_str()), 1),
        Settle::Dropped { why } => ("dropped", None, Some(why.as_str()), 0),
    };
    let res = sqlx::query(
        "UPDATE notifications SET state = ?1, run_at = COALESCE(?2, run_at), due_at = COALESCE(?2, due_at),
           last_error = COALESCE(?3, last_error), attempts = attempts + ?4, updated_at = ?5,
           lease_owner = NULL, lease_token = NULL, lease_until = NULL
         WHERE id = ?6 AND lease_token = ?7 AND state = 'pending'",
    )
    .bind(state)
    .bind(run_at.map(Timestamp::unix_millis))
    .bind(error)
    .bind(failed)
    .bind(at.unix_millis())
    .bind(id.as_str())
    .bind(lease_token)
    .execute(writer)
    .await
    .map_err(map)?;
    Ok(res.rows_affected() == 1)
}

pub(super) async fn stats(pool: &SqlitePool) -> Result<Vec<NotifierStats>> {
    let rows = sqlx::query(
        "SELECT notifier,
                SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END) AS pending,
                SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END) AS dead
           FROM notifications WHERE state IN ('pending', 'dead') GROUP BY notifier ORDER BY notifier",
    )
    .fetch_all(pool)
    .await
    .map_err(map)?;
    rows.iter()
        .map(|r| {
            let n = |c: &str| get::<i64>(r, c).map(|v| u64::try_from(v).unwrap_or(0));
            Ok(NotifierStats {
                notifier: get(r, "notifier")?,
                pending: n("pending")?,
                dead: n("dead")?,
            })
        })
        .collect()
}

pub(super) async fn get_notification(
    pool: &SqlitePool,
    id: &NotificationId,
) -> Result<Option<Notification>> {
    sqlx::query("SELECT * FROM notifications WHERE id = ?")
        .bind(id.as_str())
        .fetch_optional(pool)
        .await
        .map_err(map)?
        .as_ref()
        .map(notification_from)
        .transpose()
}

pub(super) async fn notifications_about(
    pool: &SqlitePool,
    subject: &str,
) -> Result<Vec<Notification>> {
    sqlx::query("SELECT * FROM notifications WHERE subject = ? ORDER BY created_at, id")
        .bind(subject)
        .fetch_all(pool)
        .await
        .map_err(map)?
        .iter()
        .map(notification_from)
        .collect()
}
