//! Against a local receiver that checks signatures with the documented verification.

use std::sync::{Arc, Mutex};

use axum::{Router, body::Bytes, http::HeaderMap, http::StatusCode, routing::post};
use hourglass_core::connector::{Connector, Presence, RevocationProof};
use secrecy::ExposeSecret;

use super::*;
use crate::testutil::{FixedClock, spec, wall_clock};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

#[derive(Debug, Clone)]
struct Seen {
    operation: String,
    idempotency: Option<String>,
    verified: Result<(), VerifyError>,
}

/// A receiver that verifies every call against `now` and answers with `answer(operation)`.
async fn receiver(
    now: i64,
    answer: fn(&str) -> (StatusCode, String),
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let log = Arc::clone(&log);
            async move {
                let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
                let verified = verify(
                    SECRET.as_bytes(),
                    h(TIMESTAMP_HEADER),
                    h(SIGNATURE_HEADER),
                    &body,
                    now,
                    DEFAULT_WINDOW_SECS,
                );
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let operation = v["operation"].as_str().unwrap().to_owned();
                log.lock().unwrap().push(Seen {
                    operation: operation.clone(),
                    idempotency: h(IDEMPOTENCY_HEADER).map(str::to_owned),
                    verified: verified.clone(),
                });
                if verified.is_err() {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                answer(&operation)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

fn config(dir: &tempfile::TempDir, url: &str) -> WebhookConfig {
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    WebhookConfig {
        url: url.to_owned(),
        secret_file: Some(secret),
        secret_env: None,
        timeout_secs: 5,
        allow_private: true,
        discover: true,
        verify_revocation: false,
    }
}

fn saas(op: &str) -> (StatusCode, String) {
    match op {
        "grant" => (
            StatusCode::OK,
            r#"{"handle": {"account": "a-17"}, "credential": "one-time-token"}"#.into(),
        ),
        "inspect" => (StatusCode::OK, r#"{"present": true}"#.into()),
        "revoke" => (StatusCode::NOT_FOUND, String::new()),
        _ => (
            StatusCode::OK,
            r#"{"holdings": [{"holder": "root", "privilege": "owner"}]}"#.into(),
        ),
    }
}

/// Without `verify_revocation` a webhook's revocation is unprovable, and says so without a
/// call; with it, the receiver is asked, and an access it still reports is no revocation.
#[tokio::test]
async fn a_webhook_proves_a_revocation_only_when_it_answers_inspect() {
    let now = wall_clock();
    let (url, seen) = receiver(now.unix_millis() / 1000, saas).await;
    let dir = tempfile::tempdir().unwrap();
    let s = spec("alice", "saas/admin", serde_json::json!({}), 30);
    let plain = WebhookConnector::new(&config(&dir, &url), FixedClock::at(now)).unwrap();
    assert!(matches!(
        plain.prove_revoked(&s).await.unwrap(),
        RevocationProof::Unprovable { .. }
    ));
    assert!(seen.lock().unwrap().is_empty(), "nothing asked");
    let mut cfg = config(&dir, &url);
    cfg.verify_revocation = true;
    let checked = WebhookConnector::new(&cfg, FixedClock::at(now)).unwrap();
    // The receiver still reports the access present.
    let e = checked.prove_revoked(&s).await.unwrap_err();
    assert!(e.message.contains("still answers present"), "{e}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn signed_calls_carry_the_grant_and_read_the_answers() {
    let now = wall_clock();
    let (url, seen) = receiver(now.unix_millis() / 1000, saas).await;
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookConnector::new(&config(&dir, &url), FixedClock::at(now)).unwrap();
    let s = spec(
        "alice",
        "saas/admin",
        serde_json::json!({"team": "ops"}),
        30,
    );

    let out = hook.grant(&s).await.unwrap();
    assert_eq!(out.handle, Some(serde_json::json!({"account": "a-17"})));
    assert_eq!(out.credential.unwrap().expose_secret(), "one-time-token");
    assert_eq!(hook.inspect(&s).await.unwrap(), Presence::Present);
    hook.revoke(&s).await.unwrap();
    let holdings = hook.discover().await.unwrap();
    assert_eq!(holdings[0].holder, "root");

    let seen = seen.lock().unwrap().clone();
    let ops: Vec<_> = seen.iter().map(|s| s.operation.as_str()).collect();
    assert_eq!(ops, ["grant", "inspect", "revoke", "discover"]);
    assert!(seen.iter().all(|c| c.verified.is_ok()), "{seen:?}");
    assert_eq!(seen[0].idempotency.as_deref(), Some(s.grant_id.as_str()));
    assert_eq!(seen[3].idempotency, None);
}

#[tokio::test]
async fn a_stale_call_is_refused_by_the_receiver_and_fails() {
    let now = wall_clock();
    let (url, seen) = receiver(now.unix_millis() / 1000, saas).await;
    let dir = tempfile::tempdir().unwrap();
    // The sender's clock is ten minutes behind the receiver's.
    let clock = FixedClock::at(now.plus_millis(-600_000));
    let hook = WebhookConnector::new(&config(&dir, &url), clock.clone()).unwrap();
    let s = spec("alice", "saas/admin", serde_json::json!({}), 30);
    let e = hook.grant(&s).await.unwrap_err();
    assert!(e.message.contains("401"), "{e}");
    assert!(matches!(
        seen.lock().unwrap()[0].verified,
        Err(VerifyError::Stale(600))
    ));
    clock.set(now);
    hook.grant(&s).await.unwrap();
}

#[tokio::test]
async fn an_error_answer_fails_without_echoing_the_body() {
    let now = wall_clock();
    let (url, _) = receiver(now.unix_millis() / 1000, |_| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "db password=hunter2".into(),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookConnector::new(&config(&dir, &url), FixedClock::at(now)).unwrap();
    let s = spec("alice", "saas/admin", serde_json::json!({}), 30);
    let e = hook.grant(&s).await.unwrap_err();
    assert!(e.message.contains("500"), "{e}");
    assert!(!e.message.contains("hunter2"), "{e}");
    assert!(hook.revoke(&s).await.is_err());
}

#[test]
fn verification_refuses_tampering_and_accepts_a_rotated_secret() {
    let body = br#"{"operation":"grant"}"#;
    let sig = sign(SECRET.as_bytes(), 1_000, body);
    let ok = |ts: &str, sig: &str, body: &[u8]| {
        verify(SECRET.as_bytes(), Some(ts), Some(sig), body, 1_010, 300)
    };
    assert_eq!(ok("1000", &sig, body), Ok(()));
    assert_eq!(
        ok("1000", &sig, br#"{"operation":"revoke"}"#),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(ok("1001", &sig, body), Err(VerifyError::BadSignature));
    assert_eq!(ok("600", &sig, body), Err(VerifyError::Stale(410)));
    assert_eq!(ok("soon", &sig, body), Err(VerifyError::BadTimestamp));
    assert_eq!(
        verify(SECRET.as_bytes(), Some("1000"), None, body, 1_000, 300),
        Err(VerifyError::BadSignature)
    );
    let old = sign(b"the-previous-secret-of-32-bytes-or-more", 1_000, body);
    assert_eq!(ok("1000", &format!("{old}, {sig}"), body), Ok(()));
}

#[test]
fn bad_configuration_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir, "http://127.0.0.1:9/hook");
    cfg.allow_private = false;
    std::fs::write(cfg.secret_file.as_ref().unwrap(), "short").unwrap();
    let problems = WebhookConnector::new(&cfg, FixedClock::at(wall_clock())).unwrap_err();
    assert!(
        problems.iter().any(|p| p.starts_with("url:")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("32 bytes")),
        "{problems:?}"
    );
}
