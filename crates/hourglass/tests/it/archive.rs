//! Retention: old audit events move to a signed archive file, the store keeps a checkpoint,
//! and `audit verify --archive` checks the archives and the live chain as one.

use std::path::Path;

use hourglass_core::Clock;
use hourglass_testkit::{TestServer, eventually, spawn_server};

use crate::{binary::BIN, lifecycle::ask};

async fn cli(s: &TestServer, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(&s.config)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn archive(s: &TestServer, before: &str, out: &Path) -> (bool, String) {
    cli(
        s,
        &[
            "audit",
            "archive",
            "--before",
            before,
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .await
}

async fn verify(s: &TestServer, archives: &[&Path]) -> (bool, String) {
    let mut args = vec!["audit", "verify"];
    for a in archives {
        args.push("--archive");
        args.push(a.to_str().unwrap());
    }
    cli(s, &args).await
}

/// alice reads logs for ten minutes; returns when it is revoked.
async fn a_grant(s: &TestServer) {
    let alice = s.client("alice");
    let r = alice
        .create_request(&ask("demo/read-logs", "10m", "logs"))
        .await
        .unwrap();
    let g = r.grants.unwrap()[0].id.clone();
    assert!(eventually(|| async { alice.get_grant(&g).await.unwrap().state == "active" }).await);
    s.clock.advance_ms(10 * 60_000 + 1_000);
    assert!(eventually(|| async { alice.get_grant(&g).await.unwrap().state == "revoked" }).await);
}

#[tokio::test]
async fn old_events_move_to_a_signed_archive_that_verify_checks_with_the_live_chain() {
    let s = spawn_server(|c| c).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::clone(s.store().unwrap());
    a_grant(&s).await;
    let first_cut = s.clock.now().plus_millis(1).to_string();
    let archived_then = store.audit_head_seq().await.unwrap();
    s.clock.advance_ms(86_400_000);
    a_grant(&s).await;

    // Nothing before the first event: nothing archived, nothing written.
    let empty = dir.path().join("empty.jsonl");
    let (ok, text) = archive(&s, "2020-01-01T00:00:00Z", &empty).await;
    assert!(ok && text.contains("nothing to archive"), "{text}");
    assert!(!empty.exists());

    // Everything before the cut goes to the archive, while the server runs.
    let a1 = dir.path().join("2027-q1.jsonl");
    let (ok, text) = archive(&s, &first_cut, &a1).await;
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("archived events 1..{archived_then}")),
        "{text}"
    );
    let live = store.audit_after(0, 10_000).await.unwrap();
    assert_eq!(
        live[0].seq,
        archived_then + 1,
        "the archived events left the store"
    );
    let mark = live.last().unwrap();
    assert_eq!(mark.record.action, "audit.archived");
    assert!(
        mark.record
            .details
            .contains(&("through_seq".into(), archived_then.to_string()))
    );
    let lines = std::fs::read_to_string(&a1).unwrap();
    assert_eq!(
        lines.lines().count() as u64,
        archived_then + 1,
        "a manifest line, then the events"
    );
    // The same path is never overwritten.
    let (ok, text) = archive(&s, &first_cut, &a1).await;
    assert!(!ok && text.contains("never overwritten"), "{text}");

    // The live chain alone verifies from its checkpoint; with the archive, the whole chain.
    let (ok, text) = verify(&s, &[]).await;
    assert!(ok && text.contains("give the archives"), "{text}");
    let (ok, text) = verify(&s, &[&a1]).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("audit chain ok") && text.contains(&format!("({archived_then} archived")),
        "{text}"
    );

    // A changed archive, or one that does not continue the chain, is found out.
    let forged = dir.path().join("forged.jsonl");
    std::fs::write(&forged, lines.replacen("\"logs\"", "\"LOGS\"", 1)).unwrap();
    assert_ne!(std::fs::read_to_string(&forged).unwrap(), lines);
    let (ok, text) = verify(&s, &[&forged]).await;
    assert!(!ok && text.contains("BROKEN"), "{text}");
    let resigned = dir.path().join("resigned.jsonl");
    let mut parts: Vec<&str> = lines.lines().collect();
    parts.remove(2);
    std::fs::write(&resigned, parts.join("\n") + "\n").unwrap();
    let (ok, text) = verify(&s, &[&resigned]).await;
    assert!(!ok && text.contains("BROKEN"), "an event left out: {text}");

    // The same events under a manifest signed with another key (whatever key the file carries)
    // are not this deployment's archive; a saved JWKS given with --jwks is what vouches for a
    // key that is not in the key directory.
    let foreign_dir = tempfile::tempdir().unwrap();
    let foreign = hourglass_tokens::Signer::open(
        foreign_dir.path(),
        "https://elsewhere.example",
        hourglass_tokens::Rotation {
            rotate_every_secs: 86_400,
            retire_after_secs: 86_400,
        },
        1_000,
    )
    .unwrap();
    let mut head: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    let payload = head["manifest"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_owned();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    let (token, kid) = foreign.sign(&claims, 1_000).unwrap();
    head["manifest"] = token.into();
    head["jwk"] = foreign.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap()
        .clone();
    let resigned_elsewhere = dir.path().join("elsewhere.jsonl");
    let body: Vec<&str> = lines.lines().skip(1).collect();
    std::fs::write(
        &resigned_elsewhere,
        format!("{head}\n{}\n", body.join("\n")),
    )
    .unwrap();
    let (ok, text) = verify(&s, &[&resigned_elsewhere]).await;
    assert!(!ok && text.contains("signature"), "{text}");
    let saved = dir.path().join("elsewhere-jwks.json");
    std::fs::write(&saved, foreign.jwks().to_string()).unwrap();
    let (ok, text) = cli(
        &s,
        &[
            "audit",
            "verify",
            "--archive",
            resigned_elsewhere.to_str().unwrap(),
            "--jwks",
            saved.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "a key the operator vouches for is trusted: {text}");

    // The server goes on; a second archive continues the first.
    s.clock.advance_ms(86_400_000);
    a_grant(&s).await;
    let second_cut = s.clock.now().to_string();
    s.clock.advance_ms(1_000);
    a_grant(&s).await;
    let a2 = dir.path().join("2027-q2.jsonl");
    let (ok, text) = archive(&s, &second_cut, &a2).await;
    assert!(
        ok && text.contains(&format!("archived events {}..", archived_then + 1)),
        "{text}"
    );
    let (ok, text) = verify(&s, &[&a1, &a2]).await;
    assert!(ok, "{text}");
    for wrong in [
        vec![a2.as_path()],
        vec![a2.as_path(), a1.as_path()],
        vec![a1.as_path()],
    ] {
        let (ok, text) = verify(&s, &wrong).await;
        assert!(!ok && text.contains("BROKEN"), "{wrong:?}: {text}");
    }
    // And the server still writes onto the chain.
    a_grant(&s).await;
    let (ok, text) = verify(&s, &[&a1, &a2]).await;
    assert!(ok, "{text}");
    s.stop().await;
}
