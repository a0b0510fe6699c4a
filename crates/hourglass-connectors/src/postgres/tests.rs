//! Against the local PostgreSQL server, each test in a fresh database (see hourglass-testdb).

use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use hourglass_core::connector::{Connector, Managed, Presence, RevocationProof};
use hourglass_testdb::TestDb;
use secrecy::ExposeSecret;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::{PostgresConfig, PostgresConnector};
use crate::{secret::scram_with_salt, testutil::spec};

fn config(db: &TestDb) -> PostgresConfig {
    PostgresConfig {
        url: db.url.clone(),
        password_file: None,
        prefix: db.prefix.clone(),
        reassign_owned_to: None,
        bookkeeping_schema: "hourglass".into(),
        logins: Default::default(),
        terminate_member_sessions: true,
        timeout_secs: 5,
        max_connections: 2,
    }
}

async fn admin(db: &TestDb) -> PgConnection {
    PgConnection::connect(&db.url).await.unwrap()
}

async fn run(c: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn role_exists(c: &mut PgConnection, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(name)
        .fetch_one(c)
        .await
        .unwrap()
}

async fn is_member(c: &mut PgConnection, member: &str, role: &str) -> bool {
    sqlx::query_scalar("SELECT pg_has_role($1, $2, 'MEMBER')")
        .bind(member)
        .bind(role)
        .fetch_one(c)
        .await
        .unwrap()
}

/// The stored SCRAM verifier accepts `password`: recomputed from its own salt and iterations.
fn verifier_accepts(stored: &str, password: &str) -> bool {
    let Some(rest) = stored.strip_prefix("SCRAM-SHA-256$") else {
        return false;
    };
    let (iter_salt, _) = rest.split_once('$').unwrap();
    let (iter, salt) = iter_salt.split_once(':').unwrap();
    scram_with_salt(password, &B64.decode(salt).unwrap(), iter.parse().unwrap()) == stored
}

#[tokio::test]
async fn login_role_has_exactly_the_granted_privilege_until_revoked() {
    let Some(db) = hourglass_testdb::postgres().await else {
        return;
    };
    let reader = format!("{}_reader", db.name);
    let mut a = admin(&db).await;
    run(
        &mut a,
        &format!(
            "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);
             CREATE ROLE {reader} NOLOGIN; GRANT SELECT ON orders TO {reader};"
        ),
    )
    .await;
    let pg = PostgresConnector::new(config(&db), vec![reader.clone()]).unwrap();
    let mut s = spec(
        "alice",
        "pg/read",
        serde_json::json!({"roles": [reader]}),
        60,
    );

    let out = pg.grant(&s).await.unwrap();
    let url = out.credential.unwrap().expose_secret().to_owned();
    s.handle = out.handle;
    let role = format!("{}{}", db.prefix, s.grant_id.as_str());
    assert!(url.starts_with(&format!("postgres://{role}:")), "{url}");
    let password = url
        .split_once("://")
        .unwrap()
        .1
        .split_once('@')
        .unwrap()
        .0
        .split_once(':')
        .unwrap()
        .1
        .to_owned();

    // The server keeps a verifier of the password, never the password.
    let (stored, until): (String, String) = sqlx::query_as(
        "SELECT rolpassword, to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')
           FROM pg_authid WHERE rolname = $1",
    )
    .bind(&role)
    .fetch_one(&mut a)
    .await
    .unwrap();
    assert!(!stored.contains(&password));
    assert!(verifier_accepts(&stored, &password), "{stored}");
    assert!(!verifier_accepts(&stored, "wrong"));
    assert!(s.expires_at.to_string().starts_with(&until), "{until}");
    assert_eq!(pg.inspect(&s).await.unwrap(), Presence::Present);

    // Extended: VALID UNTIL moves to the new end; the password stays the same.
    s.expires_at = s.expires_at.plus_millis(30 * 60_000);
    assert!(pg.extend(&s).await.unwrap().is_none());
    let (stored_after, until): (String, String) = sqlx::query_as(
        "SELECT rolpassword, to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')
           FROM pg_authid WHERE rolname = $1",
    )
    .bind(&role)
    .fetch_one(&mut a)
    .await
    .unwrap();
    assert!(s.expires_at.to_string().starts_with(&until), "{until}");
    assert_eq!(stored_after, stored);

    // Reads what the role may read, and nothing more.
    let mut user = PgConnection::connect(&url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&mut user)
        .await
        .unwrap();
    assert_eq!(n, 1);
    for denied in [
        "INSERT INTO orders VALUES (2)",
        "CREATE TABLE mine (x int)",
        "CREATE ROLE sneaky",
    ] {
        let e = sqlx::query(AssertSqlSafe(denied.to_owned()))
            .execute(&mut user)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("permission denied"), "{denied}: {e}");
    }

    // Revoked: the open session is ended, a new login fails, the role is gone.
    pg.revoke(&s).await.unwrap();
    assert!(
        sqlx::query("SELECT 1").execute(&mut user).await.is_err(),
        "the open session survived the revocation"
    );
    assert!(PgConnection::connect(&url).await.is_err());
    assert!(!role_exists(&mut a, &role).await);
    assert_eq!(pg.inspect(&s).await.unwrap(), Presence::Absent);
    // The proof: the role is gone and none of its sessions is left.
    match pg.prove_revoked(&s).await.unwrap() {
        RevocationProof::Verified { checked } => {
            assert!(checked.contains("pg_stat_activity"), "{checked}");
        }
        other => panic!("not proven: {other:?}"),
    }
    pg.revoke(&s).await.unwrap();
    // Nothing to extend once the role is gone: an error, retried and audited by the engine.
    let e = pg.extend(&s).await.unwrap_err();
    assert!(e.message.contains("does not exist"), "{}", e.message);
}

