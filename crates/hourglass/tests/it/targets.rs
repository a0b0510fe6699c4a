//! Real targets through the whole server: the local PostgreSQL (behind a proxy the test can
//! take down), the local Redis, and a local webhook receiver.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use hourglass_api::CreateRequest;
use hourglass_testdb::TestDb;
use hourglass_testkit::{TcpProxy, TestServer, eventually, spawn_server_typed, spawn_server_with};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const PG_POLICY: &str = r#"
@id("requesters-read-pg-auto")
permit (
  principal in Hourglass::Group::"requesters",
  action in [Hourglass::Action::"Request", Hourglass::Action::"AutoApprove"],
  resource is Hourglass::Entitlement
)
when { resource.target == "pg" || resource.target == "saas" || resource.target == "ssh" };
"#;

fn ask(ent: &str, dur: &str) -> CreateRequest {
    CreateRequest {
        task: None,
        entitlement: ent.into(),
        duration: Some(dur.into()),
        reason: "target test".into(),
        ticket: None,
        public_key: None,
        break_glass: false,
        starts_at: None,
    }
}

fn pg_port() -> SocketAddr {
    "127.0.0.1:5432".parse().unwrap()
}

/// A server with a `pg` target reached through `proxy`, an entitlement `pg/read` granting
/// `reader`, and a policy that auto-approves it for requesters.
async fn pg_server(db: &TestDb, proxy: &TcpProxy, reader: &str) -> TestServer {
    pg_server_with(db, proxy, reader, &["pg/read"]).await
}

/// Like [`pg_server`], with one entitlement granting `reader` under each of `names`.
async fn pg_server_with(db: &TestDb, proxy: &TcpProxy, reader: &str, names: &[&str]) -> TestServer {
    let url = db.url.replace("127.0.0.1:5432", &proxy.addr.to_string());
    let prefix = db.prefix.clone();
    let entitlements: String = names
        .iter()
        .map(|n| {
            format!(
                "[[entitlements]]\nname = \"{n}\"\ndefault_duration = \"10m\"\nmax_duration = \"1h\"\n[entitlements.params]\nroles = [\"{reader}\"]\n\n"
            )
        })
        .collect();
    spawn_server_typed(
        move |dir: &Path, text| {
            std::fs::write(dir.join("policies/pg.cedar"), PG_POLICY).unwrap();
            format!(
                "{text}\n[[targets]]\nname = \"pg\"\nconnector = \"postgres\"\n[targets.postgres]\nurl = \"{url}\"\nprefix = \"{prefix}\"\ntimeout_secs = 2\n\n{entitlements}"
            )
        },
        |_, c| c.server.overdue_after = hourglass_core::GrantDuration::from_secs(30),
    )
    .await
    .unwrap()
}

/// Runs `setup` on the test database, starts the server behind a proxy, and has alice's
/// auto-approved `pg/read` grant become active.
async fn pg_grant(db: &TestDb, reader: &str, setup: &str) -> (TcpProxy, TestServer, String) {
    let mut admin = PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(setup.to_owned()))
        .execute(&mut admin)
        .await
        .unwrap();
    let proxy = TcpProxy::start(pg_port()).await.unwrap();
    let s = pg_server(db, &proxy, reader).await;
    let alice = s.client("alice");
    let r = alice.create_request(&ask("pg/read", "10m")).await.unwrap();
    assert_eq!(r.state, "fulfilled", "{r:?}");
    let gid = r.grant_id.unwrap();
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "active" }).await);
    (proxy, s, gid)
}

