//! The real binary killed with SIGKILL at the worst moments, then restarted: access is
//! provisioned exactly once, revoked after the restart, and the audit chain still verifies.
//! Time is a clock file the test moves (feature `test-clock`), never a sleep for expiry.

use std::path::Path;

use hourglass_api::CreateRequest;
use hourglass_client::Client;
use hourglass_testkit::eventually;
use tokio::process::Child;

use crate::binary::{BIN, Setup, setup};

impl Setup {
    pub fn marker(&self, name: &str) {
        std::fs::write(self.dir.path().join(name), "").unwrap();
    }

    pub fn advance(&self, ms: i64) {
        let now: i64 = std::fs::read_to_string(&self.clock)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::write(&self.clock, (now + ms).to_string()).unwrap();
    }

    pub fn lines_with(&self, gid: &str) -> usize {
        let access =
            std::fs::read_to_string(self.dir.path().join("access.txt")).unwrap_or_default();
        access.lines().filter(|l| l.ends_with(gid)).count()
    }
}

async fn killed(child: &mut Child) {
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
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
        public_key: None,
        break_glass: false,
        starts_at: None,
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
    //    (The second grant is ci-deployer's: alice already holds read-logs.)
    let (mut server, client, base) = s.start_at().await;
    assert!(eventually(|| async { state(&client, &gid_a).await == "active" }).await);
    assert_eq!(s.lines_with(&gid_a), 1);
    s.marker("crash-grant-after");
    let gid_b = s
        .client(&base, "ci-deployer")
        .create_request(&read_logs())
        .await
        .unwrap()
        .grant_id
        .unwrap();
    killed(&mut server).await;
    assert_eq!(s.lines_with(&gid_b), 1);

    // 3. Restarted: the second grant's job runs again; the target still has it once.
    let (mut server, _, base) = s.start_at().await;
    let ci = s.client(&base, "ci-deployer");
    assert!(eventually(|| async { state(&ci, &gid_b).await == "active" }).await);
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
    let (mut server, _, base) = s.start_at().await;
    let admin = s.client(&base, "admin");
    assert!(
        eventually(|| async {
            state(&admin, &gid_a).await == "revoked" && state(&admin, &gid_b).await == "revoked"
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