#[tokio::test]
async fn granting_again_reissues_the_password_of_the_same_role() {
    let Some(db) = hourglass_testdb::postgres().await else {
        return;
    };
    let reader = format!("{}_reader", db.name);
    run(
        &mut admin(&db).await,
        &format!("CREATE ROLE {reader} NOLOGIN"),
    )
    .await;
    let pg = PostgresConnector::new(config(&db), vec![]).unwrap();
    let s = spec(
        "alice",
        "pg/read",
        serde_json::json!({"roles": [reader]}),
        5,
    );
    let first = pg.grant(&s).await.unwrap().credential.unwrap();
    let second = pg.grant(&s).await.unwrap().credential.unwrap();
    assert_ne!(first.expose_secret(), second.expose_secret());
    let managed = pg.managed().await.unwrap().unwrap();
    assert_eq!(managed.len(), 1, "{managed:?}");
    assert_eq!(managed[0].grant_id, s.grant_id.as_str());
}

#[tokio::test]
async fn owned_objects_are_reassigned_when_configured() {
    let Some(db) = hourglass_testdb::postgres().await else {
        return;
    };
    let (writer, owner) = (format!("{}_writer", db.name), format!("{}_owner", db.name));
    run(
        &mut admin(&db).await,
        &format!(
            "CREATE ROLE {writer} NOLOGIN; CREATE ROLE {owner} NOLOGIN;
             GRANT CREATE ON SCHEMA public TO {writer};"
        ),
    )
    .await;
    let mut cfg = config(&db);
    cfg.reassign_owned_to = Some(owner.clone());
    let pg = PostgresConnector::new(cfg, vec![]).unwrap();
    let s = spec(
        "alice",
        "pg/write",
        serde_json::json!({"roles": [writer]}),
        5,
    );
    let url = pg.grant(&s).await.unwrap().credential.unwrap();
    let mut user = PgConnection::connect(url.expose_secret()).await.unwrap();
    run(&mut user, "CREATE TABLE report (x int)").await;
    user.close().await.unwrap();
    pg.revoke(&s).await.unwrap();
    let table_owner: String =
        sqlx::query_scalar("SELECT tableowner::text FROM pg_tables WHERE tablename = 'report'")
            .fetch_one(&mut admin(&db).await)
            .await
            .unwrap();
    assert_eq!(table_owner, owner);
}