async fn role_exists(db: &TestDb, role: &str) -> bool {
    let mut c = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(role)
        .fetch_one(&mut c)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_postgres_grant_survives_the_target_being_down_at_expiry() {
    let Some(db) = hourglass_testdb::postgres().await else {
        return;
    };
    let reader = format!("{}_reader", db.name);
    let (proxy, s, gid) = pg_grant(
        &db,
        &reader,
        &format!(
            "CREATE TABLE t (x int); CREATE ROLE {reader} NOLOGIN; GRANT SELECT ON t TO {reader};"
        ),
    )
    .await;
    let alice = s.client("alice");
    let cred = alice.credential(&gid).await.unwrap().credential;
    let mut session = PgConnection::connect(&cred).await.unwrap();
    sqlx::query("SELECT count(*) FROM t")
        .execute(&mut session)
        .await
        .unwrap();
    let role = format!("{}{gid}", db.prefix);

    // The target goes away; the grant expires.
    proxy.stop().await;
    s.clock.advance_ms(10 * 60_000);
    let retried = |n: u32| {
        let alice = alice.clone();
        async move {
            alice.metrics().await.unwrap().contains(&format!(
                "hourglass_job_retries_total{{action=\"revoke\"}} {n}"
            ))
        }
    };
    assert!(eventually(|| retried(1)).await);
    assert_eq!(alice.get_grant(&gid).await.unwrap().state, "revoking");
    s.clock.advance_ms(31_000);
    assert!(eventually(|| retried(2)).await);
    let m = alice.metrics().await.unwrap();
    assert!(m.contains("hourglass_revocations_overdue 1"), "{m}");
    assert!(
        role_exists(&db, &role).await,
        "the role went away without Hourglass"
    );

    // Back again: the next try revokes, with no further failure.
    proxy.resume().await.unwrap();
    s.clock.advance_ms(300_000);
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "revoked" }).await);
    let m = alice.metrics().await.unwrap();
    assert!(
        m.contains("hourglass_job_retries_total{action=\"revoke\"} 2"),
        "{m}"
    );
    assert!(m.contains("hourglass_revocations_overdue 0"), "{m}");
    assert!(!role_exists(&db, &role).await);
    assert!(sqlx::query("SELECT 1").execute(&mut session).await.is_err());
    s.stop().await;
}

