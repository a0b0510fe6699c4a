//! The identity directory on SQLite: identities, API keys and exchanged token ids. Writes run
//! inside the caller's commit transaction; reads use the read pool.

use hourglass_core::{
    Error, Result, Timestamp,
    catalog::{Principal, PrincipalKind, PrincipalStatus},
    id::{KeyId, PrincipalId},
    identity::{ApiKey, Identity, Origin, TokenUse},
};
use sqlx::{Sqlite, Transaction, sqlite::SqliteRow};

use super::{
    SqliteStore,
    rows::{get, opt_ts, ts},
    write::json,
};
use crate::error::{corrupt, map};

/// Bookkeeping writes (last seen, last used) happen at most this often per identity or key.
const TOUCH_EVERY_MS: i64 = 60_000;

fn principal_id(s: String) -> Result<PrincipalId> {
    PrincipalId::new(s).map_err(Error::internal)
}

fn identity_from(row: &SqliteRow) -> Result<Identity> {
    let k: String = get(row, "kind")?;
    let st: String = get(row, "status")?;
    let origin: String = get(row, "origin")?;
    let groups: String = get(row, "groups")?;
    Ok(Identity {
        principal: Principal {
            id: principal_id(get(row, "id")?)?,
            kind: PrincipalKind::parse(&k).ok_or_else(|| corrupt("identity kind", &k))?,
            owner: get(row, "owner")?,
            groups: serde_json::from_str(&groups).map_err(|_| corrupt("groups", &groups))?,
            status: PrincipalStatus::parse(&st).ok_or_else(|| corrupt("identity status", &st))?,
        },
        origin: Origin::parse(&origin).ok_or_else(|| corrupt("origin", &origin))?,
        created_at: ts(get(row, "created_at")?),
        last_seen_at: opt_ts(get(row, "last_seen_at")?),
        status_reason: get(row, "status_reason")?,
        version: get(row, "version")?,
    })
}

fn key_from(row: &SqliteRow) -> Result<ApiKey> {
    let id: String = get(row, "id")?;
    let origin: String = get(row, "origin")?;
    let replaced: Option<String> = get(row, "replaced_by")?;
    Ok(ApiKey {
        id: KeyId::parse(&id).ok_or_else(|| corrupt("key id", &id))?,
        principal: principal_id(get(row, "principal")?)?,
        prefix: get(row, "prefix")?,
        hash: get(row, "hash")?,
        origin: Origin::parse(&origin).ok_or_else(|| corrupt("origin", &origin))?,
        created_at: ts(get(row, "created_at")?),
        expires_at: opt_ts(get(row, "expires_at")?),
        revoked_at: opt_ts(get(row, "revoked_at")?),
        last_used_at: opt_ts(get(row, "last_used_at")?),
        replaced_by: match replaced {
            Some(r) => Some(KeyId::parse(&r).ok_or_else(|| corrupt("key id", &r))?),
            None => None,
        },
        version: get(row, "version")?,
    })
}

fn one(rows: u64) -> Result<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(Error::StoreConflict)
    }
}

pub(super) async fn write_identity(tx: &mut Transaction<'_, Sqlite>, i: &Identity) -> Result<()> {
    let p = &i.principal;
    let q = if i.version == 0 {
        sqlx::query(
            "INSERT INTO identities (kind, owner, groups, status, status_reason, origin, created_at,
               last_seen_at, id, version)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
        )
    } else {
        sqlx::query(
            "UPDATE identities SET kind = ?, owner = ?, groups = ?, status = ?, status_reason = ?,
               origin = ?, created_at = ?, last_seen_at = MAX(COALESCE(last_seen_at, 0), COALESCE(?, 0)),
               version = version + 1
             WHERE id = ? AND version = ?",
        )
    };
    let res = q
        .bind(p.kind.as_str())
        .bind(&p.owner)
        .bind(json(&p.groups)?)
        .bind(p.status.as_str())
        .bind(&i.status_reason)
        .bind(i.origin.as_str())
        .bind(i.created_at.unix_millis())
        .bind(i.last_seen_at.map(Timestamp::unix_millis))
        .bind(p.id.as_str())
        .bind(i.version)
        .execute(&mut **tx)
        .await
        .map_err(map)?;
    one(res.rows_affected())
}

pub(super) async fn write_key(tx: &mut Transaction<'_, Sqlite>, k: &ApiKey) -> Result<()> {
    let q = if k.version == 0 {
        sqlx::query(
            "INSERT INTO api_keys (principal, prefix, hash, origin, created_at, expires_at, revoked_at,
               last_used_at, replaced_by, id, version)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
        )
    } else {
        sqlx::query(
            "UPDATE api_keys SET principal = ?, prefix = ?, hash = ?, origin = ?, created_at = ?,
               expires_at = ?, revoked_at = ?, last_used_at = MAX(COALESCE(last_used_at, 0), COALESCE(?, 0)),
               replaced_by = ?, version = version + 1
             WHERE id = ? AND version = ?",
        )
    };
    let res = q
        .bind(k.principal.as_str())
        .bind(&k.prefix)
        .bind(&k.hash)
        .bind(k.origin.as_str())
        .bind(k.created_at.unix_millis())
        .bind(k.expires_at.map(Timestamp::unix_millis))
        .bind(k.revoked_at.map(Timestamp::unix_millis))
        .bind(k.last_used_at.map(Timestamp::unix_millis))
        .bind(k.replaced_by.as_ref().map(KeyId::as_str))
        .bind(k.id.as_str())
        .bind(k.version)
        .execute(&mut **tx)
        .await
        .map_err(map)?;
    one(res.rows_affected())
}