#[tokio::test]
async fn memberships_are_counted_and_a_prior_membership_survives() {
    let Some(db) = hourglass_testdb::postgres().await else {
        return;
    };
    let (rw, ro, human) = (
        format!("{}_rw", db.name),
        format!("{}_ro", db.name),
        format!("{}_alice", db.name),
    );
    let mut a = admin(&db).await;
    run(
        &mut a,
        &format!(
            "CREATE ROLE {rw} NOLOGIN; CREATE ROLE {ro} NOLOGIN; CREATE ROLE {human} LOGIN;
             GRANT {ro} TO {human};"
        ),
    )
    .await;
    let mut cfg = config(&db);
    cfg.logins.insert("alice".into(), human.clone());
    let pg = PostgresConnector::new(cfg, vec![rw.clone(), ro.clone()]).unwrap();
    let params = serde_json::json!({"roles": [rw, ro], "mode": "membership"});
    let first = spec("alice", "pg/rw", params.clone(), 30);
    let second = spec("alice", "pg/rw", params, 30);

    let out = pg.grant(&first).await.unwrap();
    assert!(out.credential.is_none());
    pg.grant(&first).await.unwrap();
    pg.grant(&second).await.unwrap();
    assert!(is_member(&mut a, &human, &rw).await);
    assert_eq!(pg.inspect(&first).await.unwrap(), Presence::Present);

    // Discovery tells the JIT memberships from the standing one.
    let holdings = pg.discover().await.unwrap();
    let of = |role: &str| {
        holdings
            .iter()
            .find(|h| h.holder == human && h.privilege == role)
            .unwrap_or_else(|| panic!("{human} in {role} not found in {holdings:?}"))
            .clone()
    };
    assert!(of(&rw).grant_id.is_some());
    assert!(holdings.iter().any(|h| h.privilege == "SUPERUSER"));

    pg.revoke(&first).await.unwrap();
    assert!(
        is_member(&mut a, &human, &rw).await,
        "revoking one grant removed the membership another grant holds"
    );
    pg.revoke(&second).await.unwrap();
    pg.revoke(&second).await.unwrap();
    assert!(!is_member(&mut a, &human, &rw).await);
    assert!(
        is_member(&mut a, &human, &ro).await,
        "a membership that existed before Hourglass was removed"
    );
    assert_eq!(pg.inspect(&second).await.unwrap(), Presence::Absent);
}

#[tokio::test]
async fn hand_made_roles_with_the_prefix_are_listed_and_removed() {
    let Some(db) = hourglass_testdb::postgres().await else {
        return;
    };
    let stray = format!("{}handmade", db.prefix);
    let mut a = admin(&db).await;
    run(
        &mut a,
        &format!(
            "CREATE ROLE {stray} LOGIN; CREATE TABLE t (x int); ALTER TABLE t OWNER TO {stray};"
        ),
    )
    .await;
    let pg = PostgresConnector::new(config(&db), vec![]).unwrap();
    let managed = pg.managed().await.unwrap().unwrap();
    assert_eq!(
        managed,
        vec![Managed {
            name: stray.clone(),
            grant_id: "handmade".into(),
            ends_at: None,
        }]
    );
    pg.remove(&managed[0]).await.unwrap();
    assert!(!role_exists(&mut a, &stray).await);
    pg.remove(&managed[0]).await.unwrap();
}

#[tokio::test]
async fn bad_parameters_and_prefixes_are_refused() {
    let Some(db) = hourglass_testdb::postgres().await else {
        return;
    };
    let pg = PostgresConnector::new(config(&db), vec![]).unwrap();
    assert!(!pg.check_params(&serde_json::json!({})).is_empty());
    assert!(
        !pg.check_params(&serde_json::json!({"roles": []}))
            .is_empty()
    );
    assert!(
        !pg.check_params(&serde_json::json!({"roles": ["r"], "mode": "owner"}))
            .is_empty()
    );
    assert!(
        pg.check_params(&serde_json::json!({"roles": ["r"]}))
            .is_empty()
    );
    let mut cfg = config(&db);
    cfg.prefix = "Bad-Prefix".into();
    let problems = PostgresConnector::new(cfg, vec![]).unwrap_err();
    assert!(problems[0].starts_with("prefix"), "{problems:?}");
}