#[tokio::test]
async fn the_reconciler_removes_a_hand_made_role_and_reports_standing_privilege() {
    let Some(db) = hourglass_testdb::postgres().await else {
        return;
    };
    let reader = format!("{}_reader", db.name);
    let stray = format!("{}grt_0000000000000000000000000000dead", db.prefix);
    let standing_user = format!("{}_bob", db.name);
    let (_proxy, s, gid) = pg_grant(
        &db,
        &reader,
        &format!(
            "CREATE ROLE {reader} NOLOGIN; CREATE ROLE {stray} LOGIN;
             CREATE ROLE {standing_user} LOGIN; GRANT {reader} TO {standing_user};"
        ),
    )
    .await;
    let alice = s.client("alice");

    let admin_client = s.client("admin");
    let forbidden = alice.reconcile().await.unwrap_err();
    assert!(forbidden.to_string().contains("Administer"), "{forbidden}");
    let report = admin_client.reconcile().await.unwrap();
    assert!(
        report.targets_checked.contains(&"pg".to_owned()),
        "{report:?}"
    );
    assert_eq!(report.drift.len(), 1, "{report:?}");
    let d = &report.drift[0];
    assert_eq!(
        (d.kind.as_str(), d.name.as_str(), d.removed),
        ("leftover", stray.as_str(), true)
    );
    assert_eq!(d.ledger_state, None);
    assert!(!role_exists(&db, &stray).await);
    assert!(
        role_exists(&db, &format!("{}{gid}", db.prefix)).await,
        "the live grant's role was removed"
    );
    assert!(
        admin_client
            .metrics()
            .await
            .unwrap()
            .contains("hourglass_reconcile_drift_total{target=\"pg\",kind=\"leftover\"} 1")
    );
    let events = s.store().unwrap().audit_after(0, 1_000).await.unwrap();
    assert!(events.iter().any(|e| e.record.action == "reconcile.drift"
        && e.record.details.contains(&("name".into(), stray.clone()))));
    // A second run finds nothing.
    assert!(admin_client.reconcile().await.unwrap().drift.is_empty());

    // The periodic run (every 5 minutes of the server's clock) finds a new leftover by itself.
    let later = format!("{}grt_0000000000000000000000000000beef", db.prefix);
    let mut c = PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE ROLE {later} LOGIN")))
        .execute(&mut c)
        .await
        .unwrap();
    s.clock.advance_ms(300_000);
    assert!(eventually(|| async { !role_exists(&db, &later).await }).await);

    let targets = admin_client.standing().await.unwrap();
    let pg = targets.iter().find(|t| t.target == "pg").unwrap();
    assert_eq!(pg.just_in_time, 1, "{pg:?}");
    assert!(
        pg.standing
            .iter()
            .any(|h| h.holder == standing_user && h.privilege == reader),
        "{pg:?}"
    );
    assert!(
        pg.standing.iter().any(|h| h.privilege == "SUPERUSER"),
        "{pg:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_webhook_target_that_fails_three_times_is_retried_until_it_answers() {
    let calls = Arc::new(AtomicU32::new(0));
    let keys = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let secret = "a-webhook-secret-that-is-long-enough-0123";
    let app = {
        let (calls, keys) = (Arc::clone(&calls), Arc::clone(&keys));
        axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let (calls, keys) = (Arc::clone(&calls), Arc::clone(&keys));
                    async move {
                        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
                        let ts: i64 = h("hourglass-timestamp").unwrap().parse().unwrap();
                        // The receiver checks against the sender's (manual) clock here.
                        hourglass_connectors::webhook::verify(
                            secret.as_bytes(),
                            h("hourglass-timestamp"),
                            h("hourglass-signature"),
                            &body,
                            ts,
                            300,
                        )
                        .unwrap();
                        keys.lock()
                            .unwrap()
                            .push(h("idempotency-key").unwrap().to_owned());
                        if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                            (
                                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                                "down".to_owned(),
                            )
                        } else {
                            (
                                axum::http::StatusCode::OK,
                                r#"{"handle": {"seat": 7}}"#.to_owned(),
                            )
                        }
                    }
                },
            ),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let s = spawn_server_with(move |dir: &Path, text| {
        std::fs::write(dir.join("policies/pg.cedar"), PG_POLICY).unwrap();
        std::fs::write(dir.join("saas.secret"), secret).unwrap();
        format!(
            "{text}\n[[targets]]\nname = \"saas\"\nconnector = \"webhook\"\n[targets.webhook]\nurl = \"http://{addr}/hook\"\nsecret_file = \"saas.secret\"\nallow_private = true\n\n\
             [[entitlements]]\nname = \"saas/admin\"\ndefault_duration = \"10m\"\nmax_duration = \"1h\"\n"
        )
    })
    .await
    .unwrap();
    let alice = s.client("alice");
    let gid = alice
        .create_request(&ask("saas/admin", "10m"))
        .await
        .unwrap()
        .grant_id
        .unwrap();
    for n in 1..=3 {
        assert!(eventually(|| async { calls.load(Ordering::SeqCst) >= n }).await);
        assert_eq!(alice.get_grant(&gid).await.unwrap().state, "provisioning");
        s.clock.advance_ms(1_000 << n);
    }
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "active" }).await);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert!(keys.lock().unwrap().iter().all(|k| k == &gid));
    s.stop().await;
}

