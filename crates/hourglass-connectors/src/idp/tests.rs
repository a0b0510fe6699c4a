//! Okta, Microsoft Graph and Google cannot run here: a local server speaks their documented
//! APIs as far as the connector uses them (the shapes, paging by `Link`, `@odata.nextLink` and
//! `nextPageToken`, their answers for "already a member" and "not found", a `429` with
//! `X-Rate-Limit-Reset` or `Retry-After`, and each one's authentication: Okta's `SSWS` token,
//! Entra's client credentials, Google's service-account assertion, verified).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use aws_lc_rs::{
    encoding::AsDer,
    rsa::{KeyPair, KeySize},
    signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey},
};
use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use base64::Engine as _;
use hourglass_core::connector::{Connector, Presence};
use serde_json::{Value, json};

use super::{EntraConfig, GoogleConfig, GroupConnector, OktaConfig, People};
use crate::testutil::{FixedClock, spec, wall_clock};

/// The directory: groups of sign-in names, the known users, and the calls' authentication.
#[derive(Default)]
struct Directory {
    users: BTreeSet<String>,
    groups: BTreeMap<String, Vec<String>>,
    /// Answer the next member listing with a 429 once.
    throttle: bool,
    throttled: u32,
    google_key: Vec<u8>,
    base: String,
}

type Shared = Arc<Mutex<Directory>>;

fn page(all: &[String], from: usize) -> (Vec<String>, Option<usize>) {
    let end = (from + 2).min(all.len());
    (all[from..end].to_vec(), (end < all.len()).then_some(end))
}

fn authed(h: &HeaderMap, want: &str) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(want)
}

fn throttled(d: &mut Directory, header: (&'static str, String)) -> Option<Response> {
    if d.throttle {
        d.throttle = false;
        d.throttled += 1;
        return Some((StatusCode::TOO_MANY_REQUESTS, [header], "slow down").into_response());
    }
    None
}

// --- Okta ---------------------------------------------------------------------------------

async fn okta_user(State(s): State<Shared>, h: HeaderMap, Path(login): Path<String>) -> Response {
    if !authed(&h, "SSWS okta-token") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"errorCode": "E0000011", "errorSummary": "Invalid token provided"})),
        )
            .into_response();
    }
    if s.lock().unwrap().users.contains(&login) {
        Json(json!({"id": format!("00u{login}"), "profile": {"login": login}})).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({"errorCode": "E0000007", "errorSummary": "Not found: Resource not found"})),
        )
            .into_response()
    }
}

async fn okta_member(
    State(s): State<Shared>,
    h: HeaderMap,
    method: axum::http::Method,
    Path((g, id)): Path<(String, String)>,
) -> Response {
    if !authed(&h, "SSWS okta-token") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let login = id.trim_start_matches("00u").to_owned();
    let mut d = s.lock().unwrap();
    let members = d.groups.entry(g).or_default();
    if method == axum::http::Method::PUT {
        if !members.contains(&login) {
            members.push(login);
        }
    } else {
        members.retain(|m| *m != login);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn okta_members(
    State(s): State<Shared>,
    h: HeaderMap,
    Path(g): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if !authed(&h, "SSWS okta-token") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut d = s.lock().unwrap();
    let reset = (wall_clock().unix_millis() / 1000).to_string();
    if let Some(r) = throttled(&mut d, ("x-rate-limit-reset", reset)) {
        return r;
    }
    let all = d.groups.get(&g).cloned().unwrap_or_default();
    let from = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let (items, next) = page(&all, from);
    let body: Vec<Value> = items
        .iter()
        .map(|l| json!({"id": format!("00u{l}"), "profile": {"login": l}}))
        .collect();
    let mut resp = Json(body).into_response();
    let mut link = format!(
        "<{}/api/v1/groups/{g}/users?limit=200>; rel=\"self\"",
        d.base
    );
    if let Some(n) = next {
        link.push_str(&format!(
            ", <{}/api/v1/groups/{g}/users?limit=200&after={n}>; rel=\"next\"",
            d.base
        ));
    }
    resp.headers_mut().insert("link", link.parse().unwrap());
    resp
}

// --- Microsoft Graph ----------------------------------------------------------------------

async fn entra_token(body: String) -> Response {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    if form.get("client_secret").map(String::as_str) == Some("entra-secret")
        && form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form.get("scope").map(String::as_str) == Some("https://graph.microsoft.com/.default")
    {
        Json(json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "graph-token"}))
            .into_response()
    } else {
        (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}))).into_response()
    }
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn graph_user(State(s): State<Shared>, h: HeaderMap, Path(upn): Path<String>) -> Response {
    if !authed(&h, "Bearer graph-token") {
        return graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty.",
        );
    }
    if s.lock().unwrap().users.contains(&upn) {
        Json(json!({"id": format!("id-{upn}")})).into_response()
    } else {
        graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            "Resource does not exist",
        )
    }
}

