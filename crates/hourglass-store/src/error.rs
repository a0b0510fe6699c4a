//! Mapping of database errors to the core error at the port. Database text goes to the log
//! inside `Internal`/`Unavailable`, never to a client.

use hourglass_core::Error;

pub(crate) fn map(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Error::StoreConflict,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            Error::Unavailable(e.to_string())
        }
        _ => Error::Internal(format!("store: {e}")),
    }
}

pub(crate) fn corrupt(what: &str, value: &str) -> Error {
    Error::Internal(format!("store: unreadable {what} {value:?}"))
}