#[tokio::test]
async fn an_ssh_grant_needs_a_public_key_and_an_early_revocation_is_served_in_the_krl() {
    let s = spawn_server_with(|dir: &Path, text| {
        std::fs::write(dir.join("policies/pg.cedar"), PG_POLICY).unwrap();
        format!(
            "{text}\n[[targets]]\nname = \"ssh\"\nconnector = \"ssh\"\n\
             ssh = {{ ca_key_file = \"ssh/ca\", krl_file = \"ssh/revoked.krl\" }}\n\n\
             [[entitlements]]\nname = \"ssh/deploy\"\ndefault_duration = \"30m\"\nmax_duration = \"1h\"\n\
             params = {{ principals = [\"deploy\"] }}\n"
        )
    })
    .await
    .unwrap();
    let alice = s.client("alice");

    // Without a key: refused before anything is stored.
    let e = alice
        .create_request(&ask("ssh/deploy", "30m"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("field public_key"), "{e}");
    assert!(alice.list_requests(None).await.unwrap().is_empty());

    let key_path = s.dir.path().join("id_ed25519");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key_path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut req = ask("ssh/deploy", "30m");
    req.public_key = Some(std::fs::read_to_string(key_path.with_extension("pub")).unwrap());
    let gid = alice.create_request(&req).await.unwrap().grant_id.unwrap();
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "active" }).await);
    let cert = alice.credential(&gid).await.unwrap().credential;
    assert!(
        cert.starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{cert}"
    );
    let cert_path = s.dir.path().join("id_ed25519-cert.pub");
    std::fs::write(&cert_path, cert).unwrap();

    alice.revoke(&gid, Some("done early".into())).await.unwrap();
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "revoked" }).await);
    let krl = reqwest::get(format!("http://{}/v1/ssh/krl", s.addr))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let krl_path = s.dir.path().join("served.krl");
    std::fs::write(&krl_path, &krl).unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .arg("-Q")
        .arg("-f")
        .arg(&krl_path)
        .arg(&cert_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("REVOKED"), "{text}");

    // A certificate not fetched before its grant was revoked is never handed over.
    let unseen = alice.create_request(&req).await.unwrap().grant_id.unwrap();
    assert!(
        eventually(|| async { alice.get_grant(&unseen).await.unwrap().state == "active" }).await
    );
    // Someone else asking cannot burn it, nor learn of it.
    assert!(s.client("bob").credential(&unseen).await.is_err());
    alice.revoke(&unseen, None).await.unwrap();
    let p = crate::lifecycle::problem(alice.credential(&unseen).await.unwrap_err());
    assert_eq!(
        (p.status, p.code.as_str()),
        (404, "credential.not_available")
    );
    s.stop().await;
}

#[tokio::test]
async fn a_redis_grant_is_an_acl_user_whose_revocation_is_proven() {
    let prefix = format!("hg_it{}_", std::process::id());
    let p = prefix.clone();
    let s = spawn_server_with(move |dir, text| {
        let prefix = &p;
        std::fs::write(
            dir.join("policies/cache.cedar"),
            r#"
@id("requesters-read-cache-auto")
permit (
  principal in Hourglass::Group::"requesters",
  action in [Hourglass::Action::"Request", Hourglass::Action::"AutoApprove"],
  resource == Hourglass::Entitlement::"cache/read"
);
"#,
        )
        .unwrap();
        format!(
            "{text}\n[[targets]]\nname = \"cache\"\nconnector = \"redis\"\n\
             redis = {{ url = \"redis://127.0.0.1:6379\", prefix = \"{prefix}\" }}\n\n\
             [[entitlements]]\nname = \"cache/read\"\ndefault_duration = \"10m\"\nmax_duration = \"1h\"\n\
             params = {{ rules = [\"~orders:*\", \"+@read\"] }}\n"
        )
    })
    .await
    .unwrap();
    let alice = s.client("alice");
    let r = alice
        .create_request(&ask("cache/read", "10m"))
        .await
        .unwrap();
    let gid = r.grant_id.unwrap();
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "active" }).await);
    let url = alice.credential(&gid).await.unwrap().credential;
    let mut session = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let none: Option<String> = redis::cmd("GET")
        .arg("orders:1")
        .query_async(&mut session)
        .await
        .unwrap();
    assert_eq!(none, None);
    assert!(
        redis::cmd("GET")
            .arg("users:1")
            .query_async::<Option<String>>(&mut session)
            .await
            .is_err(),
        "outside its key pattern"
    );

    alice.revoke(&gid, None).await.unwrap();
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "revoked" }).await);
    assert!(
        redis::cmd("PING")
            .query_async::<String>(&mut session)
            .await
            .is_err(),
        "the session outlived the revocation"
    );
    let audit = s.store().unwrap().audit_after(0, 10_000).await.unwrap();
    let proof = audit
        .iter()
        .find(|e| e.record.action == "grant.revocation_verified" && e.record.subject == gid)
        .unwrap();
    assert!(
        proof
            .record
            .details
            .contains(&("proof".into(), "verified".into()))
    );
    assert!(
        proof
            .record
            .details
            .iter()
            .any(|(k, v)| k == "checked" && v.contains(&format!("{prefix}{gid}")))
    );
    s.stop().await;
}

