//! Single sign-on through a real, certified OpenID provider (`oidc-provider` from npm, on the
//! machine's Node.js; `.ci/run` installs it): the authorization code flow with PKCE, `state` and
//! `nonce`, sessions started from it, people created from its claims, RP-initiated logout, and
//! every forged, replayed or tampered sign-in refused, audited, and creating nothing.

use std::{net::SocketAddr, path::PathBuf, process::Stdio, time::Duration};

use hourglass_api::{CreateRequest, SessionView};
use hourglass_core::Timestamp;
use hourglass_testkit::{TestServer, spawn_server_on};
use reqwest::{StatusCode, header};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// The provider, stopped when dropped.
pub(crate) struct Idp {
    pub(crate) issuer: String,
    _child: Child,
}

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// Starts the provider for `redirect`, with the people's groups (`{"alice": ["ops"]}`). `None`
/// (the test skips) when it cannot be installed and this is not CI.
pub(crate) async fn idp(redirect: &str, groups: &str) -> Option<Idp> {
    idp_named(redirect, groups, "{}").await
}

/// Installs the provider (`npm ci`, pinned by its lock file) if it is not yet, once for all
/// the test processes (they take a lock on a file beside it). Whether it is there.
fn install_provider(dir: &std::path::Path) -> bool {
    let installed = || dir.join("node_modules/oidc-provider").is_dir();
    if installed() {
        return true;
    }
    let Ok(lock) = std::fs::File::create(dir.join(".install.lock")) else {
        return false;
    };
    if lock.lock().is_err() {
        return false;
    }
    if !installed() {
        let ran = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !ran.is_ok_and(|s| s.success()) {
            eprintln!("npm ci in {} failed", dir.display());
        }
    }
    let _ = lock.unlock();
    installed()
}

/// Like [`idp`], with `names` mapping a login to the `preferred_username` its tokens carry.
pub(crate) async fn idp_named(redirect: &str, groups: &str, names: &str) -> Option<Idp> {
    let dir = provider_dir();
    if !install_provider(&dir) {
        assert!(
            std::env::var_os("CI").is_none(),
            "oidc-provider is not installed: npm ci --prefix {}",
            dir.display()
        );
        eprintln!(
            "skipped: oidc-provider could not be installed (needs Node.js and npm: npm ci --prefix {})",
            dir.display()
        );
        return None;
    }
    let mut child = Command::new("node")
        .arg("provider.mjs")
        .arg(redirect)
        .arg(groups)
        .arg(names)
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("OIDC_DEBUG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the provider starts")
        .unwrap()
        .expect("the provider prints its issuer");
    let issuer = line.strip_prefix("issuer=").unwrap().to_owned();
    Some(Idp {
        issuer,
        _child: child,
    })
}

/// A free loopback port for the server (the provider must know its redirect before it starts).
pub(crate) fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The real time: the provider issues its tokens on it.
pub(crate) fn real_now() -> Timestamp {
    use hourglass_core::Clock;
    hourglass_server::clock::SystemClock.now()
}

/// A provider and a server that signs people in with it (the manual clock at the real time,
/// since the provider issues tokens on it).
async fn sso(extra: &str) -> Option<(Idp, TestServer)> {
    let addr = free_addr();
    let idp = idp(
        &format!("http://{addr}/signin/callback"),
        r#"{"alice": ["ops"], "carol": ["ops", "not a valid name!", "ops"]}"#,
    )
    .await?;
    let issuer = idp.issuer.clone();
    let extra = extra.to_owned();
    let s = spawn_server_on(addr, real_now(), move |dir, text| {
        std::fs::write(dir.join("oidc.secret"), "test-client-secret\n").unwrap();
        format!(
            "{text}\n[web.oidc]\nissuer = \"{issuer}\"\nclient_id = \"hourglass\"\n\
             client_secret = {{ file = \"oidc.secret\" }}\n\
             redirect_url = \"http://{addr}/signin/callback\"\n\
             scopes = [\"email\", \"profile\", \"groups\"]\ngroups_claim = \"groups\"\n\
             mfa_acr = [\"mfa\"]\n{extra}\n"
        )
    })
    .await
    .unwrap();
    Some((idp, s))
}

