//! Signing in with a browser: sessions kept in the store behind an HttpOnly cookie, a fresh id
//! at every sign-in, the CSRF token and the origin check on every change, sign-out that ends the
//! session everywhere, and the idle timeout on the server's clock. (The demo's pick-a-person
//! sign-in stands in for the identity provider here.)

use hourglass_api::SessionView;
use hourglass_testkit::{TestServer, spawn_server, spawn_server_with};
use reqwest::{StatusCode, header};
use serde_json::Value;

async fn demo_server() -> TestServer {
    spawn_server(|text| format!("{text}\n[web]\ndemo_sign_in = true\nsession_idle = \"30m\"\n"))
        .await
        .unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in as `who` through the demo page; the session cookie (`name=value`), and the whole
/// `Set-Cookie` header. `planted` is a cookie the browser already had.
async fn sign_in(s: &TestServer, who: &str, planted: Option<&str>) -> (String, String) {
    let base = format!("http://{}", s.addr);
    let mut req = http()
        .post(format!("{base}/signin/demo"))
        .header(header::ORIGIN, &base)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("principal={who}"));
    if let Some(c) = planted {
        req = req.header(header::COOKIE, c);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let set = resp
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    (set.split(';').next().unwrap().to_owned(), set)
}

async fn session(s: &TestServer, cookie: &str) -> Result<SessionView, u16> {
    let resp = http()
        .get(format!("http://{}/v1/session", s.addr))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    if resp.status().is_success() {
        Ok(resp.json().await.unwrap())
    } else {
        Err(resp.status().as_u16())
    }
}

/// Posts a request for read-logs with the session cookie, and the given CSRF token and origin.
async fn ask(
    s: &TestServer,
    cookie: &str,
    csrf: Option<&str>,
    origin: Option<&str>,
) -> (u16, Value) {
    let mut req = http()
        .post(format!("http://{}/v1/requests", s.addr))
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/json")
        .body(
            r#"{"entitlement": "demo/read-logs", "duration": "15m", "reason": "from the browser"}"#,
        );
    if let Some(t) = csrf {
        req = req.header("x-csrf-token", t);
    }
    if let Some(o) = origin {
        req = req.header(header::ORIGIN, o);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_person_signs_in_acts_with_the_csrf_token_and_signs_out_everywhere() {
    let s = demo_server().await;
    let base = format!("http://{}", s.addr);
    // A session id planted before sign-in is not kept.
    let planted =
        "hourglass-session=hgs_0000000000000000000000000000000000000000000000000000000000000000";
    let (cookie, set) = sign_in(&s, "alice", Some(planted)).await;
    assert_ne!(cookie, planted);
    assert!(cookie.starts_with("hourglass-session=hgs_"), "{set}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP on loopback: {set}");
    assert_eq!(session(&s, planted).await.unwrap_err(), 401);
    let me = session(&s, &cookie).await.unwrap();
    assert_eq!((me.principal.as_str(), me.via.as_str()), ("alice", "demo"));

    // Without the CSRF token, or from another origin: 403, nothing written.
    let before = s.client("admin").audit(0).await.unwrap().len();
    let (status, body) = ask(&s, &cookie, None, Some(&base)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("auth.csrf")));
    let (status, _) = ask(
        &s,
        &cookie,
        Some(&me.csrf_token),
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = ask(&s, &cookie, Some(&"0".repeat(64)), Some(&base)).await;
    assert_eq!(status, 403);
    assert_eq!(s.client("admin").audit(0).await.unwrap().len(), before);
    // With both: the person's request, as from any client.
    let (status, body) = ask(&s, &cookie, Some(&me.csrf_token), Some(&base)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["requester"], "alice");

    // The session is in the store: the page shows it; sign-out without the token is refused.
    let page = http()
        .get(format!("{base}/signin"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert!(
        page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Signed in as <strong>alice</strong>")
    );
    let out = |token: String| {
        http()
            .post(format!("{base}/signout"))
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, &base)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("csrf_token={token}"))
            .send()
    };
    assert_eq!(
        out("nope".into()).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert!(session(&s, &cookie).await.is_ok());
    let resp = out(me.csrf_token.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(
        resp.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(session(&s, &cookie).await.unwrap_err(), 401);
    let (status, body) = ask(&s, &cookie, Some(&me.csrf_token), Some(&base)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("auth.session_ended"))
    );

    // Both ends are in the audit, and no session id is.
    let audit = s.client("admin").audit(0).await.unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .filter(|e| e.action.starts_with("session."))
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(actions, ["session.started", "session.ended"]);
    let id = cookie.split_once('=').unwrap().1;
    assert!(!serde_json::to_string(&audit).unwrap().contains(id));
    s.stop().await;
}

#[tokio::test]
async fn an_idle_session_ends_and_only_people_sign_in_only_where_allowed() {
    let s = demo_server().await;
    let (cookie, _) = sign_in(&s, "bob", None).await;
    s.clock.advance_ms(29 * 60_000);
    assert!(
        session(&s, &cookie).await.is_ok(),
        "used within the idle timeout"
    );
    s.clock.advance_ms(29 * 60_000);
    assert!(session(&s, &cookie).await.is_ok(), "the last use counts");
    s.clock.advance_ms(31 * 60_000);
    assert_eq!(session(&s, &cookie).await.unwrap_err(), 401);

    // Workloads and agents do not sign in; a post from another site is refused.
    let base = format!("http://{}", s.addr);
    for (who, origin, want) in [
        ("ci-deployer", base.as_str(), 403),
        ("alice", "https://evil.example", 403),
        ("nobody", base.as_str(), 403),
    ] {
        let resp = http()
            .post(format!("{base}/signin/demo"))
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("principal={who}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want, "{who} from {origin}");
    }
    s.stop().await;

    // Without demo_sign_in there is no such route.
    let plain = spawn_server_with(|_, text| text).await.unwrap();
    let resp = http()
        .post(format!("http://{}/signin/demo", plain.addr))
        .body("principal=alice")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let page = http()
        .get(format!("http://{}/signin", plain.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("No identity provider is configured"),
        "{page}"
    );
    plain.stop().await;
}

/// Reads changes from `events` until `done` holds for one (or about 10 s pass, failing).
async fn changes_until(
    events: &mut hourglass_client::Events,
    done: impl Fn(&hourglass_api::ChangeView) -> bool,
) -> Vec<hourglass_api::ChangeView> {
    let mut seen = Vec::new();
    loop {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), events.next())
            .await
            .expect("a change arrives")
            .unwrap()
            .expect("the stream stays open");
        let stop = done(&next);
        seen.push(next);
        if stop {
            return seen;
        }
    }
}

/// The change stream shows each caller the changes to what they may see, as they happen, from
/// every writer, and resumes after the last id a client saw.
#[tokio::test]
async fn the_change_stream_shows_each_caller_what_they_may_see_and_resumes() {
    let s = demo_server().await;
    let (alice, bob, deployer) = (s.client("alice"), s.client("bob"), s.client("ci-deployer"));
    let mut a = alice.events(None).await.unwrap();
    let mut b = bob.events(None).await.unwrap();

    let mine = alice
        .create_request(&hourglass_api::CreateRequest {
            entitlement: "demo/ops-admin".into(),
            duration: Some("30m".into()),
            reason: "deploy the fix".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Someone else's request, which alice may neither approve nor administer.
    let theirs = deployer
        .create_request(&hourglass_api::CreateRequest {
            entitlement: "demo/read-logs".into(),
            duration: Some("10m".into()),
            reason: "nightly job".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let approved = bob.approve(&mine.id, None).await.unwrap();
    let gid = approved.grant_id.clone().unwrap();

    // alice: her request's changes and her grant's, through activation; never the other one.
    let seen = changes_until(&mut a, |c| {
        c.subject == gid && c.action == "grant.activated"
    })
    .await;
    assert!(
        seen.iter()
            .any(|c| c.subject == mine.id && c.action == "request.created"),
        "{seen:?}"
    );
    let theirs_grant = theirs.grant_id.clone().unwrap_or_default();
    assert!(
        !seen
            .iter()
            .any(|c| c.subject == theirs.id || c.subject == theirs_grant),
        "{seen:?}"
    );
    // bob, an approver, sees both requests.
    let seen_b = changes_until(&mut b, |c| c.subject == theirs.id).await;
    assert!(seen_b.iter().any(|c| c.subject == mine.id), "{seen_b:?}");

    // Resuming after the first change alice saw gives the ones after it, in order.
    let first = seen[0].seq;
    let mut again = alice.events(Some(first)).await.unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), again.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next, seen[1]);
    s.stop().await;
}

/// The demo's sign-in answers only requests that name this server by a loopback name: a page on
/// another name resolved to 127.0.0.1 (DNS rebinding) is refused, whatever its Origin says.
#[tokio::test]
async fn the_demo_sign_in_refuses_a_rebound_host_name() {
    let s = demo_server().await;
    let evil = format!("evil.example:{}", s.addr.port());
    let resp = http()
        .post(format!("http://{}/signin/demo", s.addr))
        .header(header::HOST, &evil)
        .header(header::ORIGIN, format!("http://{evil}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("principal=admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.headers().get(header::SET_COOKIE).is_none());
    // By its loopback name it works.
    let (cookie, _) = sign_in(&s, "admin", None).await;
    assert!(session(&s, &cookie).await.is_ok());
}

/// Two replicas on one PostgreSQL store: a session started on one is served by the other, and
/// signing out on either ends it on both.
#[tokio::test]
async fn a_session_is_served_by_every_replica_and_sign_out_ends_it_on_all() {
    let Some(db) = hourglass_testdb::postgres().await else {
        return;
    };
    let url = db.url.clone();
    let s = spawn_server(move |text| {
        format!(
            "{}\n[web]\ndemo_sign_in = true\n",
            text.replace(
                "url = \"sqlite://hourglass.db\"",
                &format!("url = \"{url}\"")
            )
        )
    })
    .await
    .unwrap();
    let config = hourglass_server::config::Config::load(&s.config, Vec::new()).unwrap();
    let other = hourglass_server::start(
        config,
        std::sync::Arc::clone(&s.clock) as std::sync::Arc<dyn hourglass_core::Clock>,
    )
    .await
    .unwrap();
    let b = format!("http://{}", other.addr);
    let (cookie, _) = sign_in(&s, "alice", None).await;
    // The other replica knows the session.
    let me: SessionView = http()
        .get(format!("{b}/v1/session"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me.principal, "alice");
    // Signing out there ends it here too.
    let out = http()
        .post(format!("{b}/signout"))
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, &b)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("csrf_token={}", me.csrf_token))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(session(&s, &cookie).await.unwrap_err(), 401);
    other.stop().await;
    s.stop().await;
}
