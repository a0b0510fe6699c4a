//! Machine identities end to end: a local HTTP server publishes an issuer's JWKS; tokens signed
//! with its key are exchanged for signed access tokens (verified here with an independent
//! Ed25519 implementation against the served JWKS) or for grants on the demo target; every
//! kind of bad token is refused and audited; delegation carries the `act` chain.

use std::sync::{
    Arc, RwLock,
    atomic::{AtomicU32, Ordering},
};

use base64::Engine as _;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use hourglass_client::{Client, ClientError};
use hourglass_core::Clock;
use hourglass_testkit::{TestServer, spawn_server_with};
use hourglass_tokens::DevIssuer;
use serde_json::{Value, json};

const ISS: &str = "https://ci.example.test";
const DESK_SECRET: &str = "desk-webhook-secret-0123456789abcdef";

/// The desk (a webhook ticket source) reports `reference` open and assigned to alice, so that
/// it is a verified ticket.
async fn ticket_open(s: &TestServer, reference: &str) {
    let body = serde_json::to_vec(
        &json!({"ref": reference, "status": "In Progress", "assignee": "alice"}),
    )
    .unwrap();
    let ts = now_secs(s);
    let sig = hourglass_connectors::webhook::sign(DESK_SECRET.as_bytes(), ts, &body);
    anon(s)
        .ticket_event(
            body,
            &[
                (
                    hourglass_connectors::webhook::TIMESTAMP_HEADER,
                    ts.to_string(),
                ),
                (hourglass_connectors::webhook::SIGNATURE_HEADER, sig),
            ],
        )
        .await
        .unwrap();
}

/// A local JWKS endpoint whose document the test can swap, counting fetches.
struct JwksServer {
    url: String,
    doc: Arc<RwLock<Value>>,
    fetches: Arc<AtomicU32>,
}

