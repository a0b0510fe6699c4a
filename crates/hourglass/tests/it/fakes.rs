//! Local stand-ins for systems that cannot run here, speaking their real protocols: a ticket
//! desk with the Jira REST API v3 and the ServiceNow Table API (payload shapes from their public
//! documentation), an HTTP receiver that records what notifiers post, and an SMTP listener that
//! records mail.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

#[derive(Default)]
struct Desk {
    jira: BTreeMap<String, Value>,
    incidents: BTreeMap<String, Value>,
    down: bool,
    lookups: u32,
}

/// Jira and ServiceNow on one local port.
pub struct TicketDesk {
    pub addr: SocketAddr,
    state: Arc<Mutex<Desk>>,
}

/// The credentials the desk accepts (Jira Cloud: email and API token, as basic auth).
pub const DESK_USER: &str = "hourglass@example.com";
pub const DESK_TOKEN: &str = "desk-api-token-0001";

fn authorized(h: &HeaderMap) -> bool {
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{DESK_USER}:{DESK_TOKEN}"))
    );
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str())
}

async fn jira_issue(
    State(s): State<Arc<Mutex<Desk>>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut d = s.lock().unwrap();
    d.lookups += 1;
    if d.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    match d.jira.get(&key) {
        Some(issue) => Json(issue.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}})),
        )
            .into_response(),
    }
}

async fn snow_table(
    State(s): State<Arc<Mutex<Desk>>>,
    Path(table): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut d = s.lock().unwrap();
    d.lookups += 1;
    if d.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if !authorized(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"})),
        )
            .into_response();
    }
    assert_eq!(table, "incident");
    assert_eq!(
        q.get("sysparm_display_value").map(String::as_str),
        Some("all")
    );
    let number = q
        .get("sysparm_query")
        .and_then(|s| s.strip_prefix("number="))
        .unwrap_or_default();
    let rows: Vec<Value> = d.incidents.get(number).cloned().into_iter().collect();
    Json(json!({ "result": rows })).into_response()
}

