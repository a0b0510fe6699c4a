//! The served OpenAPI document is the contract: Schemathesis (PyPI `schemathesis`, pinned by
//! `tests/contract/requirements.txt`, installed into `tests/contract/.venv` on first use) drives
//! every operation with generated input, valid and invalid (property-based, from the document
//! alone), and checks every answer against the document: documented status codes, content
//! types, headers and bodies; schema-valid input accepted and invalid input refused; never a
//! 5xx.

use std::{path::PathBuf, process::Command};

use hourglass_testkit::spawn_server;

fn tool_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract")
}

/// Installs Schemathesis (pinned) into `tests/contract/.venv` if it is not yet, once for all
/// the test processes; its executable.
fn install() -> PathBuf {
    let dir = tool_dir();
    let exe = dir.join(".venv/bin/schemathesis");
    let installed = || {
        Command::new(&exe)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if installed() {
        return exe;
    }
    let lock = std::fs::File::create(dir.join(".install.lock")).unwrap();
    lock.lock().unwrap();
    if !installed() {
        let run = |c: &mut Command| {
            let out = c.current_dir(&dir).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(Command::new("python3").args(["-m", "venv", ".venv"]));
        run(Command::new(dir.join(".venv/bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            "requirements.txt",
        ]));
    }
    let _ = lock.unlock();
    assert!(
        installed(),
        "schemathesis did not install into {}",
        dir.display()
    );
    exe
}

/// The operations that can end the caller's own access (revoking or rotating its key,
/// suspending or offboarding it): driven last, so that the other operations are exercised with
/// a working token rather than answered 401.
const ENDS_THE_CALLER: &str =
    r"^/v1/(keys/\{id\}/(revoke|rotate)|identities/\{name\}/(suspend|offboard))$";

/// Runs Schemathesis against the server with `token`, over the operations `filter` selects;
/// its output, and whether it passed.
async fn schemathesis(
    exe: &std::path::Path,
    addr: std::net::SocketAddr,
    token: &str,
    filter: [&str; 2],
) -> (bool, String) {
    let cwd = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(exe)
        .current_dir(cwd.path())
        .args([
            "run",
            &format!("http://{addr}/openapi.json"),
            filter[0],
            filter[1],
            "--checks",
            "all",
            // Object-level authorisation is the access-control suites' (security.rs, agents.rs):
            // it needs two callers, and Schemathesis has one.
            "--exclude-checks",
            "object_level_authorization",
            "--header",
            &format!("Authorization: Bearer {token}"),
            // A change stream never ends: its contract is tested in web.rs.
            "--exclude-path",
            "/v1/events",
            "--max-examples",
            "30",
            "--seed",
            "20261201",
            // One worker: the same seed gives the same requests in the same order.
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--suppress-health-check",
            "all",
            // What the document cannot state (see accepted.md) is accepted by operation and
            // check; anything else fails.
            "--baseline",
            tool_dir().join("accepted.json").to_str().unwrap(),
        ])
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_the_document_says() {
    let exe = tokio::task::spawn_blocking(install).await.unwrap();
    let s = spawn_server(|t| t).await.unwrap();
    let token = s
        .tokens
        .iter()
        .find(|(n, _)| n == "admin")
        .map(|(_, t)| t.clone())
        .unwrap();
    let hint = "Fix the document or the server; only a rule OpenAPI cannot state is accepted \
                (tests/contract/accepted.md: rerun with --baseline-update and add its row)";
    for filter in [
        ["--exclude-path-regex", ENDS_THE_CALLER],
        ["--include-path-regex", ENDS_THE_CALLER],
    ] {
        let (ok, text) = schemathesis(&exe, s.addr, &token, filter).await;
        assert!(ok, "{text}\n{hint}");
        // The caller kept its access through the pass: every operation was reached but the
        // browser session's, which a bearer never opens.
        let only_401 = text
            .lines()
            .find(|l| l.contains("Authentication failed:"))
            .unwrap_or_default();
        assert!(
            only_401.is_empty()
                || (only_401.contains("failed: 1 operation ") && text.contains("GET /v1/session")),
            "operations were answered only 401/403: {text}"
        );
    }
    s.stop().await;
}