async fn jwks_server(doc: Value) -> JwksServer {
    let doc = Arc::new(RwLock::new(doc));
    let fetches = Arc::new(AtomicU32::new(0));
    let (d, f) = (Arc::clone(&doc), Arc::clone(&fetches));
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let (d, f) = (Arc::clone(&d), Arc::clone(&f));
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                axum::Json(d.read().unwrap().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    JwksServer {
        url: format!("http://{addr}/jwks"),
        doc,
        fetches,
    }
}

/// Delegation for the tests: alice may have support-bot fetch a deploy token for her, and
/// support-bot may too (both needed), for a ticket.
const DELEGATION_POLICY: &str = r#"
@id("alice-delegates-deploy")
permit (
  principal == Hourglass::Principal::"alice",
  action == Hourglass::Action::"Exchange",
  resource == Hourglass::Entitlement::"tokens/deploy-api"
)
when { context has actor };

@id("bot-deploys-for-people")
permit (
  principal == Hourglass::Principal::"support-bot",
  action == Hourglass::Action::"Exchange",
  resource == Hourglass::Entitlement::"tokens/deploy-api"
)
when { context has ticket };

@id("workloads-get-db-credentials")
permit (
  principal in Hourglass::Group::"workloads",
  action == Hourglass::Action::"Exchange",
  resource == Hourglass::Entitlement::"vault/db"
);

@id("alice-admin-with-mfa")
permit (
  principal == Hourglass::Principal::"alice",
  action == Hourglass::Action::"AutoApprove",
  resource == Hourglass::Entitlement::"demo/ops-admin"
)
when { context.mfa };
"#;

/// An issuer, its JWKS endpoint, and a server that trusts it.
async fn setup() -> (DevIssuer, JwksServer, TestServer) {
    let idp = DevIssuer::generate().unwrap();
    let jwks = jwks_server(idp.jwks()).await;
    let s = server(&jwks.url).await;
    (idp, jwks, s)
}

/// An identity token of the acme/app CI job, with its own `jti`.
fn ci_token(idp: &DevIssuer, s: &TestServer, jti: &str) -> String {
    idp.mint(&claims(s, "repo", jti, json!({"repository": "acme/app"})))
}

async fn server(jwks_url: &str) -> TestServer {
    let url = jwks_url.to_owned();
    spawn_server_with(move |dir, text| {
        std::fs::write(dir.join("policies/delegation.cedar"), DELEGATION_POLICY).unwrap();
        std::fs::write(dir.join("desk.secret"), DESK_SECRET).unwrap();
        // A target whose connector issues a credential (a password, here from a file).
        std::fs::write(dir.join("db-password"), "pw-from-the-target").unwrap();
        let cat = dir.join("db-password").display().to_string();
        format!(
            "{text}\n[[targets]]\nname = \"vault\"\nconnector = \"exec\"\nexec = {{ grant = [\"/bin/sh\", \"-c\", \"printf '{{\\\"credential\\\": \\\"%s\\\"}}' \\\"$(cat {cat})\\\"\"], revoke = [\"/bin/true\"], timeout_secs = 5 }}\n\n[[entitlements]]\nname = \"vault/db\"\ndefault_duration = \"5m\"\nmax_duration = \"15m\"\n\n[[ticket_sources]]\nname = \"desk\"\nkind = \"webhook\"\npattern = 'DESK-\\d+'\nwebhook_secret = {{ file = \"desk.secret\" }}\n\n\
             [[issuers]]\nname = \"ci\"\nissuer = \"{ISS}\"\njwks_url = \"{url}\"\naudience = [\"hourglass\"]\n\
             delegation_audience = [\"hourglass-delegation\"]\napi_audience = [\"hourglass-api\"]\nalgorithms = [\"EdDSA\"]\n\
             map = [\n  {{ principal = \"ci-deployer\", claims = {{ repository = \"acme/app\" }} }},\n  {{ principal = \"support-bot\", claims = {{ sub = \"bot\" }} }},\n  {{ principal = \"alice\", claims = {{ sub = \"alice\" }} }},\n]\n"
        )
    })
    .await
    .unwrap()
}

fn now_secs(s: &TestServer) -> i64 {
    s.clock.now().unix_millis() / 1000
}

fn claims(s: &TestServer, sub: &str, jti: &str, extra: Value) -> Value {
    let now = now_secs(s);
    let mut c = json!({"iss": ISS, "sub": sub, "aud": "hourglass", "iat": now, "exp": now + 600, "jti": jti});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn anon(s: &TestServer) -> Client {
    Client::new(&format!("http://{}", s.addr), None).unwrap()
}

async fn exchange(
    s: &TestServer,
    subject: &str,
    actor: Option<&str>,
    resource: &str,
    extra: &[(&str, &str)],
) -> Result<hourglass_api::TokenResponse, (u16, Value)> {
    let mut form = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", subject),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("resource", resource),
    ];
    if let Some(a) = actor {
        form.push(("actor_token", a));
        form.push(("actor_token_type", "urn:ietf:params:oauth:token-type:jwt"));
    }
    form.extend_from_slice(extra);
    anon(s).exchange(&form).await.map_err(|e| match e {
        ClientError::Unexpected { status, body } => (status, serde_json::from_str(&body).unwrap()),
        other => panic!("{other:?}"),
    })
}

fn b64d(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

/// Verifies an Hourglass access token with ed25519-dalek (not the server's JWT library)
/// against a JWKS document, at `now`. Returns the claims, or why it fails.
pub(crate) fn verify_independently(token: &str, jwks: &Value, now: i64) -> Result<Value, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, sig] = parts.as_slice() else {
        return Err("not a JWS".into());
    };
    let header: Value = serde_json::from_slice(&b64d(h)).unwrap();
    if header["alg"] != "EdDSA" {
        return Err("not EdDSA".into());
    }
    let kid = header["kid"].as_str().ok_or("no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .ok_or_else(|| format!("kid {kid} is not in the JWKS"))?;
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let x: [u8; 32] = b64d(jwk["x"].as_str().unwrap()).try_into().unwrap();
    let key = VerifyingKey::from_bytes(&x).map_err(|e| e.to_string())?;
    let sig = Signature::from_slice(&b64d(sig)).map_err(|e| e.to_string())?;
    key.verify(format!("{h}.{p}").as_bytes(), &sig)
        .map_err(|_| "bad signature".to_owned())?;
    let c: Value = serde_json::from_slice(&b64d(p)).unwrap();
    if c["exp"].as_i64().unwrap() <= now {
        return Err("expired".into());
    }
    Ok(c)
}

async fn refusals(s: &TestServer) -> Vec<(String, String)> {
    s.client("admin")
        .audit(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "token.refused")
        .map(|e| {
            let get = |k: &str| {
                e.details
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            (get("code"), get("reason"))
        })
        .collect()
}

#[tokio::test]
async fn a_ci_token_is_exchanged_for_a_signed_token_that_verifies_independently() {
    let (idp, jwks, s) = setup().await;
    let token = idp.mint(&claims(
        &s,
        "repo:acme/app:ref:refs/heads/main",
        "run-1",
        json!({"repository": "acme/app"}),
    ));

    let t = exchange(&s, &token, None, "tokens/deploy-api", &[("duration", "5m")])
        .await
        .unwrap();
    assert_eq!(t.issued_token_type, "urn:ietf:params:oauth:token-type:jwt");
    assert_eq!(
        (t.token_type.as_str(), t.expires_in, t.scope.as_str()),
        ("Bearer", 300, "tokens/deploy-api")
    );
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        1,
        "the issuer's JWKS is fetched on the first unknown kid"
    );

    // Offline verification, as a target service would do it.
    let served = anon(&s).jwks().await.unwrap();
    let c = verify_independently(&t.access_token, &served, now_secs(&s)).unwrap();
    assert_eq!(c["sub"], "ci-deployer");
    assert_eq!(c["aud"], "deploy-api");
    assert_eq!(c["scope"], "deploy");
    assert_eq!(c["grant_id"], t.grant_id.as_str());
    assert_eq!(c["exp"].as_i64().unwrap(), now_secs(&s) + 300);
    assert!(c.get("act").is_none());
    // A tampered token does not verify.
    let mut forged = t.access_token.clone();
    forged.insert_str(forged.find('.').unwrap() + 1, "eyJ");
    assert!(verify_independently(&forged, &served, now_secs(&s)).is_err());

    // The grant is a grant like any other: active, listed, audited with the token's claims.
    let admin = s.client("admin");
    let g = admin.get_grant(&t.grant_id).await.unwrap();
    assert_eq!(
        (g.state.as_str(), g.principal.as_str()),
        ("active", "ci-deployer")
    );
    let events = admin.audit(0).await.unwrap();
    let ex = events
        .iter()
        .find(|e| e.action == "token.exchanged")
        .unwrap();
    assert!(ex.record_has("claim.repository", "acme/app"), "{ex:?}");
    assert!(ex.record_has("issuer", "ci"), "{ex:?}");

    // The same token again is a replay, refused and audited; a fresh one from the same run works.
    let (status, body) = exchange(&s, &token, None, "tokens/deploy-api", &[])
        .await
        .unwrap_err();
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(
        refusals(&s)
            .await
            .iter()
            .any(|(c, _)| c == "token.replayed")
    );
    let fresh = idp.mint(&claims(
        &s,
        "repo:acme/app:ref:refs/heads/main",
        "run-2",
        json!({"repository": "acme/app"}),
    ));
    exchange(&s, &fresh, None, "tokens/deploy-api", &[])
        .await
        .unwrap();

    // After its exp the token no longer verifies; the grant expires with it.
    s.clock.advance_ms(301_000);
    assert_eq!(
        verify_independently(&t.access_token, &served, now_secs(&s)),
        Err("expired".into())
    );
    assert!(
        hourglass_testkit::eventually(|| async {
            admin.get_grant(&t.grant_id).await.unwrap().state == "revoked"
        })
        .await
    );

    // Key retirement: a week on, a new key signs; a day after that the old one leaves the
    // JWKS, and tokens it signed no longer verify even with a clock that says they are current.
    let kid_of = |tok: &str| {
        let h: Value = serde_json::from_slice(&b64d(tok.split('.').next().unwrap())).unwrap();
        h["kid"].as_str().unwrap().to_owned()
    };
    let old_kid = kid_of(&t.access_token);
    s.clock.advance_ms(7 * 86_400_000);
    let both = anon(&s).jwks().await.unwrap();
    assert_eq!(
        both["keys"].as_array().unwrap().len(),
        2,
        "a new key is published"
    );
    let early = idp.mint(&claims(&s, "x", "run-3", json!({"repository": "acme/app"})));
    let t1 = exchange(&s, &early, None, "tokens/deploy-api", &[])
        .await
        .unwrap();
    assert_eq!(
        kid_of(&t1.access_token),
        old_kid,
        "the new key is published before it signs"
    );
    s.clock.advance_ms(600_000);
    let later = idp.mint(&claims(&s, "x", "run-4", json!({"repository": "acme/app"})));
    let t2 = exchange(&s, &later, None, "tokens/deploy-api", &[])
        .await
        .unwrap();
    assert_ne!(
        kid_of(&t2.access_token),
        old_kid,
        "then the rotated key signs"
    );
    s.clock.advance_ms(86_400_000);
    let after = anon(&s).jwks().await.unwrap();
    assert_eq!(after["keys"].as_array().unwrap().len(), 1);
    let err =
        verify_independently(&t.access_token, &after, c["exp"].as_i64().unwrap() - 1).unwrap_err();
    assert!(err.contains("not in the JWKS"), "{err}");
    verify_independently(&t2.access_token, &after, now_secs(&s)).unwrap_err(); // expired by now
    s.stop().await;
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused_and_audited() {
    let idp = DevIssuer::generate().unwrap();
    let other = DevIssuer::generate().unwrap();
    let jwks = jwks_server(idp.jwks()).await;
    let s = server(&jwks.url).await;
    let good = json!({"repository": "acme/app"});
    let now = now_secs(&s);
    let cases: Vec<(&str, String)> = vec![
        ("token.audience_invalid", idp.mint(&json!({"iss": ISS, "sub": "s", "aud": "someone-else", "exp": now + 60, "repository": "acme/app"}))),
        ("token.issuer_unknown", idp.mint(&json!({"iss": "https://evil.test", "sub": "s", "aud": "hourglass", "exp": now + 60, "repository": "acme/app"}))),
        ("token.expired", idp.mint(&claims(&s, "s", "e1", json!({"repository": "acme/app", "exp": now - 120})))),
        ("token.not_yet_valid", idp.mint(&claims(&s, "s", "e2", json!({"repository": "acme/app", "nbf": now + 600})))),
        ("token.algorithm_refused", idp.mint_with_header(&json!({"alg": "none", "kid": "dev-1"}), &claims(&s, "s", "a1", good.clone()))),
        ("token.algorithm_refused", idp.mint_with_header(&json!({"alg": "HS256", "kid": "dev-1"}), &claims(&s, "s", "a2", good.clone()))),
        ("token.signature_invalid", other.mint(&claims(&s, "s", "sig", good.clone()))),
        ("token.key_unknown", idp.mint_with_header(&json!({"alg": "EdDSA", "kid": "rotated-away"}), &claims(&s, "s", "k1", good.clone()))),
        ("token.unmapped", idp.mint(&claims(&s, "s", "u1", json!({"repository": "evil/fork"})))),
        ("token.claim_missing", idp.mint(&json!({"iss": ISS, "aud": "hourglass", "exp": now + 60, "repository": "acme/app"}))),
        ("token.malformed", "not.a-token".to_owned()),
    ];
    let grants_before = s.client("admin").list_grants(None).await.unwrap().len();
    for (code, token) in &cases {
        let (status, body) = exchange(&s, token, None, "tokens/deploy-api", &[])
            .await
            .unwrap_err();
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{code}: {body}"
        );
    }
    let audited: Vec<String> = refusals(&s).await.into_iter().map(|(c, _)| c).collect();
    let expected: Vec<String> = cases.iter().map(|(c, _)| (*c).to_owned()).collect();
    assert_eq!(
        audited, expected,
        "each refusal is audited with its reason, in order"
    );
    assert_eq!(
        s.client("admin").list_grants(None).await.unwrap().len(),
        grants_before,
        "nothing was granted"
    );
    // Unknown kids refresh the JWKS at most once per interval, so they cannot flood the issuer.
    assert!(
        jwks.fetches.load(Ordering::SeqCst) <= 2,
        "{}",
        jwks.fetches.load(Ordering::SeqCst)
    );

    // A form that is not a token exchange changes nothing either.
    let r = anon(&s)
        .exchange(&[("grant_type", "client_credentials"), ("subject_token", "x")])
        .await
        .unwrap_err();
    assert!(
        matches!(r, ClientError::Unexpected { status: 400, ref body } if body.contains("unsupported_grant_type")),
        "{r:?}"
    );
    let (status, body) = exchange(
        &s,
        &idp.mint(&claims(&s, "s", "ok", good.clone())),
        None,
        "tokens/nope",
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );
    // The key the issuer rotates to is found by refreshing its JWKS, once the refresh
    // interval (on the server's clock) has passed since the last fetch.
    let rotated = DevIssuer::generate().unwrap().with_kid("dev-2");
    *jwks.doc.write().unwrap() = rotated.jwks();
    let fetched = jwks.fetches.load(Ordering::SeqCst);
    s.clock.advance_ms(11_000);
    exchange(
        &s,
        &rotated.mint(&claims(&s, "s", "rot", good.clone())),
        None,
        "tokens/deploy-api",
        &[],
    )
    .await
    .unwrap();
    assert!(jwks.fetches.load(Ordering::SeqCst) > fetched);
    s.stop().await;
}

#[tokio::test]
async fn an_agent_acting_for_a_person_gets_the_intersection_capped_by_both_tokens() {
    let (idp, _jwks, s) = setup().await;
    ticket_open(&s, "DESK-1").await;
    let now = now_secs(&s);
    // alice's tokens consent to the bot acting for her (`may_act` names its token's subject).
    let alice = |jti: &str| {
        idp.mint(&claims(
            &s,
            "alice",
            jti,
            json!({"may_act": {"sub": "bot", "iss": ISS}}),
        ))
    };
    // The agent's token lives 4 minutes: the grant may not outlive it.
    let bot = |jti: &str| idp.mint(&claims(&s, "bot", jti, json!({"exp": now + 240})));

    // An identity cannot act for itself.
    let (status, body) = exchange(
        &s,
        &bot("self1"),
        Some(&bot("self2")),
        "demo/read-logs",
        &[("ticket", "DESK-1")],
    )
    .await
    .unwrap_err();
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    // Without a ticket the agent gets nothing, for itself or for alice; nor with free text
    // where a ticket goes (no source confirmed it).
    let (status, body) = exchange(&s, &alice("a1"), Some(&bot("b1")), "tokens/deploy-api", &[])
        .await
        .unwrap_err();
    assert_eq!(status, 403, "{body}");
    let (status, body) = exchange(
        &s,
        &alice("a1b"),
        Some(&bot("b1b")),
        "demo/read-logs",
        &[("ticket", "no ticket at all")],
    )
    .await
    .unwrap_err();
    assert_eq!(status, 403, "{body}");
    // Alice alone may not (her permit needs an acting agent): no escalation through the agent.
    let (status, _) = exchange(
        &s,
        &alice("a2"),
        None,
        "tokens/deploy-api",
        &[("ticket", "DESK-1")],
    )
    .await
    .unwrap_err();
    assert_eq!(status, 403);
    // ops-admin: alice is not permitted to exchange for it, so neither is the agent for her.
    let (status, _) = exchange(
        &s,
        &alice("a3"),
        Some(&bot("b3")),
        "demo/ops-admin",
        &[("ticket", "DESK-1")],
    )
    .await
    .unwrap_err();
    assert_eq!(status, 403);

    let t = exchange(
        &s,
        &alice("a4"),
        Some(&bot("b4")),
        "tokens/deploy-api",
        &[("ticket", "DESK-1"), ("duration", "10m")],
    )
    .await
    .unwrap();
    assert_eq!(t.expires_in, 240, "capped by the agent's token");
    let c = verify_independently(&t.access_token, &anon(&s).jwks().await.unwrap(), now).unwrap();
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["act"], json!({"sub": "support-bot"}));
    let ev = s.client("admin").audit(0).await.unwrap();
    let ex = ev.iter().find(|e| e.action == "token.exchanged").unwrap();
    assert!(
        ex.record_has("act", "support-bot") && ex.record_has("ticket", "DESK-1"),
        "{ex:?}"
    );
    // Neither token can be used again.
    let (status, _) = exchange(
        &s,
        &alice("a5"),
        Some(&bot("b4")),
        "tokens/deploy-api",
        &[("ticket", "DESK-1")],
    )
    .await
    .unwrap_err();
    assert_eq!(status, 400);
    s.stop().await;
}

