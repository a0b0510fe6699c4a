//! What the database connectors (PostgreSQL, MariaDB) share: configuration defaults, the
//! administrative password file, and the credential they hand over.

use std::path::Path;

pub(crate) fn default_prefix() -> String {
    "hg_".into()
}
pub(crate) fn default_timeout() -> u64 {
    10
}
pub(crate) fn default_pool() -> u32 {
    4
}

/// Reads an administrative password from a file (one line; the trailing newline is dropped).
pub(crate) fn read_password(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|pw| pw.trim_end_matches(['\n', '\r']).to_owned())
        .map_err(|e| format!("password_file: {}: {e}", path.display()))
}

/// The credential handed to the requester: a connection URL. `user` and `password` are
/// generated from safe characters, so they need no escaping.
pub(crate) fn credential_url(
    scheme: &str,
    user: &str,
    password: &str,
    host: &str,
    port: u16,
    db: &str,
) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    format!("{scheme}://{user}:{password}@{host}:{port}/{db}")
}

/// Counts sessions with `count` until none is left, looking again every 100 ms for up to two
/// seconds (a terminated session takes a moment to leave the server's list); the last count.
pub(crate) async fn sessions_left<F, Fut, E>(mut count: F) -> Result<i64, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<i64, E>>,
{
    let mut open = count().await?;
    for _ in 0..20 {
        if open == 0 {
            break;
        }
        // Polling the target, not an expiry.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        open = count().await?;
    }
    Ok(open)
}
