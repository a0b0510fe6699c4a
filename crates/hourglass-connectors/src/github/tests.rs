//! GitHub cannot run here: a local server speaks the REST API as far as the connector uses it
//! (the App's JWT verified against its public key, installation tokens, team memberships,
//! collaborators and their invitations, organisation roles, `Link` paging, a rate limit with
//! `x-ratelimit-remaining: 0`).

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
    http::{HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, get, post},
};
use base64::Engine as _;
use hourglass_core::connector::{Connector, Presence};
use serde_json::{Value, json};

use super::{GithubConfig, GithubConnector, kind};
use crate::testutil::{FixedClock, spec, wall_clock};

#[derive(Default)]
struct Org {
    public_key: Vec<u8>,
    /// login → role (`admin`, `member`).
    members: BTreeMap<String, String>,
    teams: BTreeMap<String, BTreeSet<String>>,
    /// login → permission.
    collaborators: BTreeMap<String, String>,
    /// invitation id → (login, permission).
    invitations: BTreeMap<i64, (String, String)>,
    throttle: bool,
    throttled: u32,
    base: String,
}

type Shared = Arc<Mutex<Org>>;

fn authed(h: &HeaderMap) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer ghs_installation")
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})),
    )
        .into_response()
}

async fn token(State(s): State<Shared>, h: HeaderMap, Path(id): Path<String>) -> Response {
    let jwt = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let parts: Vec<&str> = jwt.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let key = s.lock().unwrap().public_key.clone();
    let signed = parts.len() == 3
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
    let span = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    if !signed || claims["iss"] != "1234" || id != "5678" || span > 600 {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "A JSON web token could not be decoded"})),
        )
            .into_response();
    }
    (
        StatusCode::CREATED,
        Json(json!({"token": "ghs_installation", "expires_at": "2099-01-01T00:00:00Z"})),
    )
        .into_response()
}

