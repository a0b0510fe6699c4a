//! Running the real `hourglass` binary as a separate process, on a demo layout whose target is
//! wrapped by a script the test steers with marker files in the data directory:
//! `crash-OP-before` / `crash-OP-after` kill the server (SIGKILL) around the target's action,
//! once; a file `credential` makes grants issue its content as a credential.

use std::{
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use hourglass_client::Client;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

pub const BIN: &str = env!("CARGO_BIN_EXE_hourglass");

/// Runs `hourglass audit verify` on the store of `config` and asserts the chain is intact.
#[cfg_attr(not(feature = "test-clock"), allow(dead_code))]
pub fn assert_audit_verifies(config: &std::path::Path) {
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("audit chain ok"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends SIGHUP (reload) to the process `pid`.
#[cfg_attr(not(feature = "test-clock"), allow(dead_code))]
pub fn hup(pid: &str) {
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", pid])
            .status()
            .unwrap()
            .success()
    );
}

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub clock: PathBuf,
    pub alice: String,
    /// Every demo identity's token.
    pub tokens: Vec<(String, String)>,
    /// Everything the servers wrote to stderr.
    pub log: Arc<Mutex<String>>,
}

pub fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let w = hourglass_server::demo::write_layout(dir.path(), "127.0.0.1:0".parse().unwrap(), false)
        .unwrap();
    let target = dir.path().join("targets/demo-target.sh");
    let wrapper = dir.path().join("targets/crashy.sh");
    // Kills the server (its parent) before or after the real target acts, once per marker file.
    // The server being killed is remembered (`killed`, holding its pid) before the marker goes,
    // and checked after the marker, so that another call it started at the same moment (two
    // grants due together) acts no more either; a restarted server has another pid.
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nd={d}\nop=$1\n\
             if [ -f \"$d/crash-$op-before\" ]; then echo $PPID > \"$d/killed\"; rm -f \"$d/crash-$op-before\"; kill -9 $PPID; exit 1; fi\n\
             if [ \"$(cat \"$d/killed\" 2>/dev/null)\" = \"$PPID\" ]; then exit 1; fi\n\
             {t} \"$@\" || exit $?\n\
             if [ -f \"$d/crash-$op-after\" ]; then echo $PPID > \"$d/killed\"; rm -f \"$d/crash-$op-after\"; kill -9 $PPID; exit 1; fi\n\
             if [ \"$op\" = grant ] && [ -f \"$d/credential\" ]; then printf '{{\"handle\": {{\"via\": \"wrapper\"}}, \"credential\": \"%s\"}}' \"$(cat \"$d/credential\")\"; fi\n",
            d = dir.path().display(),
            t = target.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(
        &w.config,
        text.replace(
            &target.display().to_string(),
            &wrapper.display().to_string(),
        ),
    )
    .unwrap();
    let clock = dir.path().join("clock");
    std::fs::write(&clock, "1800000000000").unwrap();
    let alice = w
        .tokens
        .iter()
        .find(|(n, _)| n == "alice")
        .unwrap()
        .1
        .clone();
    Setup {
        config: w.config,
        clock,
        alice,
        tokens: w.tokens,
        dir,
        log: Arc::default(),
    }
}

impl Setup {
    /// A client acting as `who` on the server at `base`.
    pub fn client(&self, base: &str, who: &str) -> Client {
        let token = self
            .tokens
            .iter()
            .find(|(n, _)| n == who)
            .unwrap()
            .1
            .clone();
        Client::new(base, Some(token)).unwrap()
    }

    /// Starts the server and returns it with a client for alice.
    #[cfg_attr(not(feature = "test-clock"), allow(dead_code))]
    pub async fn start(&self) -> (Child, Client) {
        let (child, client, _) = self.start_at().await;
        (child, client)
    }

    /// Starts the server; also returns its base URL.
    pub async fn start_at(&self) -> (Child, Client, String) {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("HOURGLASS_TEST_CLOCK_FILE", &self.clock)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(a) = line.strip_prefix("listening on ") {
                    return a.to_owned();
                }
            }
            panic!("server exited before listening");
        })
        .await
        .unwrap();
        // Keep draining stderr (into the log) so the server never blocks on a full pipe.
        let log = Arc::clone(&self.log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        (
            child,
            Client::new(&addr, Some(self.alice.clone())).unwrap(),
            addr,
        )
    }
}

/// `[server] log_format = "json"`: every log line the server writes is one JSON object.
#[tokio::test]
async fn json_logs_are_one_object_a_line() {
    let s = setup();
    let text = std::fs::read_to_string(&s.config).unwrap();
    assert!(text.contains("[server]\n"));
    std::fs::write(
        &s.config,
        text.replacen("[server]\n", "[server]\nlog_format = \"json\"\n", 1),
    )
    .unwrap();
    let (mut server, alice, _) = s.start_at().await;
    alice.whoami().await.unwrap();
    // A refusal names its trace id, and the server's log lines of that exchange carry it.
    let trace_id = match alice.get_request("req_0123").await {
        Err(hourglass_client::ClientError::Problem(p)) => p.trace_id.expect("a trace id"),
        other => panic!("{other:?}"),
    };
    assert_eq!(trace_id.len(), 16);
    let tagged = format!("\"trace_id\":\"{trace_id}\"");
    assert!(
        hourglass_testkit::eventually(|| async { s.log.lock().unwrap().contains(&tagged) }).await,
        "no log line carries {tagged}"
    );
    // Give the drain a moment to read what the server wrote (its lines, not an expiry).
    assert!(
        hourglass_testkit::eventually(|| async { !s.log.lock().unwrap().trim().is_empty() }).await
    );
    let log = s.log.lock().unwrap().clone();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{line}"
        );
    }
    server.kill().await.unwrap();
}