#[tokio::test]
async fn holding_a_persons_token_is_not_their_consent_to_delegation() {
    let (idp, _jwks, s) = setup().await;
    ticket_open(&s, "DESK-2").await;
    let bot = |jti: &str| idp.mint(&claims(&s, "bot", jti, json!({})));
    let ticket = [("ticket", "DESK-2")];
    let refused = |body: &Value| assert_eq!(body["error"], "invalid_grant", "{body}");
    // alice's ordinary token, handed to the bot: no consent to this actor.
    let plain = idp.mint(&claims(&s, "alice", "p1", json!({})));
    let (status, body) = exchange(&s, &plain, Some(&bot("q1")), "tokens/deploy-api", &ticket)
        .await
        .unwrap_err();
    assert_eq!(status, 400);
    refused(&body);
    // Consent to another agent is no consent to this one.
    let other = idp.mint(&claims(
        &s,
        "alice",
        "p2",
        json!({"may_act": {"sub": "another-agent"}}),
    ));
    let (status, _) = exchange(&s, &other, Some(&bot("q2")), "tokens/deploy-api", &ticket)
        .await
        .unwrap_err();
    assert_eq!(status, 400);
    // A token carrying `act` is already a delegation: never a subject again.
    let acted = idp.mint(&claims(
        &s,
        "alice",
        "p3",
        json!({"act": {"sub": "bot"}, "may_act": {"sub": "bot"}}),
    ));
    let (status, _) = exchange(&s, &acted, Some(&bot("q3")), "tokens/deploy-api", &ticket)
        .await
        .unwrap_err();
    assert_eq!(status, 400);
    // A token issued for delegation (its own audience) is consent, and only with the agent.
    let for_bot = |jti: &str| {
        idp.mint(&claims(
            &s,
            "alice",
            jti,
            json!({"aud": "hourglass-delegation"}),
        ))
    };
    let (status, body) = exchange(&s, &for_bot("d1"), None, "tokens/deploy-api", &ticket)
        .await
        .unwrap_err();
    assert_eq!(status, 400);
    refused(&body);
    let t = exchange(
        &s,
        &for_bot("d2"),
        Some(&bot("q4")),
        "tokens/deploy-api",
        &ticket,
    )
    .await
    .unwrap();
    let c = verify_independently(
        &t.access_token,
        &anon(&s).jwks().await.unwrap(),
        now_secs(&s),
    )
    .unwrap();
    assert_eq!(c["act"], json!({"sub": "support-bot"}));
    // Every refusal is audited with its reason.
    let codes: Vec<String> = refusals(&s).await.into_iter().map(|(c, _)| c).collect();
    for code in [
        "token.delegation_not_consented",
        "token.already_delegated",
        "token.delegation_needs_actor",
    ] {
        assert!(codes.iter().any(|c| c == code), "{code} in {codes:?}");
    }
    s.stop().await;
}