async fn team_membership(
    State(s): State<Shared>,
    h: HeaderMap,
    method: Method,
    Path((_org, team, user)): Path<(String, String, String)>,
) -> Response {
    if !authed(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut o = s.lock().unwrap();
    let members = o.teams.entry(team).or_default();
    match method {
        Method::PUT => {
            members.insert(user);
            Json(json!({"state": "active", "role": "member"})).into_response()
        }
        Method::DELETE => {
            members.remove(&user);
            StatusCode::NO_CONTENT.into_response()
        }
        _ if members.contains(&user) => {
            Json(json!({"state": "active", "role": "member"})).into_response()
        }
        _ => not_found(),
    }
}

fn paged(base: &str, path: &str, all: Vec<Value>, q: &BTreeMap<String, String>) -> Response {
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let items: Vec<Value> = all.iter().skip((page - 1) * 2).take(2).cloned().collect();
    let mut resp = Json(items).into_response();
    if page * 2 < all.len() {
        let sep = if path.contains('?') { '&' } else { '?' };
        let link = format!(
            "<{base}{path}{sep}page={}>; rel=\"next\", <{base}{path}{sep}page=9>; rel=\"last\"",
            page + 1
        );
        resp.headers_mut().insert("link", link.parse().unwrap());
    }
    resp
}

async fn team_members(
    State(s): State<Shared>,
    h: HeaderMap,
    Path((org, team)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if !authed(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let o = s.lock().unwrap();
    let all = o
        .teams
        .get(&team)
        .into_iter()
        .flatten()
        .map(|l| json!({"login": l}))
        .collect();
    paged(
        &o.base,
        &format!("/orgs/{org}/teams/{team}/members?per_page=100"),
        all,
        &q,
    )
}

async fn org_members(
    State(s): State<Shared>,
    h: HeaderMap,
    Path(org): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if !authed(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut o = s.lock().unwrap();
    if o.throttle {
        o.throttle = false;
        o.throttled += 1;
        let reset = (wall_clock().unix_millis() / 1000).to_string();
        return (
            StatusCode::FORBIDDEN,
            [
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-reset", reset),
            ],
            Json(json!({"message": "API rate limit exceeded"})),
        )
            .into_response();
    }
    let all = o
        .members
        .iter()
        .filter(|(_, r)| *r == "admin")
        .map(|(l, _)| json!({"login": l}))
        .collect();
    paged(
        &o.base,
        &format!("/orgs/{org}/members?role=admin&per_page=100"),
        all,
        &q,
    )
}

async fn org_membership(
    State(s): State<Shared>,
    h: HeaderMap,
    method: Method,
    Path((_org, user)): Path<(String, String)>,
    body: String,
) -> Response {
    if !authed(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut o = s.lock().unwrap();
    match method {
        Method::PUT => {
            let role = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["role"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "member".into());
            o.members.insert(user, role.clone());
            Json(json!({"state": "active", "role": role})).into_response()
        }
        Method::DELETE => {
            o.members.remove(&user);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => match o.members.get(&user) {
            Some(r) => Json(json!({"state": "active", "role": r})).into_response(),
            None => not_found(),
        },
    }
}

async fn collaborator(
    State(s): State<Shared>,
    h: HeaderMap,
    method: Method,
    Path((_o, _r, user)): Path<(String, String, String)>,
    body: String,
) -> Response {
    if !authed(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut o = s.lock().unwrap();
    match method {
        Method::PUT => {
            let perm = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["permission"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "push".into());
            if o.members.contains_key(&user) {
                o.collaborators.insert(user, perm);
                StatusCode::NO_CONTENT.into_response()
            } else {
                let id = 40 + i64::try_from(o.invitations.len()).unwrap();
                o.invitations.insert(id, (user.clone(), perm.clone()));
                (
                    StatusCode::CREATED,
                    Json(json!({"id": id, "invitee": {"login": user}, "permissions": perm})),
                )
                    .into_response()
            }
        }
        Method::DELETE => {
            o.collaborators.remove(&user);
            StatusCode::NO_CONTENT.into_response()
        }
        _ if o.collaborators.contains_key(&user) => StatusCode::NO_CONTENT.into_response(),
        _ => not_found(),
    }
}

async fn collaborators(
    State(s): State<Shared>,
    h: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if !authed(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let o = s.lock().unwrap();
    let level = |p: &str| {
        ["pull", "triage", "push", "maintain", "admin"]
            .iter()
            .position(|x| *x == p)
            .unwrap_or(0)
    };
    let all = o
        .collaborators
        .iter()
        .map(|(l, p)| {
            let perms: serde_json::Map<String, Value> =
                ["pull", "triage", "push", "maintain", "admin"]
                    .iter()
                    .map(|x| ((*x).to_owned(), json!(level(x) <= level(p))))
                    .collect();
            json!({"login": l, "permissions": perms})
        })
        .collect();
    paged(
        &o.base,
        &format!("/repos/{owner}/{repo}/collaborators?affiliation=direct&per_page=100"),
        all,
        &q,
    )
}

async fn invitations(State(s): State<Shared>, h: HeaderMap) -> Response {
    if !authed(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let o = s.lock().unwrap();
    Json(
        o.invitations
            .keys()
            .map(|id| json!({"id": id}))
            .collect::<Vec<_>>(),
    )
    .into_response()
}

async fn invitation(
    State(s): State<Shared>,
    h: HeaderMap,
    Path((_o, _r, id)): Path<(String, String, i64)>,
) -> Response {
    if !authed(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match s.lock().unwrap().invitations.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => not_found(),
    }
}

/// The fake GitHub; its URL, state and the App's key file.
async fn github() -> (String, Shared, tempfile::TempDir) {
    let state: Shared = Arc::default();
    let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(key.as_der().unwrap().as_ref())
    );
    std::fs::write(dir.path().join("app.pem"), pem).unwrap();
    let app = Router::new()
        .route("/app/installations/{id}/access_tokens", post(token))
        .route(
            "/orgs/{org}/teams/{team}/memberships/{user}",
            any(team_membership),
        )
        .route("/orgs/{org}/teams/{team}/members", get(team_members))
        .route("/orgs/{org}/members", get(org_members))
        .route("/orgs/{org}/memberships/{user}", any(org_membership))
        .route("/repos/{o}/{r}/collaborators/{user}", any(collaborator))
        .route("/repos/{o}/{r}/collaborators", get(collaborators))
        .route("/repos/{o}/{r}/invitations", get(invitations))
        .route(
            "/repos/{o}/{r}/invitations/{id}",
            axum::routing::delete(invitation),
        )
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    {
        let mut o = state.lock().unwrap();
        o.public_key = key.public_key().as_ref().to_vec();
        o.base = base.clone();
        for (l, r) in [
            ("octo-root", "admin"),
            ("alice-gh", "member"),
            ("carol-gh", "admin"),
        ] {
            o.members.insert(l.into(), r.into());
        }
    }
    (base, state, dir)
}

fn config(base: &str, dir: &tempfile::TempDir) -> GithubConfig {
    GithubConfig {
        org: "acme".into(),
        app_id: "1234".into(),
        installation_id: "5678".into(),
        private_key_file: dir.path().join("app.pem"),
        users: [
            ("alice", "alice-gh"),
            ("bob", "bob-gh"),
            ("carol", "carol-gh"),
        ]
        .into_iter()
        .map(|(p, l)| (p.to_owned(), l.to_owned()))
        .collect(),
        api_url: base.to_owned(),
        allow_private: true,
        timeout_secs: 5,
    }
}

fn entitlements() -> Vec<(String, Value)> {
    vec![
        ("github/oncall".into(), json!({"team": "oncall"})),
        (
            "github/deploy".into(),
            json!({"repository": "acme/deploy", "permission": "push"}),
        ),
        ("github/owner".into(), json!({"org_role": "admin"})),
    ]
}

#[tokio::test]
async fn team_repository_and_owner_access_come_and_go_for_the_window() {
    let (base, state, dir) = github().await;
    let gh = GithubConnector::new(
        &config(&base, &dir),
        &entitlements(),
        FixedClock::at(wall_clock()),
    )
    .unwrap();
    let ents = entitlements();
    // A team.
    let t = spec("alice", "github/oncall", ents[0].1.clone(), 30);
    assert_eq!(gh.inspect(&t).await.unwrap(), Presence::Absent);
    gh.grant(&t).await.unwrap();
    assert_eq!(gh.inspect(&t).await.unwrap(), Presence::Present);
    gh.revoke(&t).await.unwrap();
    gh.revoke(&t).await.unwrap();
    assert_eq!(gh.inspect(&t).await.unwrap(), Presence::Absent);

    // A repository, for someone outside the organisation: an invitation, withdrawn at the end.
    let mut r = spec("bob", "github/deploy", ents[1].1.clone(), 30);
    let out = gh.grant(&r).await.unwrap();
    r.handle = out.handle;
    assert_eq!(r.handle.as_ref().unwrap()["invitation"], 40);
    assert_eq!(
        gh.inspect(&r).await.unwrap(),
        Presence::Present,
        "a pending invitation is access"
    );
    gh.revoke(&r).await.unwrap();
    assert!(state.lock().unwrap().invitations.is_empty());
    assert_eq!(gh.inspect(&r).await.unwrap(), Presence::Absent);
    // And for a member: a collaborator, removed at the end.
    let mut m = spec("alice", "github/deploy", ents[1].1.clone(), 30);
    m.handle = gh.grant(&m).await.unwrap().handle;
    assert_eq!(
        state
            .lock()
            .unwrap()
            .collaborators
            .get("alice-gh")
            .map(String::as_str),
        Some("push")
    );
    gh.revoke(&m).await.unwrap();
    assert!(!state.lock().unwrap().collaborators.contains_key("alice-gh"));

    // Owner for the window: a member goes back to member, an outsider leaves again.
    let mut o = spec("alice", "github/owner", ents[2].1.clone(), 30);
    o.handle = gh.grant(&o).await.unwrap().handle;
    assert_eq!(state.lock().unwrap().members["alice-gh"], "admin");
    // Granting again (after a crash) keeps what to restore.
    o.handle = gh.grant(&o).await.unwrap().handle;
    assert_eq!(o.handle.as_ref().unwrap()["restore"], "member");
    gh.revoke(&o).await.unwrap();
    assert_eq!(state.lock().unwrap().members["alice-gh"], "member");
    let mut x = spec("bob", "github/owner", ents[2].1.clone(), 30);
    x.handle = gh.grant(&x).await.unwrap().handle;
    assert_eq!(gh.inspect(&x).await.unwrap(), Presence::Present);
    gh.revoke(&x).await.unwrap();
    assert!(!state.lock().unwrap().members.contains_key("bob-gh"));
    assert_eq!(gh.inspect(&x).await.unwrap(), Presence::Absent);
    // An owner already: the window's end takes nothing away from her.
    let mut c = spec("carol", "github/owner", ents[2].1.clone(), 30);
    c.handle = gh.grant(&c).await.unwrap().handle;
    gh.revoke(&c).await.unwrap();
    assert_eq!(state.lock().unwrap().members["carol-gh"], "admin");
    assert!(matches!(
        gh.prove_revoked(&c).await.unwrap(),
        hourglass_core::connector::RevocationProof::Verified { .. }
    ));
}

#[tokio::test]
async fn owners_and_team_members_are_discovered_through_pages_and_a_rate_limit() {
    let (base, state, dir) = github().await;
    let gh = GithubConnector::new(
        &config(&base, &dir),
        &entitlements(),
        FixedClock::at(wall_clock()),
    )
    .unwrap();
    {
        let mut o = state.lock().unwrap();
        o.members.insert("dave-gh".into(), "admin".into());
        o.teams.insert(
            "oncall".into(),
            ["carol-gh", "x1", "x2"]
                .into_iter()
                .map(str::to_owned)
                .collect(),
        );
        o.throttle = true;
    }
    let found = gh.discover().await.unwrap();
    assert_eq!(state.lock().unwrap().throttled, 1);
    let owners: BTreeSet<_> = found
        .iter()
        .filter(|h| h.privilege == "owner of acme")
        .map(|h| h.holder.as_str())
        .collect();
    assert_eq!(
        owners,
        ["carol-gh", "dave-gh", "octo-root"].into_iter().collect()
    );
    let carol = found
        .iter()
        .find(|h| h.holder == "carol-gh" && h.privilege == "owner of acme")
        .unwrap();
    assert_eq!(
        (carol.principal.as_deref(), carol.entitlement.as_deref()),
        (Some("carol"), Some("github/owner"))
    );
    let team: Vec<_> = found
        .iter()
        .filter(|h| h.privilege == "member of team oncall")
        .collect();
    assert_eq!(team.len(), 3, "{found:?}");
}

#[tokio::test]
async fn a_wrong_app_key_or_a_person_without_a_login_is_refused_clearly() {
    let (base, _state, dir) = github().await;
    let other = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(other.as_der().unwrap().as_ref())
    );
    let mut cfg = config(&base, &dir);
    let gh = GithubConnector::new(&cfg, &entitlements(), FixedClock::at(wall_clock())).unwrap();
    let e = gh
        .grant(&spec("zed", "github/oncall", json!({"team": "oncall"}), 30))
        .await
        .unwrap_err();
    assert!(e.message.contains("zed has no GitHub login"), "{e}");
    std::fs::write(dir.path().join("other.pem"), pem).unwrap();
    cfg.private_key_file = dir.path().join("other.pem");
    let gh = GithubConnector::new(&cfg, &entitlements(), FixedClock::at(wall_clock())).unwrap();
    let e = gh
        .grant(&spec(
            "alice",
            "github/oncall",
            json!({"team": "oncall"}),
            30,
        ))
        .await
        .unwrap_err();
    assert!(e.message.contains("installation token: 401"), "{e}");
    for bad in [
        json!({}),
        json!({"repository": "nope"}),
        json!({"repository": "a/b", "permission": "write"}),
        json!({"org_role": "member"}),
        json!({"team": "a", "org_role": "admin"}),
    ] {
        assert!(kind(&bad).is_err(), "{bad}");
    }
}
