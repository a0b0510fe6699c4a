//! Test helpers (dev-only): a clock that tests move by hand, and an in-process server on port 0
//! with the demo layout, driven through `hourglass-client`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use hourglass_client::Client;
use hourglass_core::{Clock, Timestamp, clock::Sleep};
use hourglass_server::{Running, config::Config};
use tokio::sync::watch;

/// A clock that moves only when told. Sleepers wake when it passes their deadline.
pub struct ManualClock {
    now: watch::Sender<Timestamp>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Arc<Self> {
        Arc::new(ManualClock {
            now: watch::channel(start).0,
        })
    }

    /// Moves time forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        self.now.send_modify(|t| *t = t.plus_millis(ms));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep<'_> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            while *rx.borrow_and_update() < deadline {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
    }
}

/// A demo-layout server running in this process.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub clock: Arc<ManualClock>,
    pub tokens: Vec<(String, String)>,
    pub config: PathBuf,
    pub access_file: PathBuf,
    running: Option<Running>,
}

/// Starts a server with the demo layout; `edit` may change the config text before start.
pub async fn spawn_server(edit: impl FnOnce(String) -> String) -> anyhow::Result<TestServer> {
    spawn_server_with(|_, text| edit(text)).await
}

/// Like [`spawn_server`], and `setup` also gets the data directory (to add policy files, keys).
pub async fn spawn_server_with(
    setup: impl FnOnce(&Path, String) -> String,
) -> anyhow::Result<TestServer> {
    spawn_server_on(
        "127.0.0.1:0".parse()?,
        Timestamp::from_unix_millis(1_800_000_000_000),
        setup,
    )
    .await
}

/// Like [`spawn_server_with`], and `edit` then changes the typed configuration (it gets the
/// data directory too): settings are changed this way, so that an edit cannot silently miss
/// (text stays for adding whole sections).
pub async fn spawn_server_typed(
    setup: impl FnOnce(&Path, String) -> String,
    edit: impl FnOnce(&Path, &mut Config),
) -> anyhow::Result<TestServer> {
    spawn_server_on_typed(
        "127.0.0.1:0".parse()?,
        Timestamp::from_unix_millis(1_800_000_000_000),
        setup,
        edit,
    )
    .await
}

/// Like [`spawn_server_with`], listening on `listen` with the manual clock starting at
/// `start` (a test whose peer issues tokens on real time starts the clock at the real time).
pub async fn spawn_server_on(
    listen: SocketAddr,
    start: Timestamp,
    setup: impl FnOnce(&Path, String) -> String,
) -> anyhow::Result<TestServer> {
    spawn_server_on_typed(listen, start, setup, |_, _| {}).await
}

async fn spawn_server_on_typed(
    listen: SocketAddr,
    start: Timestamp,
    setup: impl FnOnce(&Path, String) -> String,
    edit: impl FnOnce(&Path, &mut Config),
) -> anyhow::Result<TestServer> {
    let dir = tempfile::tempdir()?;
    let w = hourglass_server::demo::write_layout(dir.path(), listen, false)?;
    let text = std::fs::read_to_string(&w.config)?;
    std::fs::write(&w.config, setup(dir.path(), text))?;
    let mut config = Config::load(&w.config, Vec::new()).map_err(|e| anyhow::anyhow!("{e}"))?;
    edit(dir.path(), &mut config);
    let clock = ManualClock::new(start);
    let running = hourglass_server::start(config, Arc::clone(&clock) as Arc<dyn Clock>)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(TestServer {
        addr: running.addr,
        clock,
        tokens: w.tokens,
        config: w.config,
        access_file: w.access_file,
        dir,
        running: Some(running),
    })
}

impl TestServer {
    /// A client acting as `identity`.
    pub fn client(&self, identity: &str) -> Client {
        let token = self
            .tokens
            .iter()
            .find(|(n, _)| n == identity)
            .map(|(_, t)| t.clone());
        Client::new(&format!("http://{}", self.addr), token)
            .unwrap_or_else(|e| unreachable_client(&e))
    }

    /// What the demo target file says now.
    pub fn access(&self) -> String {
        std::fs::read_to_string(&self.access_file).unwrap_or_default()
    }

    /// Ends the current run of a worker as a crash would (its supervisor restarts it).
    pub fn kill_worker(&self, name: &str) -> bool {
        self.running.as_ref().is_some_and(|r| r.kill_worker(name))
    }

    pub fn store(&self) -> Option<&Arc<dyn hourglass_core::store::Store>> {
        self.running.as_ref().map(Running::store)
    }

    /// Stops the server and starts it again on the same directory, tokens and clock, with the
    /// configuration file read again and then changed by `edit` (the typed configuration, so
    /// that no edit can silently miss).
    pub async fn restart(&mut self, edit: impl FnOnce(&mut Config)) -> anyhow::Result<()> {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        let mut config =
            Config::load(&self.config, Vec::new()).map_err(|e| anyhow::anyhow!("{e}"))?;
        edit(&mut config);
        let running = hourglass_server::start(config, Arc::clone(&self.clock) as Arc<dyn Clock>)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.addr = running.addr;
        self.running = Some(running);
        Ok(())
    }

    /// Stops the server, keeping its directory (for [`TestServer::restart`]).
    pub async fn halt(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

fn unreachable_client(e: &dyn std::fmt::Display) -> Client {
    // Building a reqwest client only fails without a TLS backend, which would fail every test.
    eprintln!("cannot build the HTTP client: {e}");
    std::process::abort()
}

/// Polls `check` (yielding to the runtime between tries) until it holds or about 10 s of real
/// time pass. This waits for the workers to act, never for an expiry: time is the manual clock.
pub async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1_000 {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

/// A TCP forwarder in front of a real server, which a test can take down and bring back on the
/// same port: "the target is unreachable" without stopping the shared server.
pub struct TcpProxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let proxy = TcpProxy {
            addr,
            upstream,
            task: Mutex::new(None),
        };
        proxy.serve(listener);
        Ok(proxy)
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let upstream = self.upstream;
        let task = tokio::spawn(async move {
            // Dropped with this task: every forwarded connection ends with it.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        if let Some(old) = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(task)
        {
            old.abort();
        }
    }

    /// Closes the port and cuts every forwarded connection.
    pub async fn stop(&self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens again on the same port.
    pub async fn resume(&self) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }
}
