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
