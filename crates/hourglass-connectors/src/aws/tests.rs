//! Against `moto` in server mode (PyPI `moto[server]`, pinned by `tests/moto/requirements.txt`,
//! installed by `.ci/run` into `tests/moto/.venv`), which speaks IAM, STS and SSO Admin over
//! AWS's own wire protocols. Each test starts its own server on a free port.

use std::{path::PathBuf, sync::Arc};

use hourglass_core::connector::{Connector, Presence, RevocationProof};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::{AwsConfig, AwsConnector, CredentialSource, REVOKE_POLICY, kind, tag};
use crate::testutil::{FixedClock, spec, wall_clock};

/// A moto server of this test's own, stopped when dropped.
struct Moto {
    _child: tokio::process::Child,
    url: String,
    dir: tempfile::TempDir,
}

async fn moto() -> Option<Moto> {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/moto/.venv/bin/moto_server");
    if !bin.exists() {
        let how = "python3 -m venv crates/hourglass-connectors/tests/moto/.venv && crates/hourglass-connectors/tests/moto/.venv/bin/pip install -r crates/hourglass-connectors/tests/moto/requirements.txt";
        if std::env::var_os("CI").is_some() {
            panic!("moto is not installed and CI is set: {how}");
        }
        eprintln!("skipping: moto is not installed ({how})");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        // AWS's managed policies (AdministratorAccess) exist, as in a real account.
        .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{url}/moto-api/")).send().await.is_ok() {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(
                dir.path().join("credentials"),
                "[default]\naws_access_key_id = AKIDTESTING\naws_secret_access_key = testing\n",
            )
            .unwrap();
            return Some(Moto {
                _child: child,
                url,
                dir,
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("moto did not start on {url}");
}

fn config(m: &Moto) -> AwsConfig {
    AwsConfig {
        region: "us-east-1".into(),
        endpoint_url: Some(m.url.clone()),
        allow_private: true,
        profile: None,
        credentials_file: Some(m.dir.path().join("credentials")),
        credential_source: CredentialSource::File,
        web_identity_token_file: None,
        web_identity_role_arn: None,
        imds_endpoint: None,
        instance_arn: None,
        users: Default::default(),
        timeout_secs: 10,
        settle_secs: 10,
    }
}

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}"#;

#[tokio::test]
async fn a_role_session_lasts_no_longer_than_the_grant_and_its_revocation_denies_it() {
    let Some(m) = moto().await else { return };
    let clock = FixedClock::at(wall_clock());
    let ops = json!({"role_arn": "arn:aws:iam::123456789012:role/ops", "max_session_secs": 3600});
    let aws = AwsConnector::new(
        &config(&m),
        std::slice::from_ref(&ops),
        Arc::clone(&clock) as _,
    )
    .unwrap();
    aws.query(
        "iam",
        "CreateRole",
        &[("RoleName", "ops"), ("AssumeRolePolicyDocument", TRUST)],
    )
    .await
    .unwrap();
    // The first IAM call loads AWS's managed policies, which takes moto a while: the grant
    // starts now.
    clock.set(wall_clock());

    let s = spec("ci-deployer", "aws/ops", ops.clone(), 30);
    let out = aws.grant(&s).await.unwrap();
    let cred: Value = serde_json::from_str(out.credential.unwrap().expose_secret()).unwrap();
    assert!(
        cred["AccessKeyId"].as_str().unwrap().starts_with("ASIA"),
        "{cred}"
    );
    assert!(cred["SessionToken"].as_str().is_some_and(|t| !t.is_empty()));
    let handle = out.handle.unwrap();
    assert_eq!(handle["session"], s.grant_id.as_str());
    assert!(
        handle["assumed_role_id"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{}", s.grant_id))
    );
    // The session is no longer than the grant (30 minutes, within the role's hour).
    let expires =
        hourglass_core::Timestamp::parse_rfc3339(cred["Expiration"].as_str().unwrap()).unwrap();
    let secs = expires.millis_since(clock.0.lock().unwrap().to_owned()) / 1000;
    assert!((1_700..=1_800).contains(&secs), "{secs}");

    assert_eq!(aws.inspect(&s).await.unwrap(), Presence::Present);
    assert!(
        aws.prove_revoked(&s).await.is_err(),
        "nothing denies it yet"
    );
    aws.revoke(&s).await.unwrap();
    aws.revoke(&s).await.unwrap(); // idempotent: one statement
    let statements = aws.revocations("ops").await.unwrap();
    assert_eq!(statements.len(), 1, "{statements:?}");
    let st = &statements[0];
    assert_eq!(st["Effect"], "Deny");
    assert_eq!(st["Action"], "*");
    assert_eq!(
        st["Condition"]["StringLike"]["aws:userid"],
        format!("*:{}", s.grant_id)
    );
    assert!(st["Condition"]["DateLessThan"]["aws:TokenIssueTime"].is_string());
    assert_eq!(aws.inspect(&s).await.unwrap(), Presence::Absent);
    match aws.prove_revoked(&s).await.unwrap() {
        RevocationProof::Verified { checked } => {
            assert!(
                checked.contains(REVOKE_POLICY) && checked.contains(s.grant_id.as_str()),
                "{checked}"
            );
        }
        other => panic!("{other:?}"),
    }

    // Another grant's revocation adds its own statement; once the first session could no
    // longer be alive (the role's maximum later), its statement is dropped.
    let t = spec("ci-deployer", "aws/ops", ops.clone(), 30);
    aws.grant(&t).await.unwrap();
    aws.revoke(&t).await.unwrap();
    assert_eq!(aws.revocations("ops").await.unwrap().len(), 2);
    // Each revocation is its own policy; once AWS's longest session (12 hours) is over, the
    // earlier ones are dropped.
    let later = clock.0.lock().unwrap().plus_millis((43_200 + 301) * 1000);
    clock.set(later);
    let u = spec("ci-deployer", "aws/ops", ops, 30);
    aws.revoke(&u).await.unwrap();
    let left = aws.revocations("ops").await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        left[0]["Condition"]["StringLike"]["aws:userid"],
        format!("*:{}", u.grant_id)
    );
}

#[tokio::test]
async fn an_identity_center_assignment_is_made_and_removed_and_admins_are_discovered() {
    let Some(m) = moto().await else { return };
    let clock = FixedClock::at(wall_clock());
    let probe = AwsConnector::new(&config(&m), &[], Arc::clone(&clock) as _).unwrap();
    let instances = probe.sso("ListInstances", json!({})).await.unwrap();
    let instance = instances["Instances"][0]["InstanceArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let ps = probe
        .sso(
            "CreatePermissionSet",
            json!({"InstanceArn": instance, "Name": "Admin"}),
        )
        .await
        .unwrap()["PermissionSet"]["PermissionSetArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let params = json!({"permission_set_arn": ps, "account_id": "111111111111"});
    let mut cfg = config(&m);
    cfg.instance_arn = Some(instance);
    cfg.users.insert("alice".into(), "u-alice".into());
    let aws =
        AwsConnector::new(&cfg, std::slice::from_ref(&params), Arc::clone(&clock) as _).unwrap();
    let s = spec("alice", "aws/admin", params.clone(), 30);
    assert_eq!(aws.inspect(&s).await.unwrap(), Presence::Absent);
    let out = aws.grant(&s).await.unwrap();
    assert!(
        out.credential.is_none(),
        "people sign in through the portal"
    );
    assert_eq!(aws.inspect(&s).await.unwrap(), Presence::Present);
    assert!(aws.prove_revoked(&s).await.is_err());
    aws.revoke(&s).await.unwrap();
    assert_eq!(aws.inspect(&s).await.unwrap(), Presence::Absent);
    assert!(matches!(
        aws.prove_revoked(&s).await.unwrap(),
        RevocationProof::Verified { .. }
    ));
    // Someone with no Identity Center user id is refused, naming them.
    let bob = spec("bob", "aws/admin", params, 30);
    let e = aws.grant(&bob).await.unwrap_err();
    assert!(
        e.message.contains("bob has no Identity Center user id"),
        "{e}"
    );

    // Standing privilege: who holds AdministratorAccess.
    aws.query("iam", "CreateUser", &[("UserName", "root-ish")])
        .await
        .unwrap();
    aws.query(
        "iam",
        "AttachUserPolicy",
        &[
            ("UserName", "root-ish"),
            ("PolicyArn", "arn:aws:iam::aws:policy/AdministratorAccess"),
        ],
    )
    .await
    .unwrap();
    let found = aws.discover().await.unwrap();
    assert!(
        found
            .iter()
            .any(|h| h.holder == "user/root-ish" && h.privilege == "AdministratorAccess"),
        "{found:?}"
    );
}

#[test]
fn parameters_name_one_kind_of_access_and_xml_answers_are_read() {
    assert!(kind(&json!({"role_arn": "arn:aws:iam::123456789012:role/path/ops"})).is_ok());
    for bad in [
        json!({}),
        json!({"role_arn": "ops"}),
        json!({"role_arn": "arn:aws:iam::123456789012:role/ops", "account_id": "111111111111"}),
        json!({"permission_set_arn": "arn:aws:sso:::permissionSet/ssoins-1/ps-1", "account_id": "12"}),
        json!({"role_arn": "arn:aws:iam::123456789012:role/ops", "max_session_secs": 60}),
    ] {
        assert!(kind(&bad).is_err(), "{bad}");
    }
    assert_eq!(
        tag(
            "<A><Code>NoSuchEntity</Code><Message>a &amp; b</Message></A>",
            "Message"
        )
        .as_deref(),
        Some("a & b")
    );
}

/// A local instance metadata service (IMDSv2): a session token first, then the role's keys.
async fn imds(calls: Arc<std::sync::atomic::AtomicU32>) -> String {
    use axum::{
        Router,
        http::{HeaderMap, StatusCode},
        routing::{get, put},
    };
    let app = Router::new()
        .route(
            "/latest/api/token",
            put(|h: HeaderMap| async move {
                if h.contains_key("x-aws-ec2-metadata-token-ttl-seconds") {
                    (StatusCode::OK, "imds-session".to_owned())
                } else {
                    (StatusCode::BAD_REQUEST, String::new())
                }
            }),
        )
        .route(
            "/latest/meta-data/iam/security-credentials/",
            get(|h: HeaderMap| async move {
                if h.get("x-aws-ec2-metadata-token")
                    .is_some_and(|v| v == "imds-session")
                {
                    (StatusCode::OK, "hourglass-node\n".to_owned())
                } else {
                    (StatusCode::UNAUTHORIZED, String::new())
                }
            }),
        )
        .route(
            "/latest/meta-data/iam/security-credentials/hourglass-node",
            get(move |h: HeaderMap| {
                let calls = Arc::clone(&calls);
                async move {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if h.get("x-aws-ec2-metadata-token")
                        .is_none_or(|v| v != "imds-session")
                    {
                        return (StatusCode::UNAUTHORIZED, String::new());
                    }
                    (
                        StatusCode::OK,
                        json!({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIAIMDS",
                               "SecretAccessKey": "imds-secret", "Token": "imds-token",
                               "Expiration": "2099-01-01T00:00:00Z"})
                        .to_string(),
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn credentials_come_from_instance_metadata_or_web_identity_and_are_kept() {
    let Some(m) = moto().await else { return };
    let clock = FixedClock::at(wall_clock());
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut cfg = config(&m);
    cfg.credential_source = CredentialSource::Imds;
    cfg.imds_endpoint = Some(imds(Arc::clone(&calls)).await);
    let aws = AwsConnector::new(&cfg, &[], Arc::clone(&clock) as _).unwrap();
    for n in ["a", "b"] {
        aws.query("iam", "CreateUser", &[("UserName", n)])
            .await
            .unwrap();
    }
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "fetched once, kept until it nears its expiry"
    );

    // Web identity: the token file exchanged at STS for the role's keys.
    let token = m.dir.path().join("web-identity");
    std::fs::write(
        &token,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6aGcifQ.c2ln",
    )
    .unwrap();
    let mut cfg = config(&m);
    cfg.credential_source = CredentialSource::WebIdentity;
    cfg.web_identity_token_file = Some(token);
    cfg.web_identity_role_arn = Some("arn:aws:iam::123456789012:role/hourglass".into());
    let aws = AwsConnector::new(&cfg, &[], Arc::clone(&clock) as _).unwrap();
    aws.query("iam", "CreateUser", &[("UserName", "c")])
        .await
        .unwrap();
    let cached = aws.creds.lock().await.clone().unwrap();
    assert!(
        cached.0.session_token().is_some_and(|t| !t.is_empty()),
        "STS keys with a session token"
    );
    assert!(cached.1.is_some(), "with their expiry");

    // A source that has nothing says so.
    let mut cfg = config(&m);
    cfg.credential_source = CredentialSource::WebIdentity;
    let aws = AwsConnector::new(&cfg, &[], Arc::clone(&clock) as _).unwrap();
    let e = aws.query("iam", "ListUsers", &[]).await.unwrap_err();
    assert!(
        e.message.contains("no web identity token file and role"),
        "{e}"
    );
}
