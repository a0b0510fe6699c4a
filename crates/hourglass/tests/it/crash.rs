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
        task: None,
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
    c.get_grant(gid)
        .await
        .map(|g| g.state.to_string())
        .unwrap_or_default()
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
    crate::binary::assert_audit_verifies(&s.config);
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

/// Group commit under SIGKILL: sixteen clients ask and cancel as fast as they can while the
/// server is killed mid-stream. After the restart every change that was answered is there,
/// nothing that was written lacks its audit event (no half-applied batch), and the chain
/// verifies.
#[tokio::test]
async fn killed_in_the_middle_of_a_batch_every_answered_change_is_there_whole() {
    const CLIENTS: usize = 16;
    let s = setup();
    let d = s.dir.path();
    std::fs::write(
        d.join("policies/batch.cedar"),
        r#"@id("batchers-ask")
permit (
  principal in Hourglass::Group::"batchers",
  action == Hourglass::Action::"Request",
  resource == Hourglass::Entitlement::"demo/ops-admin"
);
"#,
    )
    .unwrap();
    let mut config = std::fs::read_to_string(&s.config).unwrap();
    let mut tokens = Vec::new();
    for i in 0..CLIENTS {
        let token = hourglass_server::auth::new_token().unwrap();
        config.push_str(&format!(
            "\n[[identities]]\nname = \"batcher{i:02}\"\nkind = \"workload\"\nowner = \"alice\"\ngroups = [\"batchers\"]\ntoken_sha256 = [\"{}\"]\n",
            hourglass_server::auth::token_hash(&token)
        ));
        tokens.push(token);
    }
    std::fs::write(&s.config, config).unwrap();
    let (mut server, _, base) = s.start_at().await;

    // Each client: ask (pending), then cancel, again and again, recording every answer.
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, &str)>::new()));
    let mut clients = tokio::task::JoinSet::new();
    for token in &tokens {
        let c = hourglass_client::Client::new(&base, Some(token.clone())).unwrap();
        let answered = answered.clone();
        clients.spawn(async move {
            let ask = CreateRequest {
                task: None,
                entitlement: "demo/ops-admin".into(),
                duration: Some("30m".into()),
                reason: "batch test".into(),
                ..read_logs()
            };
            loop {
                let Ok(r) = c.create_request(&ask).await else {
                    return;
                };
                answered.lock().unwrap().push((r.id.clone(), "pending"));
                let Ok(r) = c.cancel(&r.id).await else { return };
                answered.lock().unwrap().push((r.id, "cancelled"));
            }
        });
    }
    // Killed once the stream is well under way (answers, not time, decide when).
    assert!(
        eventually(|| async { answered.lock().unwrap().len() >= 200 }).await,
        "the clients got answers"
    );
    server.start_kill().unwrap();
    killed(&mut server).await;
    while clients.join_next().await.is_some() {}
    let answered = answered.lock().unwrap().clone();

    // Restarted: every answered change is there.
    let (mut server, _, base) = s.start_at().await;
    let admin = s.client(&base, "admin");
    for (id, state) in &answered {
        let r = admin.get_request(id).await.unwrap();
        if *state == "cancelled" {
            assert_eq!(r.state, "cancelled", "{id}");
        }
    }
    server.kill().await.unwrap();

    // Nothing half applied: every request row has the events of its state, and every event
    // about a request names a row.
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        d.join("hourglass.db").display()
    ))
    .await
    .unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT id, state FROM requests")
        .fetch_all(&db)
        .await
        .unwrap();
    let events: Vec<(String, String)> =
        sqlx::query_as("SELECT subject, action FROM audit_events WHERE action LIKE 'request.%'")
            .fetch_all(&db)
            .await
            .unwrap();
    db.close().await;
    let has = |id: &str, action: &str| events.iter().any(|(s, a)| s == id && a == action);
    assert!(rows.len() >= answered.iter().filter(|(_, s)| *s == "pending").count());
    for (id, state) in &rows {
        assert!(has(id, "request.created"), "{id} has no request.created");
        if state == "cancelled" {
            assert!(
                has(id, "request.cancelled"),
                "{id} has no request.cancelled"
            );
        }
    }
    for (subject, action) in &events {
        let row = rows.iter().find(|(id, _)| id == subject);
        assert!(
            row.is_some(),
            "{action} about {subject}, which is not in the ledger"
        );
        if action == "request.cancelled" {
            assert_eq!(row.unwrap().1, "cancelled", "{subject}");
        }
    }
    crate::binary::assert_audit_verifies(&s.config);
}