async fn graph_add(
    State(s): State<Shared>,
    h: HeaderMap,
    Path(g): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    if !authed(&h, "Bearer graph-token") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let id = body["@odata.id"].as_str().unwrap_or_default();
    let upn = id
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .trim_start_matches("id-")
        .to_owned();
    let mut d = s.lock().unwrap();
    let members = d.groups.entry(g).or_default();
    if members.contains(&upn) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            "One or more added object references already exist for the following modified properties: 'members'.",
        );
    }
    members.push(upn);
    StatusCode::NO_CONTENT.into_response()
}

async fn graph_remove(
    State(s): State<Shared>,
    h: HeaderMap,
    Path((g, id)): Path<(String, String)>,
) -> Response {
    if !authed(&h, "Bearer graph-token") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let upn = id.trim_start_matches("id-").to_owned();
    let mut d = s.lock().unwrap();
    let members = d.groups.entry(g).or_default();
    if !members.contains(&upn) {
        return graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            "Resource does not exist",
        );
    }
    members.retain(|m| *m != upn);
    StatusCode::NO_CONTENT.into_response()
}

async fn graph_members(
    State(s): State<Shared>,
    h: HeaderMap,
    Path(g): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if !authed(&h, "Bearer graph-token") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut d = s.lock().unwrap();
    if let Some(r) = throttled(&mut d, ("retry-after", "0".into())) {
        return r;
    }
    let all = d.groups.get(&g).cloned().unwrap_or_default();
    let from = q
        .get("$skiptoken")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let (items, next) = page(&all, from);
    let mut body = json!({"value": items.iter().map(|u| json!({"@odata.type": "#microsoft.graph.user", "id": format!("id-{u}"), "userPrincipalName": u})).collect::<Vec<_>>()});
    if let Some(n) = next {
        body["@odata.nextLink"] = json!(format!(
            "{}/v1.0/groups/{g}/members?$select=id,userPrincipalName&$skiptoken={n}",
            d.base
        ));
    }
    Json(body).into_response()
}

// --- Google -------------------------------------------------------------------------------

async fn google_token(State(s): State<Shared>, body: String) -> Response {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let assertion = form.get("assertion").cloned().unwrap_or_default();
    let parts: Vec<&str> = assertion.split('.').collect();
    let key = s.lock().unwrap().google_key.clone();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let ok = parts.len() == 3
        && form.get("grant_type").map(String::as_str)
            == Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        && UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &key)
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &b64.decode(parts[2]).unwrap_or_default(),
            )
            .is_ok();
    let claims: Value = b64
        .decode(parts.get(1).unwrap_or(&""))
        .ok()
        .and_then(|c| serde_json::from_slice(&c).ok())
        .unwrap_or(Value::Null);
    if ok
        && claims["sub"] == "admin@example.com"
        && claims["scope"] == super::GOOGLE_SCOPE
        && claims["iss"] == "hourglass@proj.iam.gserviceaccount.com"
    {
        Json(json!({"access_token": "google-token", "expires_in": 3599, "token_type": "Bearer"}))
            .into_response()
    } else {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})),
        )
            .into_response()
    }
}

fn google_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": status.as_u16(), "message": message}})),
    )
        .into_response()
}

async fn google_members(
    State(s): State<Shared>,
    h: HeaderMap,
    method: axum::http::Method,
    Path(g): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    body: String,
) -> Response {
    if !authed(&h, "Bearer google-token") {
        return google_error(StatusCode::UNAUTHORIZED, "Login Required.");
    }
    let mut d = s.lock().unwrap();
    if method == axum::http::Method::POST {
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let email = v["email"].as_str().unwrap_or_default().to_owned();
        if !d.users.contains(&email) {
            return google_error(StatusCode::NOT_FOUND, "Resource Not Found: memberKey");
        }
        let members = d.groups.entry(g).or_default();
        if members.contains(&email) {
            return google_error(StatusCode::CONFLICT, "Member already exists.");
        }
        members.push(email.clone());
        return Json(json!({"kind": "admin#directory#member", "email": email, "role": "MEMBER"}))
            .into_response();
    }
    if let Some(r) = throttled(&mut d, ("retry-after", "0".into())) {
        return r;
    }
    let all = d.groups.get(&g).cloned().unwrap_or_default();
    let from = q.get("pageToken").and_then(|a| a.parse().ok()).unwrap_or(0);
    let (items, next) = page(&all, from);
    let mut body = json!({"kind": "admin#directory#members", "members": items.iter().map(|e| json!({"email": e, "role": "MEMBER", "type": "USER"})).collect::<Vec<_>>()});
    if let Some(n) = next {
        body["nextPageToken"] = json!(n.to_string());
    }
    Json(body).into_response()
}