#[tokio::test]
async fn identity_tokens_are_api_sessions_only_for_people_with_the_api_audience() {
    let (idp, _jwks, s) = setup().await;
    let base = format!("http://{}", s.addr);
    let bearer = |t: String| Client::new(&base, Some(t)).unwrap();
    let unauthorized = |e: ClientError| match e {
        ClientError::Problem(p) => {
            assert_eq!(p.status, 401, "{p:?}");
            p.code
        }
        e => panic!("{e:?}"),
    };
    // alice's exchange token (handed to an agent, say) is no session.
    let exchange_token = idp.mint(&claims(&s, "alice", "x1", json!({})));
    assert_eq!(
        unauthorized(bearer(exchange_token).whoami().await.unwrap_err()),
        "auth.invalid"
    );
    let api = |sub: &str, jti: &str, extra: Value| {
        let mut c = claims(&s, sub, jti, extra);
        if c["aud"] == "hourglass" {
            c["aud"] = json!("hourglass-api");
        }
        idp.mint(&c)
    };
    assert_eq!(
        bearer(api("alice", "x2", json!({})))
            .whoami()
            .await
            .unwrap()
            .principal,
        "alice"
    );
    // Never a workload or an agent, never a token that carries `act`.
    assert_eq!(
        unauthorized(
            bearer(api("bot", "x3", json!({})))
                .whoami()
                .await
                .unwrap_err()
        ),
        "auth.not_a_person"
    );
    assert_eq!(
        unauthorized(
            bearer(api("alice", "x4", json!({"act": {"sub": "bot"}})))
                .whoami()
                .await
                .unwrap_err()
        ),
        "auth.delegated_token"
    );
    // A token for both uses is a session only until it is exchanged.
    let both = api(
        "alice",
        "x5",
        json!({"aud": ["hourglass", "hourglass-api"], "may_act": {"sub": "bot"}}),
    );
    let c = bearer(both.clone());
    assert!(c.whoami().await.is_ok());
    ticket_open(&s, "DESK-3").await;
    exchange(
        &s,
        &both,
        Some(&idp.mint(&claims(&s, "bot", "x6", json!({})))),
        "tokens/deploy-api",
        &[("ticket", "DESK-3")],
    )
    .await
    .unwrap();
    assert_eq!(
        unauthorized(c.whoami().await.unwrap_err()),
        "auth.token_used"
    );
    // And the break-glass of the review: the agent holding alice's exchange token cannot ask
    // for anything as her.
    let held = idp.mint(&claims(&s, "alice", "x7", json!({})));
    let ask = hourglass_api::CreateRequest {
        entitlement: "demo/ops-admin".into(),
        duration: Some("15m".into()),
        reason: "db down".into(),
        break_glass: true,
        ..Default::default()
    };
    assert_eq!(
        unauthorized(bearer(held).create_request(&ask).await.unwrap_err()),
        "auth.invalid"
    );
    s.stop().await;
}