impl TicketDesk {
    pub async fn start() -> TicketDesk {
        let state = Arc::new(Mutex::new(Desk::default()));
        let app = Router::new()
            .route("/rest/api/3/issue/{key}", get(jira_issue))
            .route("/api/now/table/{table}", get(snow_table))
            .with_state(Arc::clone(&state));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TicketDesk { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A Jira issue as `GET /rest/api/3/issue/{key}` returns it.
    pub fn jira(key: &str, status: &str, category: &str, account: Option<&str>) -> Value {
        json!({
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": "10002",
            "self": format!("https://example.atlassian.net/rest/api/3/issue/{key}"),
            "key": key,
            "fields": {
                "status": {
                    "self": "https://example.atlassian.net/rest/api/3/status/3",
                    "name": status,
                    "id": "3",
                    "statusCategory": {"id": 4, "key": category, "colorName": "yellow", "name": status}
                },
                "assignee": account.map(|a| json!({
                    "accountId": a,
                    "displayName": a,
                    "active": true,
                    "accountType": "atlassian"
                })),
                "priority": {"name": "High", "id": "2"}
            }
        })
    }

    pub fn put_jira(&self, issue: Value) {
        let key = issue["key"].as_str().unwrap().to_owned();
        self.state.lock().unwrap().jira.insert(key, issue);
    }

    /// An incident as the Table API returns it with `sysparm_display_value=all`.
    pub fn incident(number: &str, state: (&str, &str), user: Option<&str>, group: &str) -> Value {
        json!({
            "number": {"display_value": number, "value": number},
            "state": {"display_value": state.1, "value": state.0},
            "priority": {"display_value": "3 - Moderate", "value": "3"},
            "assigned_to.user_name": user.map_or(json!({"display_value": "", "value": ""}), |u| json!({"display_value": u, "value": u})),
            "assignment_group.name": {"display_value": group, "value": group}
        })
    }

    pub fn put_incident(&self, row: Value) {
        let n = row["number"]["value"].as_str().unwrap().to_owned();
        self.state.lock().unwrap().incidents.insert(n, row);
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    pub fn lookups(&self) -> u32 {
        self.state.lock().unwrap().lookups
    }
}

/// A Jira `jira:issue_updated` webhook body for a status change.
pub fn jira_webhook(issue: &Value, from: &str) -> Value {
    json!({
        "timestamp": 1_800_000_000_000_i64,
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic",
        "user": {"accountId": "acc-agent", "displayName": "Service Desk Agent"},
        "issue": issue,
        "changelog": {"id": "10100", "items": [{
            "field": "status", "fieldtype": "jira",
            "from": "3", "fromString": from,
            "to": "10001", "toString": issue["fields"]["status"]["name"]
        }]}
    })
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Inbox {
    got: Vec<Received>,
    status: Option<StatusCode>,
}

/// Records every POST; answers 200, or the status it is told to fail with.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<Inbox>>,
}

async fn receive(
    State(s): State<Arc<Mutex<Inbox>>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut inbox = s.lock().unwrap();
    inbox.got.push(Received {
        path,
        headers,
        body: body.to_vec(),
    });
    inbox.status.unwrap_or(StatusCode::OK).into_response()
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(Mutex::new(Inbox::default()));
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(Arc::clone(&state));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    pub fn fail_with(&self, status: Option<StatusCode>) {
        self.state.lock().unwrap().status = status;
    }

    pub fn got(&self) -> Vec<Received> {
        self.state.lock().unwrap().got.clone()
    }
}

/// One mail an SMTP client handed over.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// A minimal SMTP server (RFC 5321: EHLO, MAIL, RCPT, DATA, QUIT) that keeps every mail.
pub struct SmtpListener {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
}

async fn smtp_session(stream: tokio::net::TcpStream, mails: Arc<Mutex<Vec<Mail>>>) {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let _ = w.write_all(b"220 localhost ESMTP test\r\n").await;
    let (mut from, mut to) = (String::new(), Vec::new());
    while let Ok(Some(line)) = lines.next_line().await {
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250-localhost\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = line[10..].trim().trim_matches(['<', '>']).to_owned();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(line[8..].trim().trim_matches(['<', '>']).to_owned());
            b"250 OK\r\n"
        } else if upper == "DATA" {
            let _ = w.write_all(b"354 end with .\r\n").await;
            let mut data = String::new();
            while let Ok(Some(l)) = lines.next_line().await {
                if l == "." {
                    break;
                }
                data.push_str(&l);
                data.push('\n');
            }
            mails.lock().unwrap().push(Mail {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                data,
            });
            b"250 OK queued\r\n"
        } else if upper == "QUIT" {
            let _ = w.write_all(b"221 bye\r\n").await;
            return;
        } else if upper == "RSET" || upper == "NOOP" {
            b"250 OK\r\n"
        } else {
            b"502 not implemented\r\n"
        };
        if w.write_all(reply).await.is_err() {
            return;
        }
    }
}

impl SmtpListener {
    pub async fn start() -> SmtpListener {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let m = Arc::clone(&mails);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(smtp_session(stream, Arc::clone(&m)));
            }
        });
        SmtpListener { addr, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

/// One Web API call the fake Slack got.
#[derive(Debug, Clone)]
pub struct SlackCall {
    pub method: String,
    pub body: Value,
}

#[derive(Default)]
struct SlackWorkspace {
    calls: Vec<SlackCall>,
    /// Slack user id → email.
    emails: BTreeMap<String, String>,
    /// Calls still to be refused with 429 and `Retry-After: 1`.
    limited: u32,
    next_ts: u64,
}

/// The Slack Web API as Slack documents it: bearer token, JSON bodies for write methods and
/// form fields for `users.*`, `{"ok": false, "error": …}` on HTTP 200 for refusals, and 429 with
/// `Retry-After` when rate-limited.
pub struct SlackApi {
    pub addr: SocketAddr,
    state: Arc<Mutex<SlackWorkspace>>,
}

pub const SLACK_TOKEN: &str = "xoxb-test-0001-bot-token";
pub const SLACK_SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

async fn slack_method(
    State(s): State<Arc<Mutex<SlackWorkspace>>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut w = s.lock().unwrap();
    if w.limited > 0 {
        w.limited -= 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            axum::Json(serde_json::json!({"ok": false, "error": "ratelimited"})),
        )
            .into_response();
    }
    let ok = |v: Value| axum::Json(v).into_response();
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {SLACK_TOKEN}"))
    {
        return ok(serde_json::json!({"ok": false, "error": "invalid_auth"}));
    }
    let form = headers.get("content-type").is_some_and(|v| {
        v.as_bytes()
            .starts_with(b"application/x-www-form-urlencoded")
    });
    let body: Value = if form {
        Value::Object(
            url::form_urlencoded::parse(&body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect(),
        )
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return ok(serde_json::json!({"ok": false, "error": "invalid_json"})),
        }
    };
    if method.starts_with("users.") != form {
        return ok(serde_json::json!({"ok": false, "error": "invalid_arguments"}));
    }
    w.calls.push(SlackCall {
        method: method.clone(),
        body: body.clone(),
    });
    let s = |k: &str| body[k].as_str().unwrap_or("").to_owned();
    match method.as_str() {
        "chat.postMessage" => {
            w.next_ts += 1;
            let ts = format!("1800000000.{:06}", w.next_ts);
            ok(
                serde_json::json!({"ok": true, "channel": s("channel"), "ts": ts, "message": {"text": s("text")}}),
            )
        }
        "chat.update" => {
            ok(serde_json::json!({"ok": true, "channel": s("channel"), "ts": s("ts")}))
        }
        "chat.postEphemeral" => {
            ok(serde_json::json!({"ok": true, "message_ts": "1800000000.999999"}))
        }
        "views.open" => ok(serde_json::json!({"ok": true, "view": {"id": "V0001"}})),
        "users.info" => match w.emails.get(&s("user")) {
            Some(email) => ok(
                serde_json::json!({"ok": true, "user": {"id": s("user"), "profile": {"email": email}}}),
            ),
            None => ok(serde_json::json!({"ok": false, "error": "user_not_found"})),
        },
        "users.lookupByEmail" => match w.emails.iter().find(|(_, e)| **e == s("email")) {
            Some((id, _)) => ok(serde_json::json!({"ok": true, "user": {"id": id}})),
            None => ok(serde_json::json!({"ok": false, "error": "users_not_found"})),
        },
        _ => ok(serde_json::json!({"ok": false, "error": "unknown_method"})),
    }
}

impl SlackApi {
    pub async fn start(emails: &[(&str, &str)]) -> SlackApi {
        let state = Arc::new(Mutex::new(SlackWorkspace {
            emails: emails
                .iter()
                .map(|(u, e)| ((*u).to_owned(), (*e).to_owned()))
                .collect(),
            ..SlackWorkspace::default()
        }));
        let app = Router::new()
            .route("/api/{method}", post(slack_method))
            .with_state(Arc::clone(&state));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SlackApi { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    pub fn calls(&self, method: &str) -> Vec<Value> {
        let w = self.state.lock().unwrap();
        w.calls
            .iter()
            .filter(|c| c.method == method)
            .map(|c| c.body.clone())
            .collect()
    }

    /// Refuses the next `n` calls with 429.
    pub fn rate_limit(&self, n: u32) {
        self.state.lock().unwrap().limited = n;
    }
}

/// PagerDuty's REST API key and an Events API v2 routing key (32 characters).
pub const PAGERDUTY_TOKEN: &str = "y_NbAkKc66ryYTWUXYEu";
pub const PAGERDUTY_ROUTING_KEY: &str = "R0123456789abcdef0123456789abcde";
/// An Opsgenie API integration key.
pub const OPSGENIE_KEY: &str = "eb243592-faa2-4ba2-a551q-1afdf565c889";

#[derive(Default)]
struct Duty {
    /// Who is on call: email and escalation level.
    on_call: Vec<(String, u64)>,
    /// Answer reads after this long (longer than the client waits: a timeout).
    hang: Option<std::time::Duration>,
    /// Events API calls still to be refused with 429 and `Retry-After: 1`.
    limited: u32,
    reads: u32,
    events: Vec<Value>,
}

/// PagerDuty on one port: the REST API v2 `GET /oncalls` (token auth, the v2 `Accept` header,
/// `include[]=users`, pages of at most two entries as `limit`/`offset`/`more` say) and the
/// Events API v2 `POST /v2/enqueue` (202 with `dedup_key`, 400 `invalid event` with `errors`,
/// 429).
pub struct PagerDuty {
    pub addr: SocketAddr,
    state: Arc<Mutex<Duty>>,
}

fn pd_error(status: StatusCode, message: &str, code: u32) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "code": code}})),
    )
        .into_response()
}

