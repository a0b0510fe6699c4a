//! The CLI commands that need no server.

use crate::binary::BIN;

fn run(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn init_writes_a_configuration_that_validates_and_prints_tokens_once() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("hg");
    let (ok, out) = run(&["init", target.to_str().unwrap()]);
    assert!(ok, "{out}");
    let token = out
        .lines()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("hgt_")))
        .unwrap()
        .to_owned();
    let config = std::fs::read_to_string(target.join("hourglass.toml")).unwrap();
    assert!(
        !config.contains(&token),
        "only the hash of a token is written"
    );
    let cfg = target.join("hourglass.toml");
    let (ok, out) = run(&["policy", "validate", "--config", cfg.to_str().unwrap()]);
    assert!(ok && out.contains("ok: 18 policies"), "{out}");
    let (ok, out) = run(&["init", target.to_str().unwrap()]);
    assert!(!ok && out.contains("not overwriting"), "{out}");

    // A policy that breaks the schema is named, with its file.
    std::fs::write(
        target.join("policies/bad.cedar"),
        "@id(\"typo\")\npermit(principal, action, resource) when { principal.knd == \"human\" };\n",
    )
    .unwrap();
    let (ok, out) = run(&["policy", "validate", "--config", cfg.to_str().unwrap()]);
    assert!(!ok && out.contains("typo") && out.contains("knd"), "{out}");
}

#[tokio::test]
async fn request_wait_prints_the_credential_once() {
    let s = crate::binary::setup();
    std::fs::write(s.dir.path().join("credential"), "pw-for-the-cli").unwrap();
    let (mut server, _alice, base) = s.start_at().await;
    let out = tokio::process::Command::new(BIN)
        .args([
            "request",
            "demo/read-logs",
            "--for",
            "5m",
            "--reason",
            "cli wait",
            "--wait",
        ])
        .env("HOURGLASS_SERVER", &base)
        .env("HOURGLASS_TOKEN", &s.alice)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("credential (shown once): pw-for-the-cli"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("active until"));
    server.kill().await.unwrap();
}

/// The shipped policies have full coverage; removing one negative case fails the run and names
/// the untested auto-approval path; a wrong expectation fails with what was decided instead.
#[test]
fn policy_test_checks_cases_and_auto_approval_coverage() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("hg");
    assert!(run(&["init", target.to_str().unwrap()]).0);
    let cfg = target.join("hourglass.toml");
    let cfg = cfg.to_str().unwrap();
    let (ok, out) = run(&["policy", "test", "--config", cfg]);
    assert!(ok, "{out}");
    assert!(
        out.contains("31 passed, 0 failed, 0 untested auto-approval paths"),
        "{out}"
    );

    // Drop the only negative AutoApprove cases for demo/read-logs.
    let cases_path = target.join("policies/tests/demo.toml");
    let cases = std::fs::read_to_string(&cases_path).unwrap();
    let kept: Vec<&str> = cases
        .split("[[case]]")
        .filter(|c| !(c.contains("AutoApprove") && c.contains("expect = \"deny\"")))
        .collect();
    std::fs::write(&cases_path, kept.join("[[case]]")).unwrap();
    let (ok, out) = run(&["policy", "test", "--config", cfg]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "UNTESTED auto-approval path: entitlement demo/read-logs (reached by oncall-triage-auto-approve-1h, read-logs-auto-approve-1h, workloads-read-logs-15m): no passing negative case"
        ),
        "{out}"
    );

    // A case whose expectation is wrong fails and says what happened.
    std::fs::write(
        target.join("policies/tests/wrong.toml"),
        r#"
[[case]]
name = "bob reads logs with no human"
principal = "bob"
action = "AutoApprove"
entitlement = "demo/read-logs"
expect = "allow"
"#,
    )
    .unwrap();
    let (ok, out) = run(&["policy", "test", "--config", cfg]);
    assert!(!ok);
    assert!(
        out.contains("FAIL  wrong.toml: bob reads logs with no human: expected allow, got deny"),
        "{out}"
    );

    // A malformed case file is named, with the problem.
    std::fs::write(
        target.join("policies/tests/wrong.toml"),
        "[[case]]\nname = \"x\"\nprincipal = \"bob\"\n",
    )
    .unwrap();
    let (ok, out) = run(&["policy", "test", "--config", cfg]);
    assert!(!ok && out.contains("wrong.toml: missing field"), "{out}");
}

