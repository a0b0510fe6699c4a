//! Hourglass stores: implementations of [`hourglass_core::store::Store`].
//!
//! SQLite is the embedded default (WAL, `synchronous=FULL`: an acknowledged commit survives a
//! power loss). Each backend has its own explicit SQL and migrations under `migrations/`; store
//! errors stay private here and map to `hourglass_core::Error` at the port. The audit chain is
//! extended inside the same transaction as the change it records.

mod error;
mod ledger;
mod postgres;
mod rows;
mod sql;
mod sqlite;

pub use ledger::{Backend, SqlStore};
pub use postgres::{PgDb, PgStore, PoolOptions};
pub use sqlite::{SqliteDb, SqliteStore};

use std::sync::Arc;

use hourglass_core::{Error, Result, store::Store};

/// Opens the store named by a URL (`sqlite://PATH`), creating and migrating it if needed.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Err(Error::internal(
            "the PostgreSQL store is not available in this version; use sqlite://",
        ))
    } else {
        Err(Error::internal(format!(
            "unsupported store URL {:?}: expected sqlite://PATH",
            redact(url)
        )))
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
