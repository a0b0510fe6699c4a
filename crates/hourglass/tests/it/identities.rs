//! The identity directory through the API: creation rules, the key lifecycle (shown once,
//! expiring, rotated with an overlap, revoked), the inventory and hygiene report, and
//! offboarding a workload whose grants live on real targets (PostgreSQL, MariaDB, the demo
//! script), which must leave none.

use hourglass_api::{CreateIdentity, CreateRequest, IdentityView, OffboardView};
use hourglass_client::{Client, ClientError};
use hourglass_testkit::{eventually, spawn_server, spawn_server_with};
use sqlx::{Connection, MySqlConnection, PgConnection};

fn problem(e: ClientError) -> (u16, String, Option<String>) {
    match e {
        ClientError::Problem(p) => (p.status, p.code, p.field),
        other => panic!("expected a problem, got {other:?}"),
    }
}

fn as_key(s: &hourglass_testkit::TestServer, secret: &str) -> Client {
    Client::new(&format!("http://{}", s.addr), Some(secret.to_owned())).unwrap()
}

fn workload(name: &str, owner: Option<&str>) -> CreateIdentity {
    CreateIdentity {
        name: name.into(),
        kind: "workload".into(),
        owner: owner.map(Into::into),
        groups: vec!["workloads".into()],
    }
}

#[tokio::test]
async fn identities_need_owners_and_keys_expire_rotate_and_revoke() {
    let s = spawn_server(|c| c).await.unwrap();
    let admin = s.client("admin");
    let names = |v: Vec<IdentityView>| {
        v.into_iter()
            .map(|i| (i.name, i.status, i.keys.len()))
            .collect::<Vec<_>>()
    };
    let before = names(admin.identities().await.unwrap());
    let audit_before = admin.audit(0).await.unwrap().len();

    // Bad input: a clear error naming the field, and nothing written.
    for (body, code, field) in [
        (workload("etl", None), "identity.owner_missing", "owner"),
        (
            workload("etl", Some("nobody")),
            "identity.owner_unknown",
            "owner",
        ),
        (
            workload("etl", Some("ci-deployer")),
            "identity.owner_not_human",
            "owner",
        ),
        (
            workload("bad name", Some("alice")),
            "identity.name_invalid",
            "name",
        ),
        (
            CreateIdentity {
                kind: "robot".into(),
                ..workload("etl", Some("alice"))
            },
            "identity.kind_invalid",
            "kind",
        ),
    ] {
        let (status, c, f) = problem(admin.create_identity(&body).await.unwrap_err());
        assert_eq!((status, c.as_str(), f.as_deref()), (400, code, Some(field)));
    }
    let (status, code, _) = problem(
        s.client("bob")
            .create_identity(&workload("etl", Some("alice")))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, code.as_str()),
        (403, "identity.create_not_allowed")
    );
    assert_eq!(names(admin.identities().await.unwrap()), before);
    assert_eq!(admin.audit(0).await.unwrap().len(), audit_before);

    let etl = admin
        .create_identity(&workload("etl", Some("alice")))
        .await
        .unwrap();
    assert_eq!(
        (etl.kind.as_str(), etl.status.as_str(), etl.origin.as_str()),
        ("workload", "active", "api")
    );
    let (status, code, _) = problem(
        admin
            .create_identity(&workload("etl", Some("alice")))
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (409, "identity.exists"));

    // Keys: a mandatory, bounded expiry; the owner (alice) may issue one; others see nothing.
    let (status, code, field) = problem(
        admin
            .create_key("etl", Some("91d".into()))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, code.as_str(), field.as_deref()),
        (400, "key.expires_exceeds_max", Some("expires"))
    );
    let (status, _, _) = problem(s.client("bob").create_key("etl", None).await.unwrap_err());
    assert_eq!(status, 404);
    // Only people own: a workload in an owner group manages nothing of that group's.
    let shared = CreateIdentity {
        owner: Some("workloads".into()),
        ..workload("etl-shared", None)
    };
    admin.create_identity(&shared).await.unwrap();
    let (status, _, _) = problem(
        s.client("ci-deployer")
            .create_key("etl-shared", None)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        status, 404,
        "a workload in the owner group may not mint keys for another"
    );
    let k1 = s
        .client("alice")
        .create_key("etl", Some("30d".into()))
        .await
        .unwrap();
    assert!(k1.secret.starts_with(k1.key.prefix.as_deref().unwrap()));
    assert!(k1.key.expires_at.is_some());
    let etl_client = as_key(&s, &k1.secret);
    assert_eq!(etl_client.whoami().await.unwrap().principal, "etl");
    let listed = admin.identities().await.unwrap();
    let row = listed.iter().find(|i| i.name == "etl").unwrap();
    assert!(row.keys[0].last_used_at.is_some(), "use is tracked");
    assert!(row.last_seen_at.is_some());
    assert!(
        !serde_json::to_string(&listed).unwrap().contains(&k1.secret),
        "secrets are never listed"
    );

    // Rotation: both work during the overlap (24h), then only the new one.
    let k2 = admin.rotate_key(&k1.key.id, None).await.unwrap();
    assert_eq!(
        k2.previous.as_ref().unwrap().replaced_by.as_deref(),
        Some(k2.key.id.as_str())
    );
    assert!(etl_client.whoami().await.is_ok());
    assert!(as_key(&s, &k2.secret).whoami().await.is_ok());
    let (status, code, _) = problem(admin.rotate_key(&k1.key.id, None).await.unwrap_err());
    assert_eq!((status, code.as_str()), (409, "key.not_active"));
    s.clock.advance_ms(24 * 3_600_000);
    assert_eq!(problem(etl_client.whoami().await.unwrap_err()).0, 401);
    assert!(as_key(&s, &k2.secret).whoami().await.is_ok());

    // Hygiene: keys past the rotation rule, tokens from configuration, idle identities.
    s.clock.advance_ms(31 * 86_400_000);
    let r = admin.identity_report(Some(30)).await.unwrap();
    let has = |who: &str, what: &str| {
        r.findings
            .iter()
            .any(|f| f.identity == who && f.finding == what)
    };
    assert!(has("etl", "key_needs_rotation"), "{r:?}");
    assert!(has("etl", "unused"), "{r:?}");
    assert!(has("support-bot", "never_used"), "{r:?}");
    assert!(has("alice", "config_token"), "{r:?}");
    assert!(!r.notes.is_empty());
    assert_eq!(
        problem(s.client("alice").identity_report(None).await.unwrap_err()).0,
        403
    );

    // Revocation is immediate; suspension blocks every key until resumed.
    let k3 = admin.create_key("etl", Some("1d".into())).await.unwrap();
    admin.revoke_key(&k2.key.id).await.unwrap();
    assert_eq!(
        problem(as_key(&s, &k2.secret).whoami().await.unwrap_err()).0,
        401
    );
    let _: IdentityView = admin
        .identity_status("etl", "suspend", Some("investigating".into()))
        .await
        .unwrap();
    // A suspended identity's key is not valid: 401, like any key that is not.
    assert_eq!(
        problem(as_key(&s, &k3.secret).whoami().await.unwrap_err()).0,
        401
    );
    let _: IdentityView = admin.identity_status("etl", "resume", None).await.unwrap();
    assert!(as_key(&s, &k3.secret).whoami().await.is_ok());
    s.stop().await;
}