#[test]
fn policy_explain_names_the_determining_policies_for_each_action() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("hg");
    assert!(run(&["init", target.to_str().unwrap()]).0);
    let cfg = target.join("hourglass.toml");
    let cfg = cfg.to_str().unwrap();
    let (ok, out) = run(&[
        "policy",
        "explain",
        "--config",
        cfg,
        "--principal",
        "alice",
        "--entitlement",
        "demo/read-logs",
        "--context",
        r#"{"duration":"30m"}"#,
    ]);
    assert!(ok, "{out}");
    let line = |action: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{action} ")))
            .unwrap_or_else(|| panic!("no {action} line in {out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line("Request")[1..],
        ["allow", "requesters-may-request-demo"]
    );
    assert_eq!(
        line("AutoApprove")[1..],
        ["allow", "read-logs-auto-approve-1h"]
    );
    assert_eq!(line("Administer")[1], "deny");
    assert!(out.contains("give \"requester\""), "{out}");

    // A profile is explained as the engine judges it: with each of its entitlements.
    let (ok, out) = run(&[
        "policy",
        "explain",
        "--config",
        cfg,
        "--principal",
        "alice",
        "--profile",
        "incident/triage",
    ]);
    assert!(ok, "{out}");
    let request = out.lines().find(|l| l.starts_with("Request ")).unwrap();
    assert!(
        request.contains("requesters-may-request-demo")
            && request.contains("requesters-may-request-triage"),
        "{out}"
    );

    // JSON, with a requester for Approve: an agent is refused by the forbid.
    let (ok, out) = run(&[
        "--output",
        "json",
        "policy",
        "explain",
        "--config",
        cfg,
        "--principal",
        "support-bot",
        "--entitlement",
        "demo/ops-admin",
        "--context",
        r#"{"requester":"alice"}"#,
    ]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let approve = v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["action"] == "Approve")
        .unwrap();
    assert_eq!(approve["allowed"], false);
    assert_eq!(approve["determined_by"][0], "only-humans-approve");

    // Bad input is a clear error.
    let (ok, out) = run(&[
        "policy",
        "explain",
        "--config",
        cfg,
        "--principal",
        "alice",
        "--entitlement",
        "demo/read-logs",
        "--context",
        r#"{"hour":25}"#,
    ]);
    assert!(!ok && out.contains("context.hour 25 is not 0-23"), "{out}");
    let (ok, out) = run(&[
        "policy",
        "explain",
        "--config",
        cfg,
        "--principal",
        "mallory",
        "--entitlement",
        "demo/read-logs",
    ]);
    assert!(
        !ok && out.contains("no identity named \"mallory\""),
        "{out}"
    );
}

