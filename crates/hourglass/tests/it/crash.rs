//! The real binary killed with SIGKILL at the worst moments, then restarted: access is
//! provisioned exactly once, revoked after the restart, and the audit chain still verifies.
//! Time is a clock file the test moves (feature `test-clock`), never a sleep for expiry.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use hourglass_api::CreateRequest;
use hourglass_client::Client;
use hourglass_testkit::eventually;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

const BIN: &str = env!("CARGO_BIN_EXE_hourglass");

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    clock: PathBuf,
    alice: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let w = hourglass_server::demo::write_layout(dir.path(), "127.0.0.1:0".parse().unwrap(), false)
        .unwrap();
    let target = dir.path().join("targets/demo-target.sh");
    let wrapper = dir.path().join("targets/crashy.sh");
    // Kills the server (its parent) before or after the real target acts, once per marker file.
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nd={d}\nop=$1\n\
             if [ -f \"$d/crash-$op-before\" ]; then rm -f \"$d/crash-$op-before\"; kill -9 $PPID; exit 1; fi\n\
             {t} \"$@\" || exit $?\n\
             if [ -f \"$d/crash-$op-after\" ]; then rm -f \"$d/crash-$op-after\"; kill -9 $PPID; exit 1; fi\n",
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
        dir,
    }
}

impl Setup {
    fn marker(&self, name: &str) {
        std::fs::write(self.dir.path().join(name), "").unwrap();
    }

    fn advance(&self, ms: i64) {
        let now: i64 = std::fs::read_to_string(&self.clock)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::write(&self.clock, (now + ms).to_string()).unwrap();
    }

    fn lines_with(&self, gid: &str) -> usize {
        let access =
            std::fs::read_to_string(self.dir.path().join("access.txt")).unwrap_or_default();
        access.lines().filter(|l| l.ends_with(gid)).count()
    }

    /// Starts the server and returns it with a client for alice.
    async fn start(&self) -> (Child, Client) {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("HOURGLASS_TEST_CLOCK_FILE", &self.clock)
            .env("RUST_LOG", "warn")
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
        // Keep draining stderr so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        (child, Client::new(&addr, Some(self.alice.clone())).unwrap())
    }
}

async fn killed(child: &mut Child) {
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success(), "the server was killed");
}

fn read_logs() -> CreateRequest {
    CreateRequest {
        entitlement: "demo/read-logs".into(),
        duration: Some("1m".into()),
        reason: "crash test".into(),
        ticket: None,
    }
}

async fn state(c: &Client, gid: &str) -> String {
    c.get_grant(gid).await.map(|g| g.state).unwrap_or_default()
}

#[tokio::test]
async fn killed_around_connector_calls_it_converges_after_restart() {
    let s = setup();

    // 1. Killed after the grant is committed, before the target acted.
    s.marker("crash-grant-before");
    let (mut server, client) = s.start().await;
    let gid_a = client
        .create_request(&read_logs())
        .await
        .unwrap()
        .grant_id
        .unwrap();
    killed(&mut server).await;
    assert_eq!(s.lines_with(&gid_a), 0);

    // 2. Restarted: provisioned, once. Then killed after the target acted, before the result
    //    was committed, for a second grant.
    let (mut server, client) = s.start().await;
    assert!(eventually(|| async { state(&client, &gid_a).await == "active" }).await);
    assert_eq!(s.lines_with(&gid_a), 1);
    s.marker("crash-grant-after");
    let gid_b = client
        .create_request(&read_logs())
        .await
        .unwrap()
        .grant_id
        .unwrap();
    killed(&mut server).await;
    assert_eq!(s.lines_with(&gid_b), 1);

    // 3. Restarted: the second grant's job runs again; the target still has it once.
    let (mut server, client) = s.start().await;
    assert!(eventually(|| async { state(&client, &gid_b).await == "active" }).await);
    assert_eq!(s.lines_with(&gid_b), 1);

    // 4. Both windows close; the server is killed between expiry and revocation.
    s.marker("crash-revoke-before");
    s.advance(61_000);
    killed(&mut server).await;
    assert_eq!(
        s.lines_with(&gid_a) + s.lines_with(&gid_b),
        2,
        "nothing revoked yet"
    );

    // 5. Restarted: both revoked.
    let (mut server, client) = s.start().await;
    assert!(
        eventually(|| async {
            state(&client, &gid_a).await == "revoked" && state(&client, &gid_b).await == "revoked"
        })
        .await
    );
    assert_eq!(s.lines_with(&gid_a) + s.lines_with(&gid_b), 0);
    server.kill().await.unwrap();

    // 6. The audit chain is intact and tells the story.
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify", "--config"])
        .arg(&s.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("audit chain ok"), "{text}");
}

#[tokio::test]
async fn audit_verify_names_the_first_altered_event() {
    let s = setup();
    let (mut server, client) = s.start().await;
    client.create_request(&read_logs()).await.unwrap();
    server.kill().await.unwrap();
    server.wait().await.unwrap();
    tamper(&s.dir.path().join("hourglass.db"), 2).await;
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify", "--config"])
        .arg(&s.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(text.contains("BROKEN at sequence 2"), "{text}");
}

/// Rewrites one event's actor, as someone with the database file could.
async fn tamper(db: &Path, seq: i64) {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .connect()
        .await
        .unwrap();
    sqlx::query("DROP TRIGGER audit_no_update")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_events SET actor = 'mallory' WHERE seq = ?")
        .bind(seq)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}