async fn pd_oncalls(
    State(s): State<Arc<Mutex<Duty>>>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let hang = s.lock().unwrap().hang;
    if let Some(d) = hang {
        tokio::time::sleep(d).await;
    }
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    if header("authorization") != format!("Token token={PAGERDUTY_TOKEN}") {
        return pd_error(StatusCode::UNAUTHORIZED, "Authentication failed", 2006);
    }
    if header("accept") != "application/vnd.pagerduty+json;version=2" {
        return pd_error(StatusCode::BAD_REQUEST, "Invalid Accept header", 2001);
    }
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let get = |k: &str| {
        pairs
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    if get("schedule_ids[]").is_empty() && get("escalation_policy_ids[]").is_empty() {
        return pd_error(StatusCode::BAD_REQUEST, "Invalid Input Provided", 2001);
    }
    let with_users = get("include[]").contains(&"users".to_owned());
    let offset: usize = get("offset")
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // PagerDuty answers fewer than asked for when it likes; the `limit` it answers is the page.
    let limit: usize = get("limit")
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
        .min(2);
    let mut d = s.lock().unwrap();
    d.reads += 1;
    let all: Vec<Value> = d
        .on_call
        .iter()
        .enumerate()
        .map(|(i, (email, level))| {
            let user = if with_users {
                json!({"id": format!("PU{i}"), "type": "user", "name": email, "email": email})
            } else {
                json!({"id": format!("PU{i}"), "type": "user_reference", "summary": email})
            };
            json!({
                "escalation_policy": {"id": "PEP0001", "type": "escalation_policy_reference"},
                "escalation_level": level,
                "schedule": {"id": "PSCH001", "type": "schedule_reference"},
                "user": user,
                "start": "2026-12-01T00:00:00Z",
                "end": "2026-12-02T00:00:00Z"
            })
        })
        .collect();
    let page: Vec<Value> = all.iter().skip(offset).take(limit).cloned().collect();
    Json(json!({
        "oncalls": page,
        "limit": limit,
        "offset": offset,
        "more": offset + limit < all.len(),
        "total": null
    }))
    .into_response()
}

async fn pd_enqueue(State(s): State<Arc<Mutex<Duty>>>, body: axum::body::Bytes) -> Response {
    let mut d = s.lock().unwrap();
    if d.limited > 0 {
        d.limited -= 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            Json(json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly."})),
        )
            .into_response();
    }
    let invalid = |why: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"status": "invalid event", "message": "Event object is invalid", "errors": [why]})),
        )
            .into_response()
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return invalid("Event object is not JSON");
    };
    if v["routing_key"].as_str().map(str::len) != Some(32) {
        return invalid("'routing_key' must be a 32 character Integration or Ruleset Key");
    }
    let action = v["event_action"].as_str().unwrap_or("");
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        return invalid("'event_action' is invalid");
    }
    if action == "trigger" {
        for k in ["summary", "source", "severity"] {
            if v["payload"][k].as_str().is_none_or(str::is_empty) {
                return invalid(&format!("'payload.{k}' is missing or blank"));
            }
        }
        if !["critical", "error", "warning", "info"]
            .contains(&v["payload"]["severity"].as_str().unwrap_or(""))
        {
            return invalid("'payload.severity' is invalid");
        }
    } else if v["dedup_key"].as_str().is_none_or(str::is_empty) {
        return invalid("'dedup_key' is required");
    }
    let key = v["dedup_key"]
        .as_str()
        .unwrap_or("generated-key")
        .to_owned();
    d.events.push(v);
    (
        StatusCode::ACCEPTED,
        Json(json!({"status": "success", "message": "Event processed", "dedup_key": key})),
    )
        .into_response()
}