/// A browser: its own cookie jar, redirects followed by hand.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(resp: &reqwest::Response, base: &str) -> String {
    let l = resp.headers()[header::LOCATION].to_str().unwrap();
    if l.starts_with('/') {
        format!("{base}{l}")
    } else {
        l.to_owned()
    }
}

/// Starts a sign-in at the server and signs in at the provider as `who`; the callback URL the
/// provider sends the browser to (not yet visited) and the login cookie the browser holds.
async fn sign_in_at_provider(
    b: &reqwest::Client,
    s: &TestServer,
    idp: &Idp,
    who: &str,
    mfa: bool,
) -> (String, String) {
    sign_in_from(b, s, idp, who, mfa, "/signin/oidc?return_to=/v1/session").await
}

/// Like [`sign_in_at_provider`], starting at `start` (a step-up, say).
async fn sign_in_from(
    b: &reqwest::Client,
    s: &TestServer,
    idp: &Idp,
    who: &str,
    mfa: bool,
    start: &str,
) -> (String, String) {
    let base = format!("http://{}", s.addr);
    let resp = b.get(format!("{base}{start}")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let login = resp.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let auth = location(&resp, &base);
    assert!(auth.starts_with(&idp.issuer), "{auth}");
    if start.contains("step_up=1") {
        for p in ["max_age=0", "prompt=login", "acr_values=mfa"] {
            assert!(auth.contains(p), "{p} in {auth}");
        }
    }
    for p in [
        "code_challenge_method=S256",
        "state=",
        "nonce=",
        "code_challenge=",
    ] {
        assert!(auth.contains(p), "{p} in {auth}");
    }
    let mut next = auth;
    loop {
        let resp = b.get(&next).send().await.unwrap();
        assert!(resp.status().is_redirection(), "{next}: {}", resp.status());
        next = location(&resp, &idp.issuer);
        if next.starts_with(&base) {
            return (next, login);
        }
        if next.contains("/interaction/") {
            let form = b.get(&next).send().await.unwrap();
            assert_eq!(form.status(), StatusCode::OK);
            let mut body = format!("login={who}");
            if mfa {
                body.push_str("&mfa=1");
            }
            let resp = b
                .post(&next)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_redirection(), "{}", resp.status());
            next = location(&resp, &idp.issuer);
        }
    }
}

/// Visits the callback; the status, the session cookie set (if any) and the page.
async fn callback(b: &reqwest::Client, url: &str) -> (u16, Option<String>, String) {
    let resp = b.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let session = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("hourglass-session=hgs_"))
        .map(|c| c.split(';').next().unwrap().to_owned());
    (status, session, resp.text().await.unwrap_or_default())
}

async fn session(s: &TestServer, cookie: &str) -> Option<SessionView> {
    let resp = reqwest::Client::new()
        .get(format!("http://{}/v1/session", s.addr))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    resp.status()
        .is_success()
        .then_some(resp)?
        .json()
        .await
        .ok()
}

async fn refusals(s: &TestServer) -> Vec<String> {
    s.client("admin")
        .audit(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "session.refused")
        .filter_map(|e| detail(&e, "code"))
        .collect()
}

