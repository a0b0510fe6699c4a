//! `hourglass serve`: the demo layout or a configuration file, the clock, and the signals
//! (SIGTERM/Ctrl-C stop, SIGHUP reloads the policies).

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::{Context, Result};
use hourglass_core::Clock;

use crate::cli::load_config;

pub(crate) async fn serve(
    config: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    demo: bool,
    data_dir: Option<PathBuf>,
    after_restore: bool,
) -> Result<ExitCode> {
    let mut cfg = if demo {
        let dir = match data_dir {
            Some(d) => d,
            None => tempfile_dir()?,
        };
        std::fs::create_dir_all(&dir)?;
        let dir = dir.canonicalize()?;
        let listen = listen.unwrap_or_else(|| {
            "127.0.0.1:8420"
                .parse()
                .unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 8420)))
        });
        let w = hourglass_server::demo::write_layout(&dir, listen, true)?;
        let env = hourglass_server::demo::write_env(&dir, &format!("http://{listen}"), &w.tokens)?;
        eprintln!("==================================================================");
        eprintln!(" HOURGLASS DEMO MODE: sample identities and tokens, loopback only.");
        eprintln!(" Not for production.");
        eprintln!(" data directory: {}", dir.display());
        eprintln!(" config:         {}", w.config.display());
        eprintln!(
            " tokens:         {}   (source it: set -a; . {}; set +a)",
            env.display(),
            env.display()
        );
        eprintln!(" who holds what: {}", w.access_file.display());
        eprintln!("==================================================================");
        load_config(&w.config)?
    } else {
        let path = config.unwrap_or_else(|| PathBuf::from("hourglass.toml"));
        load_config(&path).with_context(|| format!("loading {}", path.display()))?
    };
    if let Some(l) = listen {
        cfg.server.listen = l;
    }
    cfg.after_restore = after_restore;
    // Logs go to stderr as text, or one JSON object a line (`[server] log_format = "json"`).
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "info,sqlx=warn".into())
    };
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter());
    let _ = match cfg.server.log_format.as_str() {
        "json" => logs.json().try_init(),
        _ => logs.try_init(),
    };
    let clock = make_clock();
    let running = hourglass_server::start(cfg, clock)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("listening on http://{}", running.addr);
    let reloader = running.reloader();
    let hup = tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            match reloader.reload().await {
                Ok(r) => tracing::info!(
                    old_hash = %r.old_hash,
                    new_hash = %r.new_hash,
                    cancelled = r.cancelled.len(),
                    revoked = r.revoked.len(),
                    "SIGHUP: policies reloaded"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: policies NOT reloaded; the old set stays in force")
                }
            }
        }
    });
    running.until(shutdown_signal()).await;
    hup.abort();
    Ok(ExitCode::SUCCESS)
}

fn tempfile_dir() -> Result<PathBuf> {
    let base = std::env::temp_dir();
    let name = format!(
        "hourglass-demo-{}",
        hourglass_core::id::random_hex::<4>().map_err(|e| anyhow::anyhow!("{e}"))?
    );
    Ok(base.join(name))
}

#[cfg(feature = "test-clock")]
fn make_clock() -> Arc<dyn Clock> {
    match std::env::var_os("HOURGLASS_TEST_CLOCK_FILE") {
        Some(p) => Arc::new(hourglass_server::clock::FileClock { path: p.into() }),
        None => Arc::new(hourglass_server::clock::SystemClock),
    }
}

#[cfg(not(feature = "test-clock"))]
fn make_clock() -> Arc<dyn Clock> {
    Arc::new(hourglass_server::clock::SystemClock)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}