#[tokio::test]
async fn an_aws_target_that_could_outwait_its_job_lease_is_refused_at_start() {
    let err = spawn_server_with(|_, text| {
        format!(
            "{text}\n[[targets]]\nname = \"aws\"\nconnector = \"aws\"\naws = {{ region = \"eu-west-1\", settle_secs = 60 }}\n"
        )
    })
    .await
    .err()
    .expect("refused")
    .to_string();
    assert!(
        err.contains("aws.settle_secs") && err.contains("job_lease"),
        "{err}"
    );
    // The defaults fit the default lease.
    let s = spawn_server_with(|_, text| {
        format!("{text}\n[[targets]]\nname = \"aws\"\nconnector = \"aws\"\naws = {{ region = \"eu-west-1\" }}\n")
    })
    .await
    .unwrap();
    s.stop().await;
}

/// Waits until grant `gid` is active.
async fn until_active(c: &hourglass_client::Client, gid: String) -> String {
    assert!(eventually(|| async { c.get_grant(&gid).await.unwrap().state == "active" }).await);
    gid
}

/// Asks as `c` for `ent` (auto-approved) and waits until the grant is active.
async fn granted(c: &hourglass_client::Client, ent: &str, dur: &str) -> String {
    let r = c.create_request(&ask(ent, dur)).await.unwrap();
    until_active(c, r.grant_id.unwrap()).await
}