/// Looks up one audit detail.
trait RecordHas {
    fn record_has(&self, key: &str, value: &str) -> bool;
}

impl RecordHas for hourglass_api::AuditEventView {
    fn record_has(&self, key: &str, value: &str) -> bool {
        self.details.iter().any(|(k, v)| k == key && v == value)
    }
}

#[tokio::test]
async fn a_person_signs_in_with_an_oidc_jwt_and_its_mfa_counts() {
    let (idp, _jwks, s) = setup().await;
    let base = format!("http://{}", s.addr);
    let ask = hourglass_api::CreateRequest {
        entitlement: "demo/ops-admin".into(),
        duration: Some("30m".into()),
        reason: "restart".into(),
        ..Default::default()
    };
    let with = |amr: Value, jti: &str| {
        Client::new(
            &base,
            Some(idp.mint(&claims(
                &s,
                "alice",
                jti,
                json!({"amr": amr, "aud": "hourglass-api"}),
            ))),
        )
        .unwrap()
    };
    // A second factor at the identity provider lets the MFA-only policy approve at once.
    let mfa = with(json!(["pwd", "mfa"]), "s1");
    assert_eq!(mfa.whoami().await.unwrap().principal, "alice");
    let r = mfa.create_request(&ask).await.unwrap();
    assert_eq!(r.state, "fulfilled", "{r:?}");
    mfa.revoke(r.grant_id.as_ref().unwrap(), None)
        .await
        .unwrap();
    // The same person with a password only (or her API key) waits for a human.
    let pwd = with(json!(["pwd"]), "s2");
    let r = pwd.create_request(&ask).await.unwrap();
    assert_eq!(r.state, "pending");
    pwd.cancel(&r.id).await.unwrap();
    let r = s.client("alice").create_request(&ask).await.unwrap();
    assert_eq!(r.state, "pending");
    // A session token is used for many calls (no replay rule), but a forged or foreign one fails.
    assert!(mfa.whoami().await.is_ok());
    let other = DevIssuer::generate().unwrap();
    let forged = Client::new(
        &base,
        Some(other.mint(&claims(
            &s,
            "alice",
            "s3",
            json!({"amr": ["mfa"], "aud": "hourglass-api"}),
        ))),
    )
    .unwrap();
    match forged.whoami().await.unwrap_err() {
        ClientError::Problem(p) => assert_eq!((p.status, p.code.as_str()), (401, "auth.invalid")),
        e => panic!("{e:?}"),
    }
    s.stop().await;
}