/// Remembers an exchanged token id; an unexpired one already there is a replay (a conflict).
/// Ids whose tokens expired before `now` are forgotten first.
pub(super) async fn write_token_use(
    tx: &mut Transaction<'_, Sqlite>,
    u: &TokenUse,
    now: Timestamp,
) -> Result<()> {
    sqlx::query("DELETE FROM token_uses WHERE expires_at <= ?")
        .bind(now.unix_millis())
        .execute(&mut **tx)
        .await
        .map_err(map)?;
    sqlx::query("INSERT INTO token_uses (issuer, jti, expires_at) VALUES (?, ?, ?)")
        .bind(&u.issuer)
        .bind(&u.jti)
        .bind(u.expires_at.unix_millis())
        .execute(&mut **tx)
        .await
        .map_err(map)?;
    Ok(())
}

impl SqliteStore {
    pub(super) async fn identity(&self, id: &PrincipalId) -> Result<Option<Identity>> {
        sqlx::query("SELECT * FROM identities WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(map)?
            .as_ref()
            .map(identity_from)
            .transpose()
    }

    pub(super) async fn identities(&self) -> Result<Vec<Identity>> {
        sqlx::query("SELECT * FROM identities ORDER BY id")
            .fetch_all(&self.reader)
            .await
            .map_err(map)?
            .iter()
            .map(identity_from)
            .collect()
    }

    pub(super) async fn key_where(&self, column: &str, value: &str) -> Result<Option<ApiKey>> {
        let sql = match column {
            "id" => "SELECT * FROM api_keys WHERE id = ?",
            "prefix" => "SELECT * FROM api_keys WHERE prefix = ?",
            _ => "SELECT * FROM api_keys WHERE hash = ?",
        };
        sqlx::query(sql)
            .bind(value)
            .fetch_optional(&self.reader)
            .await
            .map_err(map)?
            .as_ref()
            .map(key_from)
            .transpose()
    }

    pub(super) async fn keys(&self, principal: Option<&PrincipalId>) -> Result<Vec<ApiKey>> {
        sqlx::query(
            "SELECT * FROM api_keys WHERE (?1 IS NULL OR principal = ?1) ORDER BY created_at, id",
        )
        .bind(principal.map(PrincipalId::as_str))
        .fetch_all(&self.reader)
        .await
        .map_err(map)?
        .iter()
        .map(key_from)
        .collect()
    }

    pub(super) async fn touch_use(
        &self,
        principal: &PrincipalId,
        key: Option<&KeyId>,
        at: Timestamp,
    ) -> Result<()> {
        let stale = at.unix_millis() - TOUCH_EVERY_MS;
        // A cheap read first: most calls change nothing and need no write transaction.
        let row = sqlx::query(
            "SELECT (SELECT COALESCE(last_seen_at, 0) FROM identities WHERE id = ?1) AS seen,
                    (SELECT COALESCE(last_used_at, 0) FROM api_keys WHERE id = ?2) AS used",
        )
        .bind(principal.as_str())
        .bind(key.map(KeyId::as_str))
        .fetch_one(&self.reader)
        .await
        .map_err(map)?;
        let seen: Option<i64> = get(&row, "seen")?;
        let used: Option<i64> = get(&row, "used")?;
        let seen_stale = seen.is_some_and(|s| s < stale);
        let used_stale = key.is_some() && used.is_some_and(|u| u < stale);
        if !seen_stale && !used_stale {
            return Ok(());
        }
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map)?;
        sqlx::query("UPDATE identities SET last_seen_at = ?1 WHERE id = ?2 AND COALESCE(last_seen_at, 0) < ?3")
            .bind(at.unix_millis())
            .bind(principal.as_str())
            .bind(stale)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        if let Some(k) = key {
            sqlx::query("UPDATE api_keys SET last_used_at = ?1 WHERE id = ?2 AND COALESCE(last_used_at, 0) < ?3")
                .bind(at.unix_millis())
                .bind(k.as_str())
                .bind(stale)
                .execute(&mut *tx)
                .await
                .map_err(map)?;
        }
        tx.commit().await.map_err(map)
    }

    pub(super) async fn token_used(&self, issuer: &str, jti: &str, now: Timestamp) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM token_uses WHERE issuer = ? AND jti = ? AND expires_at > ?",
        )
        .bind(issuer)
        .bind(jti)
        .bind(now.unix_millis())
        .fetch_one(&self.reader)
        .await
        .map_err(map)?;
        Ok(n > 0)
    }
}
