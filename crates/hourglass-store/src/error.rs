//! Mapping of database errors to the core error at the port. Database text goes to the log
//! inside `Internal`/`Unavailable`, never to a client.

use hourglass_core::Error;

pub(crate) fn map(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Error::StoreConflict,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // PostgreSQL: a serialization failure or a deadlock victim is a conflict like any
            // other; the caller's retry reads afresh.
            Some("40001" | "40P01") => Error::StoreConflict,
            // The server is shutting down or starting (57P…), the connection failed (08…), or
            // the database does not accept connections now (55000): it will be back.
            Some(code) if code.starts_with("08") || code.starts_with("57P") || code == "55000" => {
                Error::Unavailable(e.to_string())
            }
            _ => Error::Internal(format!("store: {e}")),
        },
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => Error::Unavailable(e.to_string()),
        _ => Error::Internal(format!("store: {e}")),
    }
}

pub(crate) fn corrupt(what: &str, value: &str) -> Error {
    Error::Internal(format!("store: unreadable {what} {value:?}"))
}