const WORKLOAD_POLICY: &str = r#"
@id("ci-deployer-on-real-targets")
permit (
  principal == Hourglass::Principal::"ci-deployer",
  action in [Hourglass::Action::"Request", Hourglass::Action::"AutoApprove"],
  resource is Hourglass::Entitlement
)
when { resource.target == "pg" || resource.target == "maria" };

@id("ci-deployer-may-ask-for-demo")
permit (
  principal == Hourglass::Principal::"ci-deployer",
  action == Hourglass::Action::"Request",
  resource is Hourglass::Entitlement
)
when { resource.target == "demo" };
"#;

fn ask(ent: &str) -> CreateRequest {
    CreateRequest {
        entitlement: ent.into(),
        duration: Some("10m".into()),
        reason: "nightly job".into(),
        ..CreateRequest::default()
    }
}

#[tokio::test]
async fn offboarding_a_workload_leaves_nothing_on_real_targets_and_is_idempotent() {
    let (Some(pg), Some(my)) = (
        hourglass_testdb::postgres().await,
        hourglass_testdb::mysql().await,
    ) else {
        return;
    };
    let (pg_url, pg_prefix, my_url, my_prefix, my_db) = (
        pg.url.clone(),
        pg.prefix.clone(),
        my.url.clone(),
        my.prefix.clone(),
        my.name.clone(),
    );
    let s = spawn_server_with(move |dir, text| {
        std::fs::write(dir.join("policies/workload.cedar"), WORKLOAD_POLICY).unwrap();
        format!(
            "{text}\n[[targets]]\nname = \"pg\"\nconnector = \"postgres\"\n[targets.postgres]\nurl = \"{pg_url}\"\nprefix = \"{pg_prefix}\"\n\n\
             [[entitlements]]\nname = \"pg/read\"\ndefault_duration = \"10m\"\nmax_duration = \"1h\"\n[entitlements.params]\nroles = [\"pg_read_all_data\"]\n\n\
             [[targets]]\nname = \"maria\"\nconnector = \"mysql\"\n[targets.mysql]\nurl = \"{my_url}\"\nprefix = \"{my_prefix}\"\naccount_host = \"%\"\n\n\
             [[entitlements]]\nname = \"maria/read\"\ndefault_duration = \"10m\"\nmax_duration = \"1h\"\n[entitlements.params]\nprivileges = [\"SELECT\"]\non = \"{my_db}.*\"\n"
        )
    })
    .await
    .unwrap();
    let ci = s.client("ci-deployer");
    let mut grants = Vec::new();
    for ent in ["pg/read", "maria/read", "demo/read-logs"] {
        let r = ci.create_request(&ask(ent)).await.unwrap();
        assert_eq!(r.state, "fulfilled", "{r:?}");
        grants.push(r.grant_id.unwrap());
    }
    for g in &grants {
        assert!(
            eventually(|| async { ci.get_grant(g).await.unwrap().state == "active" }).await,
            "{g}"
        );
    }
    let pg_role = format!("{}{}", pg.prefix, grants[0]);
    let my_user = format!("{}{}", my.prefix, grants[1]);
    let role_exists = || async {
        let mut c = PgConnection::connect(&pg.url).await.unwrap();
        sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(&pg_role)
            .fetch_one(&mut c)
            .await
            .unwrap()
    };
    let user_exists = || async {
        let mut c = MySqlConnection::connect(&my.url).await.unwrap();
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM mysql.user WHERE User = ?")
            .bind(&my_user)
            .fetch_one(&mut c)
            .await
            .unwrap()
            > 0
    };
    assert!(role_exists().await && user_exists().await && s.access().contains(&grants[2]));
    // A pending request (ops-admin needs a human), to be cancelled with the rest.
    let pending = ci.create_request(&ask("demo/ops-admin")).await.unwrap();
    assert_eq!(pending.state, "pending");

    let admin = s.client("admin");
    let (status, code, _) = problem(
        admin
            .identity_status::<OffboardView>("ci-deployer", "offboard", None)
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (400, "identity.reason_missing"));
    let out: OffboardView = admin
        .identity_status("ci-deployer", "offboard", Some("pipeline retired".into()))
        .await
        .unwrap();
    assert!(out.changed);
    let mut revoked = out.grants_revoked.clone();
    revoked.sort();
    let mut expected = grants.clone();
    expected.sort();
    assert_eq!(revoked, expected);
    assert_eq!(out.keys_revoked.len(), 1, "its configured token");
    assert_eq!(out.requests_cancelled, vec![pending.id.clone()]);
    assert_eq!(out.identity.status, "offboarded");

    // Every target lets go; the grants end revoked; the identity can no longer authenticate.
    for g in &grants {
        assert!(
            eventually(|| async { admin.get_grant(g).await.unwrap().state == "revoked" }).await,
            "{g}"
        );
    }
    assert!(!role_exists().await, "the PostgreSQL role is gone");
    assert!(!user_exists().await, "the MariaDB account is gone");
    assert!(!s.access().contains(&grants[2]), "{}", s.access());
    assert_eq!(problem(ci.whoami().await.unwrap_err()).0, 401);
    let events = admin.audit(0).await.unwrap();
    let off = events
        .iter()
        .find(|e| e.action == "identity.offboarded")
        .unwrap();
    assert!(
        off.details
            .iter()
            .any(|(k, v)| k == "grants_revoked" && v == "3"),
        "{off:?}"
    );

    // Again: nothing changes, nothing is written.
    let n = admin.audit(0).await.unwrap().len();
    let again: OffboardView = admin
        .identity_status("ci-deployer", "offboard", Some("pipeline retired".into()))
        .await
        .unwrap();
    assert!(!again.changed && again.grants_revoked.is_empty() && again.keys_revoked.is_empty());
    assert_eq!(admin.audit(0).await.unwrap().len(), n);
    let (status, code, _) = problem(
        admin
            .identity_status::<IdentityView>("ci-deployer", "resume", None)
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (409, "identity.offboarded"));

    // When its owner leaves, what she owned is flagged.
    let _: OffboardView = admin
        .identity_status("alice", "offboard", Some("left the company".into()))
        .await
        .unwrap();
    let bot = admin
        .identities()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.name == "support-bot")
        .unwrap();
    assert_eq!(bot.owner_status.as_deref(), Some("offboarded"));
    let r = admin.identity_report(None).await.unwrap();
    assert!(
        r.findings
            .iter()
            .any(|f| f.identity == "support-bot" && f.finding == "owner_offboarded"),
        "{r:?}"
    );
    s.stop().await;
}