fn detail(e: &hourglass_api::AuditEventView, key: &str) -> Option<String> {
    e.details
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

#[tokio::test]
async fn people_sign_in_with_the_identity_provider_and_sign_out_of_it_too() {
    let Some((idp, s)) = sso("").await else {
        return;
    };
    let base = format!("http://{}", s.addr);
    // The sign-in page offers the provider.
    let page = browser()
        .get(format!("{base}/signin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("href=\"/signin/oidc?return_to=%2F\""),
        "{page}"
    );

    // alice, without a second factor: a session through the provider, then where she was going.
    let b = browser();
    let (url, _) = sign_in_at_provider(&b, &s, &idp, "alice", false).await;
    let resp = b.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[header::LOCATION], "/v1/session");
    let cookie = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("hourglass-session=hgs_"))
        .unwrap();
    for attr in ["HttpOnly", "SameSite=Lax"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let me = session(&s, &cookie).await.unwrap();
    assert_eq!(
        (me.principal.as_str(), me.via.as_str(), me.mfa),
        ("alice", "oidc", false)
    );

    // With a second factor (the provider's acr): the session says so, and it acts as alice.
    let b2 = browser();
    let (url, _) = sign_in_at_provider(&b2, &s, &idp, "alice", true).await;
    let (status, mfa_cookie, _) = callback(&b2, &url).await;
    assert_eq!(status, 303);
    let mfa_cookie = mfa_cookie.unwrap();
    assert!(session(&s, &mfa_cookie).await.unwrap().mfa);
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/requests"))
        .header(header::COOKIE, &mfa_cookie)
        .header(
            "x-csrf-token",
            &session(&s, &mfa_cookie).await.unwrap().csrf_token,
        )
        .json(&CreateRequest {
            entitlement: "demo/read-logs".into(),
            duration: Some("15m".into()),
            reason: "signed in with the IdP".into(),
            ..CreateRequest::default()
        })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // Someone the provider knows and Hourglass does not: refused with a clear page, not created.
    let people = s.client("admin").identities().await.unwrap().len();
    let b3 = browser();
    let (url, _) = sign_in_at_provider(&b3, &s, &idp, "mallory", false).await;
    let (status, cookie3, page) = callback(&b3, &url).await;
    assert_eq!((status, cookie3), (403, None));
    assert!(page.contains("not a person Hourglass knows"), "{page}");
    assert_eq!(s.client("admin").identities().await.unwrap().len(), people);
    assert!(
        refusals(&s)
            .await
            .contains(&"session.unknown_person".to_owned())
    );

    // Sign-out ends the session here and sends the browser to the provider's sign-out.
    let csrf = me.csrf_token.clone();
    let resp = b
        .post(format!("{base}/signout"))
        .header(header::ORIGIN, &base)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("csrf_token={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let to = resp.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        to.starts_with(&format!("{}/session/end", idp.issuer)),
        "{to}"
    );
    assert!(to.contains("client_id=hourglass"), "{to}");
    assert!(
        to.contains(&format!(
            "post_logout_redirect_uri=http%3A%2F%2F{}%2Fsignin",
            s.addr.to_string().replace(':', "%3A")
        )),
        "{to}"
    );
    assert!(session(&s, &cookie).await.is_none());
    // The provider accepts that sign-out request (its confirmation page).
    let end = b.get(&to).send().await.unwrap();
    assert_eq!(end.status(), StatusCode::OK, "{to}");
}

#[tokio::test]
async fn a_person_unknown_here_is_created_with_the_providers_groups_when_configured() {
    let Some((idp, s)) = sso("create_people = true").await else {
        return;
    };
    let b = browser();
    let (url, _) = sign_in_at_provider(&b, &s, &idp, "carol", false).await;
    let (status, cookie, _) = callback(&b, &url).await;
    assert_eq!(status, 303);
    assert_eq!(
        session(&s, &cookie.unwrap()).await.unwrap().principal,
        "carol"
    );
    let carol = s
        .client("admin")
        .identities()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.name == "carol")
        .unwrap();
    assert_eq!(
        (carol.kind.as_str(), carol.groups.clone()),
        ("human", vec!["ops".to_owned()])
    );
    let created = s
        .client("admin")
        .audit(0)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.action == "identity.created" && e.subject == "carol")
        .unwrap();
    assert_eq!(detail(&created, "via").as_deref(), Some("oidc"));
    assert_eq!(detail(&created, "groups_dropped").as_deref(), Some("2"));
    assert_eq!(carol.origin, "sign_in");
}

