//! Against the local Redis server (127.0.0.1:6379). Tests share the server, so each takes its
//! own user-name prefix and leaves nothing behind.

use hourglass_core::connector::{Connector, Managed, Presence, RevocationProof};
use redis::{AsyncCommands, Client, aio::MultiplexedConnection};
use secrecy::ExposeSecret;

use super::{RedisConfig, RedisConnector, check_rule, privileged};
use crate::testutil::spec;

const URL: &str = "redis://127.0.0.1:6379";

/// A connector with a prefix no other test uses.
fn connector(entitlements: &[serde_json::Value]) -> RedisConnector {
    let tag = hex::encode(crate::secret::random_bytes::<4>().unwrap());
    RedisConnector::new(
        &RedisConfig {
            url: URL.into(),
            password_file: None,
            prefix: format!("hg_t{tag}_"),
            timeout_secs: 5,
        },
        entitlements,
    )
    .unwrap()
}

async fn admin() -> MultiplexedConnection {
    Client::open(URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn reader() -> serde_json::Value {
    serde_json::json!({"rules": ["~app:*", "+@read", "+ping"]})
}

#[tokio::test]
async fn a_grant_is_an_acl_user_with_exactly_its_rules_until_revoked_and_proven_gone() {
    let r = connector(&[reader()]);
    let mut a = admin().await;
    let () = a.set("app:greeting", "hello").await.unwrap();
    let s = spec("alice", "cache/read", reader(), 30);
    let out = r.grant(&s).await.unwrap();
    let url = out.credential.unwrap().expose_secret().to_owned();
    assert!(url.starts_with(&format!("redis://{}", r.user(&s))), "{url}");
    // Granting again (after a crash) keeps one user, with a new password.
    let again = r.grant(&s).await.unwrap();
    let url = again.credential.unwrap().expose_secret().to_owned();
    let mut user = Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let got: String = user.get("app:greeting").await.unwrap();
    assert_eq!(got, "hello");
    // Outside its rules: another key, a write, an administrative command.
    assert!(user.get::<_, Option<String>>("other:key").await.is_err());
    assert!(user.set::<_, _, ()>("app:greeting", "bye").await.is_err());
    assert!(
        redis::cmd("FLUSHALL")
            .query_async::<()>(&mut user)
            .await
            .is_err()
    );
    assert_eq!(r.inspect(&s).await.unwrap(), Presence::Present);
    // Not revoked: no proof.
    let e = r.prove_revoked(&s).await.unwrap_err();
    assert!(e.message.contains("still exists"), "{e}");

    r.revoke(&s).await.unwrap();
    // The open connection is gone, and the password opens nothing.
    assert!(
        redis::cmd("PING")
            .query_async::<String>(&mut user)
            .await
            .is_err(),
        "the open connection survived the revocation"
    );
    assert!(
        Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .is_err()
    );
    assert_eq!(r.inspect(&s).await.unwrap(), Presence::Absent);
    match r.prove_revoked(&s).await.unwrap() {
        RevocationProof::Verified { checked } => assert!(checked.contains("CLIENT LIST")),
        other => panic!("{other:?}"),
    }
    // Idempotent.
    r.revoke(&s).await.unwrap();
    let () = a.del("app:greeting").await.unwrap();
}

#[tokio::test]
async fn discovery_finds_who_may_run_admin_commands_and_leftovers_are_removed() {
    let admin_rules = serde_json::json!({"rules": ["allkeys", "+@admin"]});
    let r = connector(&[reader(), admin_rules.clone()]);
    let read = spec("alice", "cache/read", reader(), 30);
    let full = spec("bob", "cache/admin", admin_rules, 30);
    r.grant(&read).await.unwrap();
    r.grant(&full).await.unwrap();
    let found = r.discover().await.unwrap();
    // The server's own `default` user holds everything; the admin grant too; the reader not.
    assert!(
        found
            .iter()
            .any(|h| h.holder == "default" && h.privilege == "+@all"),
        "{found:?}"
    );
    let mine: Vec<_> = found
        .iter()
        .filter(|h| h.holder.starts_with(&r.prefix))
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0].grant_id.as_deref(), Some(full.grant_id.as_str()));
    assert_eq!(mine[0].privilege, "+@admin");

    // A user made by hand with the prefix is a leftover the reconciler can list and remove.
    let mut a = admin().await;
    let stray = format!("{}grt_handmade", r.prefix);
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&stray)
        .arg("on")
        .arg("nopass")
        .arg("+ping")
        .query_async::<()>(&mut a)
        .await
        .unwrap();
    let managed = r.managed().await.unwrap().unwrap();
    let mut names: Vec<_> = managed.iter().map(|m| m.name.clone()).collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.contains(&stray));
    r.remove(&Managed {
        name: stray.clone(),
        grant_id: "grt_handmade".into(),
        ends_at: None,
    })
    .await
    .unwrap();
    assert!(
        r.remove(&Managed {
            name: "default".into(),
            grant_id: String::new(),
            ends_at: None,
        })
        .await
        .is_err(),
        "only prefixed users are removed"
    );
    for s in [&read, &full] {
        r.revoke(s).await.unwrap();
    }
    assert!(r.managed().await.unwrap().unwrap().is_empty());
}

#[test]
fn rules_that_set_passwords_or_state_are_refused_at_start() {
    for good in [
        "~app:*",
        "%R~cache:*",
        "&chan:*",
        "+@read",
        "-flushall",
        "allkeys",
        "+client|list",
    ] {
        assert!(check_rule(good).is_ok(), "{good}");
    }
    for bad in [
        ">secret",
        "<secret",
        "#abc",
        "nopass",
        "on",
        "OFF",
        "reset",
        "resetpass",
        "+get ~x",
        "",
        "keys",
    ] {
        assert!(check_rule(bad).is_err(), "{bad:?}");
    }
    let problems = RedisConnector::new(
        &RedisConfig {
            url: URL.into(),
            password_file: None,
            prefix: "Bad-Prefix".into(),
            timeout_secs: 5,
        },
        &[
            serde_json::json!({"rules": []}),
            serde_json::json!({"rules": ["nopass"]}),
        ],
    )
    .unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("prefix"));
    assert!(problems[1].contains("at least one"));
    assert!(problems[2].contains("Hourglass's to set"));
    assert_eq!(privileged("user ops on #abc ~* &* +@all"), Some("+@all"));
    assert_eq!(privileged("user ops off nopass ~* +@all"), None, "disabled");
    assert_eq!(privileged("user r on nopass ~* +@read"), None);
}