#[tokio::test]
async fn a_connector_credential_is_the_answer_for_other_targets() {
    let (idp, _jwks, s) = setup().await;
    let token = ci_token(&idp, &s, "db-1");
    let t = exchange(&s, &token, None, "vault/db", &[("duration", "3m")])
        .await
        .unwrap();
    assert_eq!(t.issued_token_type, "urn:hourglass:token-type:credential");
    // Asking for a JWT where the target issues a credential is refused, not silently changed.
    let other = ci_token(&idp, &s, "db-2");
    let (status, body) = exchange(
        &s,
        &other,
        None,
        "vault/db",
        &[(
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:jwt",
        )],
    )
    .await
    .unwrap_err();
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    // The same with a space before the name: the check reads the name the engine uses.
    let (status, body) = exchange(
        &s,
        &ci_token(&idp, &s, "db-3"),
        None,
        " vault/db",
        &[(
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:jwt",
        )],
    )
    .await
    .unwrap_err();
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // A second exchange while the first grant lives is refused, not stacked on it.
    let (status, body) = exchange(&s, &ci_token(&idp, &s, "db-4"), None, "vault/db", &[])
        .await
        .unwrap_err();
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already holds"),
        "{body}"
    );
    assert_eq!(
        (t.access_token.as_str(), t.token_type.as_str()),
        ("pw-from-the-target", "N_A")
    );
    let admin = s.client("admin");
    let g = admin.get_grant(&t.grant_id).await.unwrap();
    assert_eq!(
        (g.state.as_str(), g.entitlement.as_str()),
        ("active", "vault/db")
    );
    assert!(g.credential_issued);
    // Handed over once: nobody can fetch it again.
    assert!(
        s.client("ci-deployer")
            .credential(&t.grant_id)
            .await
            .is_err()
    );
    s.stop().await;
}

