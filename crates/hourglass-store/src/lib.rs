//! Hourglass stores: implementations of [`hourglass_core::store::Store`].
//!
//! SQLite is the embedded default (WAL, `synchronous=FULL`: an acknowledged commit survives a
//! power loss). Each backend has its own explicit SQL and migrations under `migrations/`; store
//! errors stay private here and map to `hourglass_core::Error` at the port. The audit chain is
//! extended inside the same transaction as the change it records.

mod archive;
mod copy;
mod error;
mod group;
mod ledger;
mod postgres;
mod rows;
mod sql;
mod sqlite;

pub use copy::{CopyReport, copy};
pub use group::MAX_BATCH;
pub use ledger::{Backend, SqlStore};
pub use postgres::{PgDb, PgStore, PoolOptions};
pub use sqlite::{SqliteDb, SqliteStore};

use std::sync::Arc;

use hourglass_core::{Error, Result, store::Store};

/// One migration of a backend's list (its SQL embedded in the binary).
fn migration(version: i64, name: &'static str, sql: &'static str) -> sqlx::migrate::Migration {
    sqlx::migrate::Migration::new(
        version,
        std::borrow::Cow::Borrowed(name),
        sqlx::migrate::MigrationType::Simple,
        sqlx::SqlSafeStr::into_sql_str(sql),
        false,
    )
}

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

fn unsupported(url: &str) -> Error {
    Error::internal(format!(
        "unsupported store URL {:?}: expected sqlite://PATH or postgres://…",
        redact(url)
    ))
}

/// Opens the store named by a URL (`sqlite://PATH` or `postgres://…`), creating (SQLite) and
/// migrating it as `opts` say. SQLite ignores the pool settings (it has one writer) but not
/// `max_batch`.
pub async fn open(url: &str, opts: &PoolOptions) -> Result<Arc<dyn Store>> {
    if is_sqlite(url) {
        Ok(Arc::new(
            SqliteStore::open_batched(url, opts.max_batch).await?,
        ))
    } else if is_postgres(url) {
        Ok(Arc::new(PgStore::open(url, opts).await?))
    } else {
        Err(unsupported(url))
    }
}

/// Opens an existing store for reading only (offline tools: `audit verify`, `audit export`).
pub async fn open_read_only(url: &str) -> Result<Arc<dyn Store>> {
    if is_sqlite(url) {
        Ok(Arc::new(SqliteStore::open_read_only(url).await?))
    } else if is_postgres(url) {
        let opts = PoolOptions {
            max_connections: 2,
            migrate: false,
            ..PoolOptions::default()
        };
        Ok(Arc::new(PgStore::open(url, &opts).await?))
    } else {
        Err(unsupported(url))
    }
}

/// Brings the schema of the store at `url` up to this build's (`hourglass migrate`).
pub async fn migrate(url: &str) -> Result<()> {
    if is_sqlite(url) {
        SqliteStore::open(url).await?.close().await;
        Ok(())
    } else if is_postgres(url) {
        let opts = PoolOptions {
            max_connections: 2,
            ..PoolOptions::default()
        };
        PgStore::open(url, &opts).await?.close().await;
        Ok(())
    } else {
        Err(unsupported(url))
    }
}

/// A store URL with its secrets removed, for messages and logs: the password of the userinfo,
/// and the value of any query parameter whose name speaks of a password, secret or token
/// (`?password=`, `sslpassword=`, …).
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.find("://") {
        Some(scheme_end) => {
            let rest = &base[scheme_end + 3..];
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let authority = match authority.rsplit_once('@') {
                Some((creds, host)) => match creds.split_once(':') {
                    Some((user, _)) => format!("{user}:***@{host}"),
                    None => authority.to_owned(),
                },
                None => authority.to_owned(),
            };
            format!("{}{authority}{path}", &base[..scheme_end + 3])
        }
        None => base.to_owned(),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _))
                    if ["password", "secret", "token"]
                        .iter()
                        .any(|w| k.to_ascii_lowercase().contains(w)) =>
                {
                    format!("{k}=***")
                }
                _ => kv.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod redact_tests {
    use super::redact;

    #[test]
    fn passwords_are_gone_from_the_userinfo_and_the_query() {
        assert_eq!(
            redact("postgres://hg:s3cret@db.example.com:5432/hg"),
            "postgres://hg:***@db.example.com:5432/hg"
        );
        assert_eq!(
            redact("postgres://db.example.com/hg?user=hg&password=s3cret&sslmode=require"),
            "postgres://db.example.com/hg?user=hg&password=***&sslmode=require"
        );
        assert_eq!(
            redact("postgres://hg:pw@db/hg?sslpassword=kp&application_name=a@b"),
            "postgres://hg:***@db/hg?sslpassword=***&application_name=a@b"
        );
        assert_eq!(redact("sqlite://hourglass.db"), "sqlite://hourglass.db");
        assert_eq!(redact("postgres://hg@db/hg"), "postgres://hg@db/hg");
        for u in [
            "postgres://hg:s3cret@db/hg",
            "postgres://db/hg?password=s3cret",
            "postgres://db/hg?PASSWORD=s3cret",
        ] {
            assert!(!redact(u).contains("s3cret"), "{u}");
        }
    }
}

#[cfg(test)]
mod conformance;