async fn google_member(
    State(s): State<Shared>,
    h: HeaderMap,
    Path((g, m)): Path<(String, String)>,
) -> Response {
    if !authed(&h, "Bearer google-token") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut d = s.lock().unwrap();
    let members = d.groups.entry(g).or_default();
    if !members.contains(&m) {
        return google_error(StatusCode::NOT_FOUND, "Resource Not Found: memberKey");
    }
    members.retain(|x| *x != m);
    StatusCode::NO_CONTENT.into_response()
}

async fn google_has(
    State(s): State<Shared>,
    h: HeaderMap,
    Path((g, m)): Path<(String, String)>,
) -> Response {
    if !authed(&h, "Bearer google-token") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let d = s.lock().unwrap();
    if !d.users.contains(&m) {
        return google_error(StatusCode::NOT_FOUND, "Resource Not Found: memberKey");
    }
    Json(json!({"isMember": d.groups.get(&g).is_some_and(|ms| ms.contains(&m))})).into_response()
}

/// The three directories on one local server; its URL and state.
async fn directory() -> (String, Shared) {
    let state: Shared = Arc::default();
    let app = Router::new()
        .route("/api/v1/users/{login}", get(okta_user))
        .route(
            "/api/v1/groups/{g}/users/{id}",
            put(okta_member).delete(okta_member),
        )
        .route("/api/v1/groups/{g}/users", get(okta_members))
        .route("/tenant-1/oauth2/v2.0/token", post(entra_token))
        .route("/v1.0/users/{upn}", get(graph_user))
        .route("/v1.0/groups/{g}/members/$ref", post(graph_add))
        .route(
            "/v1.0/groups/{g}/members/{id}/$ref",
            axum::routing::delete(graph_remove),
        )
        .route("/v1.0/groups/{g}/members", get(graph_members))
        .route("/token", post(google_token))
        .route(
            "/admin/directory/v1/groups/{g}/members",
            get(google_members).post(google_members),
        )
        .route(
            "/admin/directory/v1/groups/{g}/members/{m}",
            axum::routing::delete(google_member),
        )
        .route(
            "/admin/directory/v1/groups/{g}/hasMember/{m}",
            get(google_has),
        )
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    {
        let mut d = state.lock().unwrap();
        d.base = base.clone();
        for u in [
            "alice@example.com",
            "bob@example.com",
            "carol@example.com",
            "dave@example.com",
        ] {
            d.users.insert(u.into());
        }
        // Standing members nobody granted.
        d.groups.insert(
            "admins".into(),
            vec!["carol@example.com".into(), "dave@example.com".into()],
        );
    }
    (base, state)
}

fn people() -> People {
    People {
        users: BTreeMap::new(),
        email_domain: Some("example.com".into()),
        allow_private: true,
        timeout_secs: 5,
    }
}

fn admins() -> Vec<(String, Value)> {
    vec![("idp/admins".to_owned(), json!({"group": "admins"}))]
}

/// Grant, check, list (paged, through a 429), revoke, revoke again, for one directory.
async fn round_trip(c: &GroupConnector, state: &Shared) {
    let s = spec("alice", "idp/admins", json!({"group": "admins"}), 30);
    assert_eq!(c.inspect(&s).await.unwrap(), Presence::Absent);
    let out = c.grant(&s).await.unwrap();
    assert_eq!(out.handle.unwrap()["member"], "alice@example.com");
    c.grant(&s).await.unwrap(); // already a member: fine
    state.lock().unwrap().throttle = true;
    assert_eq!(c.inspect(&s).await.unwrap(), Presence::Present);
    // Discovery: every member over two pages; alice maps back to her principal.
    state.lock().unwrap().throttle = true;
    let found = c.discover().await.unwrap();
    let mut holders: Vec<_> = found.iter().map(|h| h.holder.clone()).collect();
    holders.sort();
    assert_eq!(
        holders,
        ["alice@example.com", "carol@example.com", "dave@example.com"]
    );
    let alice = found
        .iter()
        .find(|h| h.holder == "alice@example.com")
        .unwrap();
    assert_eq!(
        (alice.principal.as_deref(), alice.entitlement.as_deref()),
        (Some("alice"), Some("idp/admins"))
    );
    assert!(
        state.lock().unwrap().throttled >= 1,
        "the 429 was waited out"
    );
    c.revoke(&s).await.unwrap();
    c.revoke(&s).await.unwrap(); // already gone: fine
    assert_eq!(c.inspect(&s).await.unwrap(), Presence::Absent);
    assert!(matches!(
        c.prove_revoked(&s).await.unwrap(),
        hourglass_core::connector::RevocationProof::Verified { .. }
    ));
    // Someone the directory does not know is refused, naming them.
    let zed = spec("zed", "idp/admins", json!({"group": "admins"}), 30);
    let e = c.grant(&zed).await.unwrap_err();
    assert!(e.message.contains("zed@example.com"), "{e}");
}

