//! A credential a grant issues is handed to its holder once and is found nowhere else: not in
//! the database, not in the audit export, not in the server's debug log.

use hourglass_api::CreateRequest;
use hourglass_client::ClientError;
use hourglass_testkit::eventually;

use crate::binary::{BIN, setup};

#[tokio::test]
async fn an_issued_credential_is_shown_once_and_stored_nowhere() {
    let s = setup();
    let secret = format!("pw-{}", hourglass_core::id::random_hex::<12>().unwrap());
    std::fs::write(s.dir.path().join("credential"), &secret).unwrap();
    // A workload identity provider, so that an exchange issues a signed access token too.
    hourglass_tokens::DevIssuer::create(&s.dir.path().join("idp")).unwrap();
    let mut config = std::fs::read_to_string(&s.config).unwrap();
    config.push_str(
        "\n[[issuers]]\nname = \"idp\"\nissuer = \"https://idp.test\"\njwks_file = \"idp/jwks.json\"\naudience = [\"hourglass\"]\nalgorithms = [\"EdDSA\"]\nmap = [{ principal = \"ci-deployer\", claims = { sub = \"ci\" } }]\n",
    );
    std::fs::write(&s.config, config).unwrap();
    let (mut server, alice, base) = s.start_at().await;
    let req = CreateRequest {
        task: None,
        entitlement: "demo/read-logs".into(),
        duration: Some("10m".into()),
        reason: "secret test".into(),
        ticket: None,
        public_key: None,
        break_glass: false,
        starts_at: None,
    };
    let gid = alice.create_request(&req).await.unwrap().grant_id.unwrap();
    assert!(
        eventually(|| async {
            alice
                .get_grant(&gid)
                .await
                .is_ok_and(|g| g.state == "active")
        })
        .await
    );
    let g = alice.get_grant(&gid).await.unwrap();
    assert!(g.credential_issued);
    let fp = g.credential_fingerprint.unwrap();
    assert!(fp.starts_with("sha256:") && !fp.contains(&secret));

    let got = alice.credential(&gid).await.unwrap();
    assert_eq!(got.credential, secret);
    match alice.credential(&gid).await.unwrap_err() {
        ClientError::Problem(p) => assert_eq!(p.code, "credential.not_available"),
        other => panic!("{other}"),
    }

    // An API key and an exchanged access token are credentials too.
    let key = s
        .client(&base, "admin")
        .create_key("ci-deployer", Some("1d".into()))
        .await
        .unwrap()
        .secret;
    let idp = hourglass_tokens::DevIssuer::load(&s.dir.path().join("idp/key.pk8")).unwrap();
    let subject = idp.mint(
        &serde_json::json!({"iss": "https://idp.test", "sub": "ci", "aud": "hourglass",
        "exp": 4_000_000_000_i64, "jti": "secret-test", "repository": "acme/app"}),
    );
    let anon = hourglass_client::Client::new(&base, None).unwrap();
    let access = anon
        .exchange(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", &subject),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("resource", "tokens/deploy-api"),
        ])
        .await
        .unwrap()
        .access_token;
    // The JWS signature part is what makes the token a credential.
    let access_sig = access.rsplit('.').next().unwrap().to_owned();
    let subject_sig = subject.rsplit('.').next().unwrap().to_owned();
    server.kill().await.unwrap();
    server.wait().await.unwrap();
    std::fs::remove_file(s.dir.path().join("credential")).unwrap();

    // Scan the store files, the audit export and the log for every secret.
    let secrets = [
        secret.clone(),
        key.clone(),
        access_sig.clone(),
        subject_sig.clone(),
    ];
    for entry in std::fs::read_dir(s.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            for secret in &secrets {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "secret found in {}",
                    path.display()
                );
            }
        }
    }
    let export = std::process::Command::new(BIN)
        .args(["audit", "export", "--config"])
        .arg(&s.config)
        .output()
        .unwrap();
    assert!(export.status.success());
    let export = String::from_utf8_lossy(&export.stdout);
    assert!(export.contains("grant.activated") && export.contains("token.exchanged"));
    assert!(secrets.iter().all(|x| !export.contains(x.as_str())));
    let covered = eventually(|| async { s.log.lock().unwrap().contains(&gid) }).await;
    let log = s.log.lock().unwrap().clone();
    let tail: String = log
        .chars()
        .rev()
        .take(2_000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert!(covered, "the debug log covers the grant; log tail:\n{tail}");
    for x in &secrets {
        assert!(!log.contains(x.as_str()), "secret found in the log");
    }
}
