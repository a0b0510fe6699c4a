//! Against the local MariaDB server, each test in a fresh database (see hourglass-testdb).

use hourglass_core::connector::{Connector, Presence, RevocationProof};
use hourglass_testdb::TestDb;
use secrecy::ExposeSecret;
use sqlx::{AssertSqlSafe, Connection, MySqlConnection};

use super::{MysqlConfig, MysqlConnector};
use crate::testutil::spec;

fn config(db: &TestDb) -> MysqlConfig {
    MysqlConfig {
        url: db.url.clone(),
        password_file: None,
        prefix: db.prefix.clone(),
        account_host: "%".into(),
        timeout_secs: 5,
        max_connections: 2,
    }
}

async fn run(c: &mut MySqlConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn admin(db: &TestDb) -> MySqlConnection {
    MySqlConnection::connect(&db.url).await.unwrap()
}

async fn user_exists(c: &mut MySqlConnection, user: &str) -> bool {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mysql.user WHERE User = ?")
        .bind(user)
        .fetch_one(c)
        .await
        .unwrap();
    n > 0
}

#[tokio::test]
async fn account_has_exactly_the_granted_privilege_until_revoked() {
    let Some(db) = hourglass_testdb::mysql().await else {
        return;
    };
    let mut a = admin(&db).await;
    run(
        &mut a,
        "CREATE TABLE orders (id INT); INSERT INTO orders VALUES (1);",
    )
    .await;
    let ent = serde_json::json!({"privileges": ["select"], "on": format!("{}.*", db.name)});
    let my = MysqlConnector::new(config(&db), std::slice::from_ref(&ent)).unwrap();
    let mut s = spec("alice", "maria/read", ent, 60);
    let out = my.grant(&s).await.unwrap();
    s.handle = out.handle;
    let url = out.credential.unwrap().expose_secret().to_owned();
    let user = format!("{}{}", db.prefix, s.grant_id.as_str());
    assert!(url.starts_with(&format!("mysql://{user}:")), "{url}");
    assert_eq!(my.inspect(&s).await.unwrap(), Presence::Present);

    // The password really authenticates (MariaDB checks it here), and a wrong one does not.
    let wrong = url
        .replacen(':', "#", 2)
        .replacen('#', ":", 1)
        .replacen('#', ":x", 1);
    assert!(MySqlConnection::connect(&wrong).await.is_err());
    let mut session = MySqlConnection::connect(&url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&mut session)
        .await
        .unwrap();
    assert_eq!(n, 1);
    for denied in [
        "INSERT INTO orders VALUES (2)",
        "CREATE TABLE mine (x INT)",
        "SELECT COUNT(*) FROM mysql.user",
    ] {
        let e = sqlx::raw_sql(AssertSqlSafe(denied.to_owned()))
            .execute(&mut session)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("denied"), "{denied}: {e}");
    }

    // Discovery reports the grant's account (with its grant id) and the standing root.
    let holdings = my.discover().await.unwrap();
    assert!(
        holdings
            .iter()
            .any(|h| h.holder.contains(&user) && h.grant_id.as_deref() == Some(s.grant_id.as_str())),
        "{holdings:?}"
    );
    assert!(
        holdings
            .iter()
            .any(|h| h.holder.starts_with("'root'") && h.grant_id.is_none()),
        "{holdings:?}"
    );

    my.revoke(&s).await.unwrap();
    assert!(
        sqlx::query("SELECT 1").execute(&mut session).await.is_err(),
        "the open session survived the revocation"
    );
    assert!(MySqlConnection::connect(&url).await.is_err());
    assert!(!user_exists(&mut a, &user).await);
    assert_eq!(my.inspect(&s).await.unwrap(), Presence::Absent);
    match my.prove_revoked(&s).await.unwrap() {
        RevocationProof::Verified { checked } => {
            assert!(checked.contains("PROCESSLIST"), "{checked}")
        }
        other => panic!("not proven: {other:?}"),
    }
    my.revoke(&s).await.unwrap();
}

#[tokio::test]
async fn a_role_is_granted_as_the_default_role() {
    let Some(db) = hourglass_testdb::mysql().await else {
        return;
    };
    let role = format!("{}_reader", db.name);
    run(
        &mut admin(&db).await,
        &format!(
            "CREATE TABLE t (x INT); CREATE ROLE {role}; GRANT SELECT ON {}.t TO {role};",
            db.name
        ),
    )
    .await;
    let ent = serde_json::json!({"role": role});
    let my = MysqlConnector::new(config(&db), std::slice::from_ref(&ent)).unwrap();
    let s = spec("alice", "maria/role", ent, 10);
    let url = my.grant(&s).await.unwrap().credential.unwrap();
    let mut session = MySqlConnection::connect(url.expose_secret()).await.unwrap();
    let table = format!("SELECT COUNT(*) FROM {}.t", db.name);
    sqlx::raw_sql(AssertSqlSafe(table))
        .execute(&mut session)
        .await
        .unwrap();
    let holdings = my.discover().await.unwrap();
    assert!(
        holdings
            .iter()
            .any(|h| h.privilege == format!("role {role}") && h.grant_id.is_some()),
        "{holdings:?}"
    );
    my.revoke(&s).await.unwrap();
}

#[tokio::test]
async fn hand_made_accounts_with_the_prefix_are_listed_and_removed() {
    let Some(db) = hourglass_testdb::mysql().await else {
        return;
    };
    let stray = format!("{}handmade", db.prefix);
    let mut a = admin(&db).await;
    run(&mut a, &format!("CREATE USER '{stray}'@'localhost'")).await;
    let my = MysqlConnector::new(config(&db), &[]).unwrap();
    let managed = my.managed().await.unwrap().unwrap();
    assert_eq!(managed.len(), 1, "{managed:?}");
    assert_eq!(managed[0].name, format!("{stray}@localhost"));
    my.remove(&managed[0]).await.unwrap();
    assert!(!user_exists(&mut a, &stray).await);
    my.remove(&managed[0]).await.unwrap();
}

#[test]
fn bad_parameters_are_refused() {
    use super::params;
    for bad in [
        serde_json::json!({}),
        serde_json::json!({"privileges": ["SELECT"]}),
        serde_json::json!({"privileges": ["SELECT; DROP"], "on": "a.*"}),
        serde_json::json!({"privileges": ["GRANT OPTION"], "on": "a.*"}),
        serde_json::json!({"privileges": ["SELECT"], "on": "nodot"}),
        serde_json::json!({"role": "r", "extra": 1}),
    ] {
        assert!(params(&bad).is_err(), "{bad}");
    }
    assert!(params(&serde_json::json!({"privileges": ["SELECT"], "on": "a.*"})).is_ok());
    assert!(params(&serde_json::json!({"role": "r"})).is_ok());
}