#[tokio::test]
async fn okta_groups_are_granted_paged_and_removed() {
    let (base, state) = directory().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("okta"), "okta-token\n").unwrap();
    let cfg = OktaConfig {
        url: base,
        token_file: Some(dir.path().join("okta")),
        token_env: None,
        people: people(),
    };
    let c = GroupConnector::okta(&cfg, &admins(), FixedClock::at(wall_clock())).unwrap();
    round_trip(&c, &state).await;
    // A wrong token is a clear error.
    std::fs::write(dir.path().join("okta"), "wrong").unwrap();
    let bad = GroupConnector::okta(&cfg, &admins(), FixedClock::at(wall_clock())).unwrap();
    let e = bad
        .grant(&spec("bob", "idp/admins", json!({"group": "admins"}), 30))
        .await
        .unwrap_err();
    assert!(e.message.contains("401"), "{e}");
}

#[tokio::test]
async fn entra_groups_go_through_graph_with_client_credentials() {
    let (base, state) = directory().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "entra-secret").unwrap();
    let cfg = EntraConfig {
        tenant: "tenant-1".into(),
        client_id: "app-1".into(),
        client_secret_file: Some(dir.path().join("secret")),
        client_secret_env: None,
        graph_url: base.clone(),
        login_url: base,
        people: people(),
    };
    let c = GroupConnector::entra(&cfg, &admins(), FixedClock::at(wall_clock())).unwrap();
    round_trip(&c, &state).await;
    std::fs::write(dir.path().join("secret"), "nope").unwrap();
    let bad = GroupConnector::entra(&cfg, &admins(), FixedClock::at(wall_clock())).unwrap();
    let e = bad
        .inspect(&spec("bob", "idp/admins", json!({"group": "admins"}), 30))
        .await
        .unwrap_err();
    assert!(e.message.contains("Invalid client secret"), "{e}");
}

#[tokio::test]
async fn google_groups_go_through_the_directory_api_with_a_service_account() {
    let (base, state) = directory().await;
    let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
    state.lock().unwrap().google_key = key.public_key().as_ref().to_vec();
    let der = key.as_der().unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der.as_ref())
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sa.json");
    std::fs::write(
        &file,
        json!({"type": "service_account", "client_email": "hourglass@proj.iam.gserviceaccount.com", "private_key": pem, "token_uri": format!("{base}/token")}).to_string(),
    )
    .unwrap();
    let cfg = GoogleConfig {
        service_account_file: file,
        subject: "admin@example.com".into(),
        directory_url: base,
        token_url: None,
        people: people(),
    };
    let c = GroupConnector::google(&cfg, &admins(), FixedClock::at(wall_clock())).unwrap();
    round_trip(&c, &state).await;
}

#[test]
fn a_group_target_needs_a_group_and_a_way_to_name_people() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t"), "x").unwrap();
    let mut p = people();
    p.email_domain = None;
    let cfg = OktaConfig {
        url: "http://127.0.0.1:9".into(),
        token_file: Some(dir.path().join("t")),
        token_env: None,
        people: p,
    };
    let problems = GroupConnector::okta(
        &cfg,
        &[("idp/x".into(), json!({}))],
        FixedClock::at(wall_clock()),
    )
    .unwrap_err();
    assert!(problems[0].contains("params.group"), "{problems:?}");
    let c = GroupConnector::okta(&cfg, &admins(), FixedClock::at(wall_clock())).unwrap();
    let e = c.login("alice").unwrap_err();
    assert!(
        e.message.contains("add it to users, or set email_domain"),
        "{e}"
    );
}

#[test]
fn configuration_reads_the_shared_keys_and_refuses_unknown_ones() {
    let ok: OktaConfig = serde_json::from_value(json!({
        "url": "https://example.okta.com", "token_env": "OKTA_TOKEN",
        "email_domain": "example.com", "users": {"alice": "a.smith@example.com"}
    }))
    .unwrap();
    assert_eq!(ok.people.email_domain.as_deref(), Some("example.com"));
    assert_eq!(ok.people.users["alice"], "a.smith@example.com");
    assert_eq!(ok.people.timeout_secs, 10);
    let e = serde_json::from_value::<OktaConfig>(json!({"url": "https://x", "tokenfile": "t"}))
        .unwrap_err();
    assert!(e.to_string().contains("tokenfile"), "{e}");
}
