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
    assert!(ok && out.contains("ok: 6 policies"), "{out}");
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