#[tokio::test]
async fn a_flood_of_bad_tokens_is_throttled_before_it_floods_the_audit() {
    let (idp, _jwks, s) = setup().await;
    for i in 0..30 {
        let (status, _) = exchange(&s, "not.a-token", None, "tokens/deploy-api", &[])
            .await
            .unwrap_err();
        assert_eq!(status, 400, "refusal {i}");
    }
    let (status, body) = exchange(&s, "not.a-token", None, "tokens/deploy-api", &[])
        .await
        .unwrap_err();
    assert_eq!((status, body["error"].as_str()), (429, Some("slow_down")));
    let audited = refusals(&s).await;
    assert_eq!(
        audited.len(),
        30,
        "the 30 refusals of the minute are audited, no more"
    );
    let events = s.client("admin").audit(0).await.unwrap();
    let last = events
        .iter()
        .rfind(|e| e.action == "token.refused")
        .unwrap();
    assert!(
        last.details
            .iter()
            .any(|(k, v)| k == "budget" && v.contains("not audited")),
        "{last:?}"
    );
    assert!(
        s.client("admin")
            .metrics()
            .await
            .unwrap()
            .contains("outcome=\"exchange_throttled\"} 1")
    );
    // A good token from the same address is not throttled.
    let ok = ci_token(&idp, &s, "fine");
    exchange(&s, &ok, None, "tokens/deploy-api", &[])
        .await
        .unwrap();
    // The next minute, refusals are audited again.
    s.clock.advance_ms(60_000);
    exchange(&s, "not.a-token", None, "tokens/deploy-api", &[])
        .await
        .unwrap_err();
    assert_eq!(refusals(&s).await.len(), 31);
    // What went unaudited is counted, once.
    let events = s.client("admin").audit(0).await.unwrap();
    let suppressed: Vec<_> = events
        .iter()
        .filter(|e| e.action == "audit.refusals_suppressed")
        .collect();
    assert_eq!(suppressed.len(), 1);
    assert!(suppressed[0].record_has("count", "1"), "{suppressed:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_target_that_does_not_provision_in_time_leaves_no_grant_behind() {
    let idp = DevIssuer::generate().unwrap();
    let jwks = jwks_server(idp.jwks()).await;
    let url = jwks.url.clone();
    // The target's grant command always fails, so the grant stays provisioning (retried); the
    // exchange waits one second of real time (an HTTP bound, not an expiry) and gives up.
    let s = spawn_server_with(move |dir, text| {
        std::fs::write(dir.join("policies/down.cedar"), "@id(\"w-down\")\npermit(principal in Hourglass::Group::\"workloads\", action == Hourglass::Action::\"Exchange\", resource == Hourglass::Entitlement::\"down/db\");\n").unwrap();
        format!(
            "{text}\n[tokens]\nexchange_wait = \"1s\"\n\n[[targets]]\nname = \"down\"\nconnector = \"exec\"\nexec = {{ grant = [\"/bin/false\"], revoke = [\"/bin/true\"], timeout_secs = 5 }}\n\n\
             [[entitlements]]\nname = \"down/db\"\ndefault_duration = \"5m\"\nmax_duration = \"15m\"\n\n\
             [[issuers]]\nname = \"ci\"\nissuer = \"{ISS}\"\njwks_url = \"{url}\"\naudience = [\"hourglass\"]\nalgorithms = [\"EdDSA\"]\nmap = [{{ principal = \"ci-deployer\", claims = {{ repository = \"acme/app\" }} }}]\n"
        )
    })
    .await
    .unwrap();
    let (status, body) = exchange(&s, &ci_token(&idp, &s, "down-1"), None, "down/db", &[])
        .await
        .unwrap_err();
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{body}"
    );
    let gid = body["error_description"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .find(|w| w.starts_with("grt_"))
        .unwrap()
        .to_owned();
    let admin = s.client("admin");
    assert!(
        hourglass_testkit::eventually(|| async {
            matches!(
                admin.get_grant(&gid).await.unwrap().state.as_str(),
                "failed" | "revoked"
            )
        })
        .await,
        "the abandoned grant is revoked, not left provisioning"
    );
    s.stop().await;
}