/// The end PostgreSQL enforces for a login role, in Unix milliseconds.
async fn valid_until_ms(db: &TestDb, role: &str) -> Option<i64> {
    let mut c = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query_scalar(
        "SELECT (extract(epoch FROM rolvaliduntil) * 1000)::bigint FROM pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .fetch_optional(&mut c)
    .await
    .unwrap()
    .flatten()
}

/// Restoring an older backup of the store (the failure of Vault #22275, and its mirror image):
/// nothing that ended after the backup is granted again, a grant extended after the backup is
/// not ended at the older end the backup holds, what the ledger never knew is removed, and the
/// grants and the targets agree afterwards.
#[tokio::test]
async fn a_restored_backup_grants_nothing_again_and_keeps_a_later_extension() {
    let Some(db) = hourglass_testdb::postgres().await else {
        return;
    };
    let reader = format!("{}_reader", db.name);
    let mut admin = PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE t (x int); CREATE ROLE {reader} NOLOGIN; GRANT SELECT ON t TO {reader};"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let proxy = TcpProxy::start(pg_port()).await.unwrap();
    // One entitlement for each grant: a person holds one grant of an entitlement at a time.
    let mut s = pg_server_with(
        &db,
        &proxy,
        &reader,
        &["pg/read", "pg/revoked", "pg/in-flight", "pg/made-after"],
    )
    .await;
    let role = |gid: &str| format!("{}{gid}", db.prefix);
    let alice = s.client("alice");
    let extended = granted(&alice, "pg/read", "10m").await;
    let revoked_later = granted(&alice, "pg/revoked", "10m").await;
    // The demo target (exec) cannot list what it holds.
    let logs = granted(&alice, "demo/read-logs", "15m").await;
    assert!(s.access().contains("alice"), "{}", s.access());
    // With the target down, a grant stays provisioning.
    proxy.stop().await;
    let in_flight = alice
        .create_request(&ask("pg/in-flight", "10m"))
        .await
        .unwrap()
        .grant_id
        .unwrap();
    assert_eq!(
        alice.get_grant(&in_flight).await.unwrap().state,
        "provisioning"
    );

    // The backup: an online copy of the SQLite store.
    let config = hourglass_server::config::Config::load(&s.config, Vec::new()).unwrap();
    let store = std::path::PathBuf::from(config.store.url.strip_prefix("sqlite://").unwrap());
    let backup = s.dir.path().join("backup.db");
    let mut c = <sqlx::SqliteConnection as Connection>::connect(&config.store.url)
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!("VACUUM INTO '{}'", backup.display())))
        .execute(&mut c)
        .await
        .unwrap();
    drop(c);

    // After the backup: the in-flight grant is provisioned and then revoked, one grant is
    // extended, one revoked, and one made.
    proxy.resume().await.unwrap();
    s.clock.advance_ms(60_000);
    let in_flight = until_active(&alice, in_flight).await;
    alice.revoke(&in_flight, None).await.unwrap();
    let ext = alice
        .extend(&extended, "20m", "still migrating")
        .await
        .unwrap();
    assert_eq!(ext.state, "fulfilled", "{ext:?}");
    let new_end = alice.get_grant(&extended).await.unwrap().expires_at;
    let new_end_ms = hourglass_core::Timestamp::parse_rfc3339(&new_end)
        .unwrap()
        .unix_millis();
    assert!(
        eventually(|| async { valid_until_ms(&db, &role(&extended)).await == Some(new_end_ms) })
            .await,
        "the target never took the extension"
    );
    alice.revoke(&revoked_later, None).await.unwrap();
    let made_after = granted(&alice, "pg/made-after", "10m").await;
    for gid in [&in_flight, &revoked_later] {
        assert!(
            eventually(|| async { alice.get_grant(gid).await.unwrap().state == "revoked" }).await
        );
        assert!(!role_exists(&db, &role(gid)).await);
    }

    // The restore: the backup replaces the store, and the server starts after it.
    s.halt().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", store.display()));
    }
    std::fs::copy(&backup, &store).unwrap();
    s.restart(|c| c.after_restore = true).await.unwrap();
    let alice = s.client("alice");
    let admin = s.client("admin");

    // The extension made after the backup stands: the end PostgreSQL enforces.
    let g = alice.get_grant(&extended).await.unwrap();
    assert_eq!(g.state, "active");
    assert_eq!(g.expires_at, new_end);
    // Nothing ended after the backup comes back.
    for gid in [&in_flight, &revoked_later, &logs] {
        assert!(
            eventually(|| async {
                let g = alice.get_grant(gid).await.unwrap();
                g.state == "revoked" || g.state == "failed"
            })
            .await,
            "{gid} is still live"
        );
    }
    assert!(
        !role_exists(&db, &role(&in_flight)).await,
        "provisioned again"
    );
    assert!(!role_exists(&db, &role(&revoked_later)).await);
    assert!(
        eventually(|| async { !s.access().contains("alice") }).await,
        "{}",
        s.access()
    );
    // What the ledger never knew is gone from the target.
    assert!(
        eventually(|| async { !role_exists(&db, &role(&made_after)).await }).await,
        "a grant the restored ledger never knew is still in the target"
    );
    let events = admin.audit(0).await.unwrap();
    let restored = events
        .iter()
        .find(|e| e.action == "store.restored")
        .expect("the restore is in the audit log");
    let detail = |k: &str| {
        restored
            .details
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(detail("provisioning_ended"), "1");
    assert_eq!(detail("gone_ended"), "1");
    assert_eq!(detail("unverifiable_ended"), "1");
    assert_eq!(detail("ends_restored"), "1");
    assert!(events.iter().any(|e| e.action == "grant.end_restored"
        && e.subject == extended
        && e.details.contains(&("to".to_owned(), new_end.clone()))));
    assert!(events.iter().any(|e| {
        e.action == "reconcile.drift"
            && e.subject == made_after
            && e.details
                .contains(&("kind".to_owned(), "leftover".to_owned()))
    }));

    // The older end passes and the grant holds (a grant ending before it shows that the
    // scheduler has been past it); the new end passes and it ends.
    let witness = granted(&alice, "demo/read-logs", "10m").await;
    s.clock.advance_ms(12 * 60_000);
    assert!(
        eventually(|| async { alice.get_grant(&witness).await.unwrap().state == "revoked" }).await
    );
    assert_eq!(alice.get_grant(&extended).await.unwrap().state, "active");
    assert!(role_exists(&db, &role(&extended)).await);
    s.clock.advance_ms(20 * 60_000);
    assert!(
        eventually(|| async { alice.get_grant(&extended).await.unwrap().state == "revoked" }).await
    );
    assert!(!role_exists(&db, &role(&extended)).await);
    s.stop().await;
}
