use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use hourglass_core::connector::{Connector, GrantSpec, Presence};
use secrecy::ExposeSecret;

use super::{ExecConfig, ExecConnector};

fn script(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

fn spec() -> GrantSpec {
    crate::testutil::spec(
        "alice",
        "demo/read-logs",
        serde_json::json!({"role": "reader"}),
        1,
    )
}

fn config(grant: String, revoke: String) -> ExecConfig {
    ExecConfig {
        grant: vec![grant],
        revoke: vec![revoke],
        extend: None,
        inspect: None,
        discover: None,
        workdir: None,
        timeout_secs: 5,
        env: Default::default(),
    }
}

#[tokio::test]
async fn passes_the_grant_and_reads_handle_and_credential() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seen");
    let grant = script(
        dir.path(),
        "g",
        &format!(
            "cat > {out}.json; echo \"$HOURGLASS_OPERATION $HOURGLASS_GRANT_ID $HOURGLASS_PRINCIPAL $HOURGLASS_PARAM_ROLE ${{CARGO_MANIFEST_DIR:-none}}\" > {out}\n\
             echo '{{\"handle\": {{\"user\": \"u1\"}}, \"credential\": \"s3cret\"}}'",
            out = out.display()
        ),
    );
    let c = ExecConnector::new(config(grant, "/bin/true".into()));
    let s = spec();
    // The server's environment (here: cargo's) must not reach the command.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let p = c.grant(&s).await.unwrap();
    assert_eq!(p.handle, Some(serde_json::json!({"user": "u1"})));
    assert_eq!(p.credential.unwrap().expose_secret(), "s3cret");
    let seen = fs::read_to_string(&out).unwrap();
    assert_eq!(
        seen.trim(),
        format!("grant {} alice reader none", s.grant_id)
    );
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(format!("{}.json", out.display())).unwrap())
            .unwrap();
    assert_eq!(json["entitlement"], "demo/read-logs");
}

#[tokio::test]
async fn non_zero_exit_is_an_error_with_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let bad = script(dir.path(), "bad", "echo 'target unreachable' >&2; exit 7");
    let c = ExecConnector::new(config(bad.clone(), bad));
    let err = c.revoke(&spec()).await.unwrap_err();
    assert!(
        err.message.contains("code 7") && err.message.contains("target unreachable"),
        "{err}"
    );
}

#[tokio::test]
async fn a_hung_command_is_killed_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let hang = script(dir.path(), "hang", "exec sleep 30");
    let mut cfg = config(hang.clone(), hang);
    cfg.timeout_secs = 1;
    let err = ExecConnector::new(cfg).grant(&spec()).await.unwrap_err();
    assert!(err.message.contains("timed out"), "{err}");
}

#[tokio::test]
async fn output_that_is_not_json_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let g = script(dir.path(), "g", "echo 'password=hunter2'");
    let err = ExecConnector::new(config(g, "/bin/true".into()))
        .grant(&spec())
        .await
        .unwrap_err();
    assert!(!err.message.contains("hunter2"), "{err}");
}

#[tokio::test]
async fn inspect_and_discover() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config("/bin/true".into(), "/bin/true".into());
    cfg.inspect = Some(vec![script(dir.path(), "i", "echo absent")]);
    cfg.discover = Some(vec![script(
        dir.path(),
        "d",
        "echo '{\"holder\": \"bob\", \"privilege\": \"admin\"}'",
    )]);
    let c = ExecConnector::new(cfg);
    assert_eq!(c.inspect(&spec()).await.unwrap(), Presence::Absent);
    let h = c.discover().await.unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].holder, "bob");
}

#[tokio::test]
async fn extend_runs_its_command_with_the_new_end_or_does_nothing_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("extended");
    let mut cfg = config("/bin/true".into(), "/bin/true".into());
    let c = ExecConnector::new(cfg.clone());
    assert!(
        c.extend(&spec()).await.unwrap().is_none(),
        "no command: no-op"
    );
    cfg.extend = Some(vec![script(
        dir.path(),
        "e",
        &format!(
            "echo \"$HOURGLASS_OPERATION $HOURGLASS_EXPIRES_AT\" > {}\necho '{{\"credential\": \"new\"}}'",
            out.display()
        ),
    )]);
    let c = ExecConnector::new(cfg);
    let mut s = spec();
    s.expires_at = s.expires_at.plus_millis(30 * 60_000);
    let cred = c.extend(&s).await.unwrap().unwrap();
    assert_eq!(cred.expose_secret(), "new");
    assert_eq!(
        fs::read_to_string(&out).unwrap().trim(),
        format!("extend {}", s.expires_at)
    );
}
