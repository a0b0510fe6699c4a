//! Hourglass stores: implementations of [`hourglass_core::store::Store`].
//!
//! SQLite is the embedded default (WAL, `synchronous=FULL`: an acknowledged commit survives a
//! power loss). Each backend has its own explicit SQL and migrations under `migrations/`; store
//! errors stay private here and map to `hourglass_core::Error` at the port. The audit chain is
//! extended inside the same transaction as the change it records.

mod copy;
mod error;
mod ledger;
mod postgres;
mod rows;
mod sql;
mod sqlite;

pub use copy::{CopyReport, copy};
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
/// migrating it as `opts` say. SQLite ignores the pool settings: it has one writer.
pub async fn open(url: &str, opts: &PoolOptions) -> Result<Arc<dyn Store>> {
    if is_sqlite(url) {
        Ok(Arc::new(SqliteStore::open(url).await?))
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

/// A store URL with any password removed, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod conformance;
