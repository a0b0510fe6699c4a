//! A real Hourglass server on loopback with a fresh SQLite store, and a webhook receiver inside
//! the harness that answers at once, so that what is measured is Hourglass.

use std::{net::SocketAddr, path::Path, sync::Arc};

use anyhow::Result;
use hourglass_client::Client;
use hourglass_core::Clock;
use hourglass_server::{Running, config::Config};

/// The webhook receiver: every call succeeds at once with an empty body.
pub async fn receiver() -> Result<SocketAddr> {
    let app = axum::Router::new().route("/", axum::routing::post(|| async { "" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// A configuration for `clients` identities (`u0`…) who may get `hook/read` with no human,
/// on a webhook target at `hook`, with quotas out of the way. Returns the file and the tokens.
pub fn write_config(
    dir: &Path,
    hook: SocketAddr,
    clients: usize,
    extra: &str,
) -> Result<(std::path::PathBuf, Vec<String>)> {
    write_config_on(dir, hook, clients, extra, "sqlite://hourglass.db", "")
}

/// [`write_config`] with group commit limited to `max_batch` writes a transaction (1: each
/// write its own, as before group commit).
pub fn write_config_batched(
    dir: &Path,
    hook: SocketAddr,
    clients: usize,
    max_batch: u32,
) -> Result<(std::path::PathBuf, Vec<String>)> {
    write_config_on(
        dir,
        hook,
        clients,
        "",
        "sqlite://hourglass.db",
        &format!("max_batch = {max_batch}\n"),
    )
}

/// [`write_config`] on the store at `store_url`.
pub fn write_config_on(
    dir: &Path,
    hook: SocketAddr,
    clients: usize,
    extra: &str,
    store_url: &str,
    store_extra: &str,
) -> Result<(std::path::PathBuf, Vec<String>)> {
    std::fs::create_dir_all(dir.join("policies"))?;
    std::fs::write(
        dir.join("policies/bench.cedar"),
        "@id(\"bench-read\")\npermit(principal in Hourglass::Group::\"bench\", action in [Hourglass::Action::\"Request\", Hourglass::Action::\"AutoApprove\"], resource == Hourglass::Entitlement::\"hook/read\");\n@id(\"bench-admin\")\npermit(principal == Hourglass::Principal::\"u0\", action == Hourglass::Action::\"Administer\", resource);\n",
    )?;
    std::fs::write(dir.join("hook.secret"), "s".repeat(48))?;
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\njob_concurrency = 64\n{extra}\n[store]\nurl = \"{store_url}\"\n{store_extra}\n[quotas]\nmax_live_grants_per_principal = 1000000\nmax_requests_per_hour_per_principal = 1000000\n\n[[targets]]\nname = \"hook\"\nconnector = \"webhook\"\nwebhook = {{ url = \"http://{hook}/\", secret_file = \"hook.secret\", allow_private = true }}\n\n[[entitlements]]\nname = \"hook/read\"\ndefault_duration = \"15m\"\nmax_duration = \"1h\"\n"
    );
    let mut tokens = Vec::new();
    for i in 0..clients.max(1) {
        let token = hourglass_server::auth::new_token().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        text.push_str(&format!(
            "\n[[identities]]\nname = \"u{i}\"\nkind = \"human\"\ngroups = [\"bench\"]\ntoken_sha256 = [\"{}\"]\n",
            hourglass_server::auth::token_hash(&token)
        ));
        tokens.push(token);
    }
    let path = dir.join("hourglass.toml");
    std::fs::write(&path, text)?;
    Ok((path, tokens))
}

/// A server started in this process from `config`, on the system clock.
pub struct Server {
    pub running: Running,
    pub base: String,
}

impl Server {
    pub async fn start(config: &Path) -> Result<Self> {
        let cfg = Config::load(config, Vec::new()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let clock: Arc<dyn Clock> = Arc::new(hourglass_server::clock::SystemClock);
        let running = hourglass_server::start(cfg, clock)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let base = format!("http://{}", running.addr);
        Ok(Server { running, base })
    }

    pub fn client(&self, token: &str) -> Result<Client> {
        Ok(Client::new(&self.base, Some(token.to_owned()))?)
    }
}

/// The raw durable commit rate of SQLite here (WAL, `synchronous=FULL`, one row per
/// transaction): the bound every write path of Hourglass's embedded store lives under.
pub async fn sqlite_commits_per_sec(dir: &Path, n: usize) -> Result<f64> {
    use sqlx::{ConnectOptions, Connection, sqlite::SqliteConnectOptions};
    let mut conn = SqliteConnectOptions::new()
        .filename(dir.join("raw.db"))
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
        .connect()
        .await?;
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        .execute(&mut conn)
        .await?;
    let t = crate::stats::now();
    for i in 0..n {
        let mut tx = conn.begin().await?;
        sqlx::query("INSERT INTO t (id, v) VALUES (?, 'x')")
            .bind(i as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// Runs one task per client (each returning its timed samples) at once, and returns all samples
/// and the wall time; fails unless every client finished `per_client` operations.
pub async fn concurrently<Fut>(
    scenario: &str,
    tasks: Vec<Fut>,
    per_client: usize,
) -> Result<(crate::stats::Samples, f64)>
where
    Fut: std::future::Future<Output = Result<crate::stats::Samples>> + Send + 'static,
{
    let clients = tasks.len();
    let started = crate::stats::now();
    let mut set = tokio::task::JoinSet::new();
    for t in tasks {
        set.spawn(t);
    }
    let mut all = crate::stats::Samples::default();
    while let Some(done) = set.join_next().await {
        all.0.extend(done??.0);
    }
    let secs = started.elapsed().as_secs_f64();
    if all.len() != clients * per_client {
        anyhow::bail!(
            "{scenario}: {} of {} operations finished",
            all.len(),
            clients * per_client
        );
    }
    Ok((all, secs))
}