impl PagerDuty {
    pub async fn start() -> PagerDuty {
        let state = Arc::new(Mutex::new(Duty::default()));
        let app = Router::new()
            .route("/oncalls", get(pd_oncalls))
            .route("/v2/enqueue", post(pd_enqueue))
            .with_state(Arc::clone(&state));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        PagerDuty { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_on_call(&self, people: &[(&str, u64)]) {
        self.state.lock().unwrap().on_call =
            people.iter().map(|(e, l)| ((*e).to_owned(), *l)).collect();
    }

    pub fn hang(&self, for_: Option<std::time::Duration>) {
        self.state.lock().unwrap().hang = for_;
    }

    pub fn rate_limit(&self, n: u32) {
        self.state.lock().unwrap().limited = n;
    }

    pub fn reads(&self) -> u32 {
        self.state.lock().unwrap().reads
    }

    pub fn events(&self) -> Vec<Value> {
        self.state.lock().unwrap().events.clone()
    }
}

#[derive(Default)]
struct Genie {
    /// Schedule name → the user names (emails) on call.
    schedules: BTreeMap<String, Vec<String>>,
    reads: u32,
}

/// Opsgenie's Who Is On Call API: `GET /v2/schedules/{identifier}/on-calls` with
/// `scheduleIdentifierType` and `flat`, `Authorization: GenieKey …`, and its error bodies.
pub struct Opsgenie {
    pub addr: SocketAddr,
    state: Arc<Mutex<Genie>>,
}

async fn genie_on_calls(
    State(s): State<Arc<Mutex<Genie>>>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let err = |status: StatusCode, message: String| {
        (
            status,
            Json(json!({"message": message, "took": 0.002, "requestId": "9ae63dd7-ed00-4c81-86f0-c4ffd33142c9"})),
        )
            .into_response()
    };
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("GenieKey {OPSGENIE_KEY}"))
    {
        return err(StatusCode::UNAUTHORIZED, "Could not authenticate".into());
    }
    let mut g = s.lock().unwrap();
    g.reads += 1;
    // Schedules are kept by name; by id they are `id-<name>`.
    let name = match q.get("scheduleIdentifierType").map(String::as_str) {
        Some("name") => id.clone(),
        None | Some("id") => id.strip_prefix("id-").unwrap_or("").to_owned(),
        Some(other) => {
            return err(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("Invalid schedule identifier type [{other}]"),
            );
        }
    };
    let Some(people) = g.schedules.get(&name) else {
        return err(
            StatusCode::NOT_FOUND,
            format!("Schedule with identifier [{id}] does not exist"),
        );
    };
    let parent = json!({"id": format!("id-{name}"), "name": name, "enabled": true});
    let data = if q.get("flat").map(String::as_str) == Some("true") {
        json!({"_parent": parent, "onCallRecipients": people})
    } else {
        let participants: Vec<Value> = people
            .iter()
            .map(|p| json!({"id": format!("u-{p}"), "name": p, "type": "user"}))
            .collect();
        json!({"_parent": parent, "onCallParticipants": participants})
    };
    Json(json!({"data": data, "took": 0.004, "requestId": "2a5a3bc0-5a2d-4f8f-9c1e-1c7b2f4c9d11"}))
        .into_response()
}

impl Opsgenie {
    pub async fn start() -> Opsgenie {
        let state = Arc::new(Mutex::new(Genie::default()));
        let app = Router::new()
            .route("/v2/schedules/{id}/on-calls", get(genie_on_calls))
            .with_state(Arc::clone(&state));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Opsgenie { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_on_call(&self, schedule: &str, people: &[&str]) {
        self.state.lock().unwrap().schedules.insert(
            schedule.to_owned(),
            people.iter().map(|p| (*p).to_owned()).collect(),
        );
    }

    pub fn reads(&self) -> u32 {
        self.state.lock().unwrap().reads
    }
}