#[test]
fn mint_token_signs_only_for_an_issuer_whose_key_is_here() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("hg");
    assert!(run(&["init", target.to_str().unwrap()]).0);
    let cfg = target.join("hourglass.toml");
    let cfg = cfg.to_str().unwrap();
    // init trusts no issuer: nothing to sign for.
    let (ok, out) = run(&["dev", "mint-token", "--config", cfg, "--sub", "ci-deployer"]);
    assert!(!ok && out.contains("no issuer"), "{out}");

    // An issuer that names a development key which is not there is refused too.
    let issuer = "\n[[issuers]]\nname = \"dev\"\nissuer = \"https://dev.test\"\njwks_file = \"idp/jwks.json\"\ndev_signing_key = \"idp/key.pk8\"\naudience = [\"hourglass\"]\nalgorithms = [\"EdDSA\"]\nmap = [{ principal = \"ci-deployer\", claims = { sub = \"ci-deployer\" } }]\n";
    let mut text = std::fs::read_to_string(cfg).unwrap();
    text.push_str(issuer);
    std::fs::write(cfg, &text).unwrap();
    let (ok, out) = run(&["dev", "mint-token", "--config", cfg, "--sub", "ci-deployer"]);
    assert!(!ok && out.contains("has no development key"), "{out}");

    // With the key present, the token it prints verifies against that issuer's JWKS.
    hourglass_tokens::DevIssuer::create(&target.join("idp")).unwrap();
    let (ok, out) = run(&[
        "dev",
        "mint-token",
        "--config",
        cfg,
        "--sub",
        "ci-deployer",
        "--claim",
        "repository=acme/app",
        "--ttl",
        "2m",
    ]);
    assert!(ok, "{out}");
    let token = out.trim();
    let payload = token.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "ci-deployer");
    assert_eq!(claims["repository"], "acme/app");
    assert_eq!(claims["aud"], "hourglass");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );
    let issuers = hourglass_tokens::Issuers::new(vec![hourglass_tokens::IssuerSpec {
        name: "dev".into(),
        issuer: "https://dev.test".into(),
        jwks: hourglass_tokens::JwksSource::File(target.join("idp/jwks.json")),
        audience: vec!["hourglass".into()],
        delegation_audience: Vec::new(),
        api_audience: Vec::new(),
        mcp_audience: Vec::new(),
        algorithms: vec![hourglass_tokens::parse_algorithm("EdDSA").unwrap()],
        skew_secs: 0,
        rules: vec![hourglass_tokens::Rule {
            principal: "ci-deployer".into(),
            claims: [("sub".to_owned(), "ci-deployer".to_owned())].into(),
        }],
    }])
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let v = rt
        .block_on(issuers.verify(
            token,
            claims["iat"].as_i64().unwrap(),
            hourglass_tokens::Purpose::Exchange,
        ))
        .unwrap();
    assert_eq!(v.principal, "ci-deployer");
    // The configuration with the issuer still validates; a symmetric algorithm does not.
    let (ok, out) = run(&["policy", "validate", "--config", cfg]);
    assert!(ok, "{out}");
    std::fs::write(
        cfg,
        text.replace("algorithms = [\"EdDSA\"]", "algorithms = [\"HS256\"]"),
    )
    .unwrap();
    let (ok, out) = run(&["policy", "validate", "--config", cfg]);
    assert!(
        !ok && out.contains("issuers[0].algorithms: HS256 is symmetric"),
        "{out}"
    );
}

/// What packagers install: completions for each shell and a man page for every command.
#[test]
fn completions_and_man_pages_cover_every_command() {
    let (ok, bash) = run(&["completions", "bash"]);
    assert!(ok, "{bash}");
    for word in [
        "hourglass",
        "request",
        "campaign",
        "break-glass",
        "--reason",
    ] {
        assert!(bash.contains(word), "bash completions lack {word}");
    }
    let (ok, zsh) = run(&["completions", "zsh"]);
    assert!(ok && zsh.starts_with("#compdef hourglass"), "{zsh}");
    let (ok, out) = run(&["completions", "tcsh"]);
    assert!(!ok && out.contains("invalid value"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run(&["man", dir.path().to_str().unwrap()]);
    assert!(ok, "{out}");
    let page = std::fs::read_to_string(dir.path().join("hourglass.1")).unwrap();
    assert!(page.contains(".TH hourglass 1"), "{page}");
    let request = std::fs::read_to_string(dir.path().join("hourglass-request.1")).unwrap();
    assert!(request.contains("Ask for an entitlement"), "{request}");
    assert!(request.contains("break\\-glass"), "{request}");
    // Nested commands get their own page.
    assert!(dir.path().join("hourglass-campaign-start.1").exists());
}