#[tokio::test]
async fn forged_replayed_and_tampered_sign_ins_are_refused_audited_and_create_nothing() {
    let Some((idp, s)) = sso("").await else {
        return;
    };
    let sessions_before = refusals(&s).await.len();
    assert_eq!(sessions_before, 0);
    let tamper = |mode: &'static str| {
        let issuer = idp.issuer.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{issuer}/__test/tamper"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(format!("mode={mode}"))
                .send()
                .await
                .unwrap();
        }
    };

    // A forged state: not this browser's login.
    let b = browser();
    let (url, _) = sign_in_at_provider(&b, &s, &idp, "alice", false).await;
    let forged = url.replacen("state=", "state=x", 1);
    assert_eq!(callback(&b, &forged).await.0, 403);
    // The callback in a browser that never started the sign-in (login CSRF).
    let (url, _) = sign_in_at_provider(&b, &s, &idp, "alice", false).await;
    let (status, cookie, _) = callback(&browser(), &url).await;
    assert_eq!((status, cookie), (403, None));

    // A finished sign-in replayed, login cookie and all.
    let b = browser();
    let (url, login) = sign_in_at_provider(&b, &s, &idp, "alice", false).await;
    let (status, cookie, _) = callback(&b, &url).await;
    assert_eq!(status, 303);
    assert!(cookie.is_some());
    // Another sign-in in between forgets no other login (nor any other remembered use).
    let other = browser();
    let (url2, _) = sign_in_at_provider(&other, &s, &idp, "bob", false).await;
    assert_eq!(callback(&other, &url2).await.0, 303);
    let replay = reqwest::Client::new()
        .get(&url)
        .header(header::COOKIE, &login)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::FORBIDDEN);
    assert!(
        !replay
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("hourglass-session=hgs_"))
    );

    // ID tokens changed on the way: another issuer, another audience, expired, another nonce,
    // and `alg: none`.
    for mode in ["iss", "aud", "expired", "nonce", "none"] {
        let b = browser();
        let (url, _) = sign_in_at_provider(&b, &s, &idp, "alice", false).await;
        tamper(mode).await;
        let (status, cookie, page) = callback(&b, &url).await;
        assert_eq!((status, cookie), (403, None), "{mode}: {page}");
    }
    // A login that took longer than ten minutes (the server's clock moves; the token is fine).
    let b = browser();
    let (url, _) = sign_in_at_provider(&b, &s, &idp, "alice", false).await;
    s.clock.advance_ms(11 * 60 * 1000);
    assert_eq!(callback(&b, &url).await.0, 403);

    let codes = refusals(&s).await;
    for code in [
        "sign_in.state_mismatch",
        "sign_in.no_login",
        "session.login_replayed",
        "sign_in.wrong_issuer",
        "sign_in.wrong_audience",
        "sign_in.token_expired",
        "sign_in.wrong_nonce",
        "sign_in.login_expired",
    ] {
        assert!(codes.contains(&code.to_owned()), "{code} in {codes:?}");
    }
    // `alg: none` is refused too (the algorithm is not an allowed one).
    assert_eq!(codes.len(), 9, "{codes:?}");
    // Only the two good sign-ins started sessions.
    let started = s
        .client("admin")
        .audit(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "session.started")
        .count();
    assert_eq!(started, 2);
}

/// The provider stops after people signed in: their sessions go on, API keys work, break-glass
/// works, and nothing asks the provider.
#[tokio::test]
async fn when_the_provider_stops_sessions_api_keys_and_break_glass_go_on() {
    let Some((idp, s)) = sso("").await else {
        return;
    };
    let b = browser();
    let (url, _) = sign_in_at_provider(&b, &s, &idp, "alice", false).await;
    let (_, cookie, _) = callback(&b, &url).await;
    let cookie = cookie.unwrap();
    let issuer = idp.issuer.clone();
    drop(idp);
    // The provider is gone (its process killed): nothing answers at its issuer any more.
    assert!(
        hourglass_testkit::eventually(|| async {
            reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
                .await
                .is_err()
        })
        .await
    );
    assert!(session(&s, &cookie).await.is_some(), "the session goes on");
    let r = s
        .client("alice")
        .create_request(&CreateRequest {
            entitlement: "demo/ops-admin".into(),
            duration: Some("30m".into()),
            reason: "the IdP is down and so is the database".into(),
            break_glass: true,
            ..CreateRequest::default()
        })
        .await
        .unwrap();
    assert_eq!((r.state.as_str(), r.break_glass), ("fulfilled", true));
}

#[tokio::test]
async fn with_the_provider_down_api_keys_and_break_glass_still_work() {
    // A provider that is not there (nothing listens on the port).
    let dead = free_addr();
    let s = spawn_server_on(free_addr(), real_now(), |_, text| {
        format!(
            "{text}\n[web.oidc]\nissuer = \"http://{dead}\"\nclient_id = \"hourglass\"\n\
             redirect_url = \"http://127.0.0.1:1/signin/callback\"\n"
        )
    })
    .await
    .unwrap();
    let resp = browser()
        .get(format!("http://{}/signin/oidc", s.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let page = resp.text().await.unwrap();
    assert!(page.contains("cannot be reached"), "{page}");
    assert!(page.contains("--break-glass"), "{page}");
    // The API key path never depends on the provider.
    let r = s
        .client("alice")
        .create_request(&CreateRequest {
            entitlement: "demo/ops-admin".into(),
            duration: Some("30m".into()),
            reason: "the IdP is down and so is the database".into(),
            break_glass: true,
            ..CreateRequest::default()
        })
        .await
        .unwrap();
    assert_eq!((r.state.as_str(), r.break_glass), ("fulfilled", true));
}

/// Approving ops-admin needs a second factor (a policy says so): an approver signed in without
/// one is told to step up, goes through a fresh sign-in at the provider, and only an MFA sign-in
/// makes the approval count.
#[tokio::test]
async fn an_approval_that_needs_a_second_factor_sends_the_approver_through_a_fresh_sign_in() {
    let addr = free_addr();
    let Some(idp) = idp(&format!("http://{addr}/signin/callback"), "{}").await else {
        return;
    };
    let issuer = idp.issuer.clone();
    let s = spawn_server_on(addr, real_now(), move |dir, text| {
        std::fs::write(dir.join("oidc.secret"), "test-client-secret").unwrap();
        std::fs::write(
            dir.join("policies/mfa.cedar"),
            "@id(\"approving-ops-admin-needs-mfa\")\n\
             forbid (principal, action == Hourglass::Action::\"Approve\", \
             resource == Hourglass::Entitlement::\"demo/ops-admin\")\n\
             unless { context.mfa };\n",
        )
        .unwrap();
        format!(
            "{text}\n[web.oidc]\nissuer = \"{issuer}\"\nclient_id = \"hourglass\"\n\
             client_secret = {{ file = \"oidc.secret\" }}\n\
             redirect_url = \"http://{addr}/signin/callback\"\n\
             mfa_acr = [\"mfa\"]\nstep_up_acr = \"mfa\"\n"
        )
    })
    .await
    .unwrap();
    let base = format!("http://{}", s.addr);
    let r = s
        .client("alice")
        .create_request(&CreateRequest {
            entitlement: "demo/ops-admin".into(),
            duration: Some("30m".into()),
            reason: "deploy the fix".into(),
            ..CreateRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(r.state, "pending");
    let approve = |cookie: String| {
        let url = format!("{base}/v1/requests/{}/approve", r.id);
        let s = &s;
        async move {
            let csrf = session(s, &cookie).await.unwrap().csrf_token;
            let resp = reqwest::Client::new()
                .post(url)
                .header(header::COOKIE, &cookie)
                .header("x-csrf-token", csrf)
                .json(&serde_json::json!({"comment": "ok"}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }
    };

    // bob signed in without a second factor: told to step up; nothing recorded.
    let b = browser();
    let (url, _) = sign_in_at_provider(&b, &s, &idp, "bob", false).await;
    let (_, plain, _) = callback(&b, &url).await;
    let plain = plain.unwrap();
    let (status, body) = approve(plain.clone()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("approval.step_up_required")),
        "{body}"
    );

    // The step-up asks the provider for a fresh sign-in with MFA; one without it is refused.
    let step_up = format!("/signin/oidc?step_up=1&return_to=/approve/{}", r.id);
    let (url, _) = sign_in_from(&b, &s, &idp, "bob", false, &step_up).await;
    let (status, none, page) = callback(&b, &url).await;
    assert_eq!((status, none), (403, None), "{page}");
    assert!(page.contains("second factor"), "{page}");
    assert!(
        session(&s, &plain).await.is_some(),
        "a refused step-up changes nothing"
    );

    // With MFA: a fresh session (the old one ends), back to the request, and the approval counts.
    let (url, _) = sign_in_from(&b, &s, &idp, "bob", true, &step_up).await;
    let resp = b.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        resp.headers()[header::LOCATION].to_str().unwrap(),
        format!("/approve/{}", r.id)
    );
    let strong = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("hourglass-session=hgs_"))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        session(&s, &plain).await.is_none(),
        "the session it replaced ended"
    );
    assert!(session(&s, &strong).await.unwrap().mfa);
    let (status, body) = approve(strong).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "fulfilled");
}

/// A person is bound to the provider account they first signed in with: another account that
/// takes their name at the provider is refused, until an administrator unbinds the name.
#[tokio::test]
async fn a_person_is_bound_to_their_first_provider_account() {
    let addr = free_addr();
    let Some(idp) = idp_named(
        &format!("http://{addr}/signin/callback"),
        "{}",
        r#"{"mallory": "alice"}"#,
    )
    .await
    else {
        return;
    };
    let issuer = idp.issuer.clone();
    let s = spawn_server_on(addr, real_now(), move |dir, text| {
        std::fs::write(dir.join("oidc.secret"), "test-client-secret").unwrap();
        format!(
            "{text}\n[web]\ndemo_sign_in = true\n[web.oidc]\nissuer = \"{issuer}\"\n\
             client_id = \"hourglass\"\nclient_secret = {{ file = \"oidc.secret\" }}\n\
             redirect_url = \"http://{addr}/signin/callback\"\n"
        )
    })
    .await
    .unwrap();
    // alice's first sign-in binds her name to her account.
    let b = browser();
    let (url, _) = sign_in_at_provider(&b, &s, &idp, "alice", false).await;
    assert_eq!(callback(&b, &url).await.0, 303);
    // mallory's account says it is "alice" too: refused, nothing started.
    let m = browser();
    let (url, _) = sign_in_at_provider(&m, &s, &idp, "mallory", false).await;
    let (status, cookie, page) = callback(&m, &url).await;
    assert_eq!((status, cookie), (403, None));
    assert!(page.contains("another account"), "{page}");
    assert!(
        refusals(&s)
            .await
            .contains(&"session.account_mismatch".to_owned())
    );
    let bound = s
        .client("admin")
        .audit(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "identity.sign_in_bound" && e.subject == "alice")
        .count();
    assert_eq!(bound, 1);

    // An administrator unbinds the name (the account really changed); the next sign-in binds.
    let admin = crate::app::Browser::sign_in(&s, "admin").await;
    let (_, page) = admin.get("/admin/identities").await;
    assert!(page.contains(&format!("{}#alice", idp.issuer)), "{page}");
    let r = admin
        .post("/admin/identities/alice/unbind", &[], true)
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let m = browser();
    let (url, _) = sign_in_at_provider(&m, &s, &idp, "mallory", false).await;
    assert_eq!(callback(&m, &url).await.0, 303);
}
