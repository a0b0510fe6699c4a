//! Slack as a channel, end to end: a local server speaks Slack's Web API (fakes::SlackApi), and
//! the tests post interactivity payloads and commands signed exactly as Slack signs them.
//! Approvals in Slack are judged by the engine like any other; bad input changes nothing.

use hourglass_api::{CreateRequest, RequestState};
use hourglass_core::Clock;
use hourglass_integrations::slack;
use hourglass_testkit::{TestServer, eventually, spawn_server_with};
use serde_json::{Value, json};

use crate::fakes::{SLACK_SIGNING_SECRET, SLACK_TOKEN, SlackApi};

async fn server(api: &SlackApi, extra_policy: Option<&'static str>) -> TestServer {
    let url = api.url();
    spawn_server_with(move |dir, text| {
        std::fs::write(dir.join("slack.token"), format!("{SLACK_TOKEN}\n")).unwrap();
        std::fs::write(dir.join("slack.secret"), SLACK_SIGNING_SECRET).unwrap();
        if let Some(p) = extra_policy {
            std::fs::write(dir.join("policies/extra.cedar"), p).unwrap();
        }
        format!(
            r#"{text}
[notifications]
public_url = "https://hourglass.example.com"

[[chat]]
name = "slack"
kind = "slack"
bot_token = {{ file = "slack.token" }}
signing_secret = {{ file = "slack.secret" }}
team_id = "T0001"
channel = "C0APPROVERS"
users = {{ U0BOB = "bob", U0CAROL = "carol" }}
email_domain = "example.com"
api_url = "{url}"
allow_private = true
max_retry_wait = "5s"

[[identities]]
name = "carol"
kind = "human"
groups = ["requesters"]
"#
        )
    })
    .await
    .unwrap()
}

fn emails() -> [(&'static str, &'static str); 3] {
    [
        ("U0ALICE", "alice@example.com"),
        ("U0ADMIN", "admin@example.com"),
        ("U0NOBODY", "nobody@elsewhere.example"),
    ]
}

fn form(payload: &Value) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
}

/// Posts `body` to `path` signed as Slack signs it, `skew` seconds from the server's clock.
async fn post_signed(
    s: &TestServer,
    path: &str,
    body: &str,
    skew: i64,
    secret: &str,
) -> reqwest::Response {
    let ts = (s.clock.now().unix_millis() / 1000 + skew).to_string();
    let sig = slack::sign(secret.as_bytes(), &ts, body.as_bytes());
    reqwest::Client::new()
        .post(format!("http://{}{path}", s.addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(slack::TIMESTAMP_HEADER, ts)
        .header(slack::SIGNATURE_HEADER, sig)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn send(s: &TestServer, payload: &Value) -> reqwest::Response {
    post_signed(
        s,
        "/slack/slack/interactions",
        &form(payload),
        0,
        SLACK_SIGNING_SECRET,
    )
    .await
}

/// A modal submitted by `user`: `values` are `action_id` → what was typed or chosen.
fn submission(
    user: &str,
    callback_id: &Value,
    metadata: &Value,
    view: &str,
    values: &[(&str, &str)],
) -> Value {
    let state: serde_json::Map<String, Value> = values
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                json!({ *k: {"type": "plain_text_input", "value": v} }),
            )
        })
        .collect();
    json!({
        "type": "view_submission",
        "user": {"id": user, "team_id": "T0001"},
        "team": {"id": "T0001"},
        "view": {"id": view, "callback_id": callback_id, "private_metadata": metadata,
            "state": {"values": state}}
    })
}

fn click(user: &str, action: &str, value: &str, ts: &str, action_ts: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user, "team_id": "T0001"},
        "team": {"id": "T0001"},
        "trigger_id": format!("trigger-{action_ts}"),
        "container": {"type": "message", "message_ts": ts, "channel_id": "C0APPROVERS"},
        "channel": {"id": "C0APPROVERS"},
        "message": {"ts": ts},
        "actions": [{"action_id": action, "block_id": "decide", "value": value, "type": "button", "action_ts": action_ts}]
    })
}

/// Alice asks for ops-admin; answers the request id and where its Slack message is.
async fn pending(s: &TestServer, api: &SlackApi) -> (String, String) {
    let r = s
        .client("alice")
        .create_request(&CreateRequest {
            entitlement: "demo/ops-admin".into(),
            duration: Some("30m".into()),
            reason: "restart the <stuck> worker".into(),
            ..CreateRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Pending);
    let id = r.id.clone();
    assert!(
        eventually(|| async {
            api.calls("chat.postMessage")
                .iter()
                .any(|c| c["channel"] == "C0APPROVERS" && c.to_string().contains(&id))
        })
        .await,
        "the pending request was not posted"
    );
    let post = api
        .calls("chat.postMessage")
        .into_iter()
        .find(|c| c["channel"] == "C0APPROVERS" && c.to_string().contains(&id))
        .unwrap();
    let text = post.to_string();
    assert!(text.contains(slack::APPROVE) && text.contains(slack::DENY));
    assert!(
        text.contains("&lt;stuck&gt;"),
        "what alice typed is escaped"
    );
    let n = api
        .calls("chat.postMessage")
        .iter()
        .filter(|c| c["channel"] == "C0APPROVERS")
        .count();
    (id, format!("1800000000.{n:06}"))
}

async fn state(s: &TestServer, id: &str) -> RequestState {
    s.client("alice").get_request(id).await.unwrap().state
}

fn updates_saying(api: &SlackApi, ts: &str, text: &str) -> usize {
    api.calls("chat.update")
        .iter()
        .filter(|u| u["ts"] == ts && u.to_string().contains(text))
        .count()
}

async fn approvals(s: &TestServer, id: &str) -> usize {
    s.client("alice")
        .get_request(id)
        .await
        .unwrap()
        .approvals
        .unwrap_or_default()
        .len()
}

/// Whether `user` is eventually shown, only to them, a message containing `text`.
async fn told(api: &SlackApi, user: &str, text: &str) -> bool {
    eventually(|| async { ephemerals_to(api, user).iter().any(|t| t.contains(text)) }).await
}

fn ephemerals_to(api: &SlackApi, user: &str) -> Vec<String> {
    api.calls("chat.postEphemeral")
        .iter()
        .filter(|e| e["user"] == user)
        .map(|e| e["text"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn a_request_approved_in_slack_is_updated_in_place_and_the_requester_hears() {
    let api = SlackApi::start(&emails()).await;
    let s = server(&api, None).await;
    // Slack rate-limits the first post: it is sent after Retry-After, once.
    api.rate_limit(1);
    let (id, ts) = pending(&s, &api).await;

    let r = send(
        &s,
        &click("U0BOB", slack::APPROVE, &id, &ts, "1800000001.000001"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(eventually(|| async { state(&s, &id).await != RequestState::Pending }).await);
    assert!(
        eventually(|| async { updates_saying(&api, &ts, "Approved by bob") > 0 }).await,
        "the message was not updated for everyone"
    );
    // The requester hears in a direct message (found by her email).
    assert!(
        eventually(|| async {
            api.calls("chat.postMessage")
                .iter()
                .any(|c| c["channel"] == "U0ALICE" && c.to_string().contains("approved by bob"))
        })
        .await
    );
    // Slack repeats the click: nothing is done twice.
    let approvals_before = s
        .client("alice")
        .get_request(&id)
        .await
        .unwrap()
        .approvals
        .unwrap_or_default()
        .len();
    let updates_before = api.calls("chat.update").len();
    let mut repeat =
        reqwest::Client::new().post(format!("http://{}/slack/slack/interactions", s.addr));
    let body = form(&click(
        "U0BOB",
        slack::APPROVE,
        &id,
        &ts,
        "1800000001.000001",
    ));
    let at = (s.clock.now().unix_millis() / 1000).to_string();
    repeat = repeat
        .header("content-type", "application/x-www-form-urlencoded")
        .header(slack::TIMESTAMP_HEADER, &at)
        .header(
            slack::SIGNATURE_HEADER,
            slack::sign(SLACK_SIGNING_SECRET.as_bytes(), &at, body.as_bytes()),
        )
        .header(slack::RETRY_HEADER, "1");
    assert_eq!(repeat.body(body).send().await.unwrap().status(), 200);
    let metrics = reqwest::get(format!("http://{}/metrics", s.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(r#"hourglass_chat_requests_total{chat="slack",outcome="repeat"} 1"#));
    assert_eq!(
        s.client("alice")
            .get_request(&id)
            .await
            .unwrap()
            .approvals
            .unwrap_or_default()
            .len(),
        approvals_before
    );
    assert_eq!(api.calls("chat.update").len(), updates_before);
}

#[tokio::test]
async fn bad_input_from_slack_is_refused_and_changes_nothing() {
    let api = SlackApi::start(&emails()).await;
    let s = server(&api, None).await;
    let (id, ts) = pending(&s, &api).await;
    let approve = |user: &str, n: u32| {
        click(
            user,
            slack::APPROVE,
            &id,
            &ts,
            &format!("1800000002.{n:06}"),
        )
    };

    // Forged, stale, unsigned, and from another workspace.
    let body = form(&approve("U0BOB", 1));
    for (skew, secret) in [
        (0, "not the signing secret"),
        (-301, SLACK_SIGNING_SECRET),
        (301, SLACK_SIGNING_SECRET),
    ] {
        let r = post_signed(&s, "/slack/slack/interactions", &body, skew, secret).await;
        assert_eq!(r.status(), 401, "skew {skew}");
    }
    let r = reqwest::Client::new()
        .post(format!("http://{}/slack/slack/interactions", s.addr))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let mut elsewhere = approve("U0BOB", 2);
    elsewhere["team"]["id"] = json!("T0OTHER");
    elsewhere["user"]["team_id"] = json!("T0OTHER");
    assert_eq!(send(&s, &elsewhere).await.status(), 403);
    // Not understood.
    let r = post_signed(
        &s,
        "/slack/slack/interactions",
        "payload=%7Bnot",
        0,
        SLACK_SIGNING_SECRET,
    )
    .await;
    assert_eq!(r.status(), 400);

    // Alice (by her Slack email) may not approve her own request; nobody@ maps to nobody.
    assert_eq!(send(&s, &approve("U0ALICE", 3)).await.status(), 200);
    assert!(told(&api, "U0ALICE", "own request").await);
    assert_eq!(send(&s, &approve("U0NOBODY", 4)).await.status(), 200);
    assert!(told(&api, "U0NOBODY", "not linked").await);
    assert_eq!(state(&s, &id).await, RequestState::Pending);
    assert_eq!(approvals(&s, &id).await, 0);

    // Deny opens a modal for the reason; an empty reason is refused in the modal.
    let deny = click("U0BOB", slack::DENY, &id, &ts, "1800000002.000005");
    assert_eq!(send(&s, &deny).await.status(), 200);
    assert!(
        eventually(|| async {
            api.calls("views.open").iter().any(|v| {
                v["trigger_id"] == "trigger-1800000002.000005" && v.to_string().contains(&id)
            })
        })
        .await
    );
    let modal = api.calls("views.open").last().unwrap()["view"].clone();
    let submit = |reason: &str| {
        submission(
            "U0BOB",
            &modal["callback_id"],
            &modal["private_metadata"],
            "V1",
            &[("reason", reason)],
        )
    };
    let r = send(&s, &submit("  ")).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["response_action"], "errors");
    assert_eq!(state(&s, &id).await, RequestState::Pending);
    // Corrected, the same form is submitted again: that is no repeat.
    assert_eq!(
        send(&s, &submit("not during the freeze")).await.status(),
        200
    );
    assert!(eventually(|| async { state(&s, &id).await == RequestState::Denied }).await);
    assert!(eventually(|| async { updates_saying(&api, &ts, "Denied by bob") > 0 }).await);

    // A click on a decided request changes nothing; the message is refreshed.
    let before = updates_saying(&api, &ts, "Denied by bob");
    assert_eq!(send(&s, &approve("U0ADMIN", 6)).await.status(), 200);
    assert!(told(&api, "U0ADMIN", "not pending").await);
    assert!(eventually(|| async { updates_saying(&api, &ts, "Denied by bob") > before }).await);
    assert_eq!(state(&s, &id).await, RequestState::Denied);
}

#[tokio::test]
async fn where_approving_needs_a_second_factor_a_click_sends_the_approver_to_the_web_app() {
    let api = SlackApi::start(&emails()).await;
    let s = server(
        &api,
        Some(
            "@id(\"approving-ops-admin-needs-mfa\")\n\
             forbid (principal, action == Hourglass::Action::\"Approve\", \
             resource == Hourglass::Entitlement::\"demo/ops-admin\")\n\
             unless { context.mfa };\n",
        ),
    )
    .await;
    let (id, ts) = pending(&s, &api).await;
    assert_eq!(
        send(
            &s,
            &click("U0BOB", slack::APPROVE, &id, &ts, "1800000003.000001")
        )
        .await
        .status(),
        200
    );
    let link = format!("https://hourglass.example.com/inbox/{id}");
    assert!(
        eventually(|| async {
            ephemerals_to(&api, "U0BOB")
                .iter()
                .any(|t| t.contains("second factor") && t.contains(&link))
        })
        .await
    );
    assert_eq!(state(&s, &id).await, RequestState::Pending);
    assert_eq!(approvals(&s, &id).await, 0);
}

#[tokio::test]
async fn the_hourglass_command_opens_a_request_modal_whose_submission_asks() {
    let api = SlackApi::start(&emails()).await;
    let s = server(&api, None).await;
    let command = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("team_id", "T0001")
        .append_pair("user_id", "U0ALICE")
        .append_pair("command", "/hourglass")
        .append_pair("text", "demo/read-logs")
        .append_pair("trigger_id", "trigger-cmd-1")
        .append_pair("channel_id", "D0ALICE")
        .finish();
    let r = post_signed(
        &s,
        "/slack/slack/commands",
        &command,
        0,
        SLACK_SIGNING_SECRET,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        eventually(|| async {
            api.calls("views.open").iter().any(|v| {
                v["trigger_id"] == "trigger-cmd-1"
                    && v["view"]["callback_id"] == slack::REQUEST_MODAL
            })
        })
        .await
    );
    // The access field loads alice's own catalogue as she types.
    let suggest = json!({"type": "block_suggestion", "user": {"id": "U0ALICE", "team_id": "T0001"},
        "team": {"id": "T0001"}, "action_id": "access", "block_id": "access", "value": "logs"});
    let r = post_signed(
        &s,
        "/slack/slack/options",
        &form(&suggest),
        0,
        SLACK_SIGNING_SECRET,
    )
    .await;
    assert_eq!(r.status(), 200);
    let options: Value = r.json().await.unwrap();
    let values: Vec<&str> = options["options"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["value"].as_str())
        .collect();
    assert_eq!(values, ["demo/read-logs"]);

    let submit = |duration: &str| {
        submission(
            "U0ALICE",
            &json!(slack::REQUEST_MODAL),
            &json!(""),
            "V10",
            &[
                ("access", "demo/read-logs"),
                ("duration", duration),
                ("reason", "look at last night's errors"),
                ("ticket", ""),
            ],
        )
    };
    let r = send(&s, &submit("a while")).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["response_action"], "errors");
    assert!(
        s.client("alice")
            .list_requests(None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(send(&s, &submit("15m")).await.status(), 200);
    assert!(
        eventually(|| async {
            api.calls("chat.postMessage").iter().any(|c| {
                c["channel"] == "U0ALICE"
                    && c["text"].as_str().unwrap_or("").contains("demo/read-logs")
            })
        })
        .await,
        "alice was not told what happens next"
    );
    let mine = s.client("alice").list_requests(None).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].entitlement, "demo/read-logs");
    assert_eq!(mine[0].reason, "look at last night's errors");
    // The same submission again asks nothing twice.
    assert_eq!(send(&s, &submit("15m")).await.status(), 200);
    assert_eq!(
        s.client("alice").list_requests(None).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn a_request_decided_outside_slack_is_updated_in_slack_too() {
    let api = SlackApi::start(&emails()).await;
    let s = server(&api, None).await;
    let (id, ts) = pending(&s, &api).await;
    s.client("bob").approve(&id, None).await.unwrap();
    assert!(
        eventually(|| async { updates_saying(&api, &ts, "Approved by bob") > 0 }).await,
        "the Slack message of a request approved through the API was not updated"
    );
    let update = api
        .calls("chat.update")
        .into_iter()
        .find(|u| u["ts"] == ts)
        .unwrap();
    assert_eq!(update["channel"], "C0APPROVERS");
    assert!(
        !update.to_string().contains(slack::APPROVE),
        "a decided request has no buttons"
    );
}

#[tokio::test]
async fn a_grants_holder_extends_and_releases_it_from_slack() {
    use hourglass_api::GrantState;
    let api = SlackApi::start(&emails()).await;
    let s = server(&api, None).await;
    let (id, ts) = pending(&s, &api).await;
    s.client("bob").approve(&id, None).await.unwrap();
    let alice = s.client("alice");
    let grant = crate::lifecycle::active_grant(&alice, &id).await;
    // Extend opens a form; a duration that is not one is refused in it, then the corrected form
    // asks for the extension.
    let extend = json!({
        "type": "block_actions",
        "user": {"id": "U0ALICE", "team_id": "T0001"}, "team": {"id": "T0001"},
        "trigger_id": "trigger-extend", "channel": {"id": "D0ALICE"}, "message": {"ts": ts},
        "actions": [{"action_id": slack::EXTEND, "value": grant, "type": "button", "action_ts": "1800000009.000001"}]
    });
    assert_eq!(send(&s, &extend).await.status(), 200);
    assert!(
        eventually(|| async {
            api.calls("views.open").iter().any(|v| {
                v["trigger_id"] == "trigger-extend"
                    && v["view"]["callback_id"] == slack::EXTEND_MODAL
            })
        })
        .await
    );
    let form = |by: &str| {
        submission(
            "U0ALICE",
            &json!(slack::EXTEND_MODAL),
            &json!(grant),
            "V20",
            &[("by", by), ("reason", "the fix needs longer")],
        )
    };
    let v: Value = send(&s, &form("longer")).await.json().await.unwrap();
    assert_eq!(v["errors"]["by"], "Use a duration such as 30m, 1h or 4h.");
    assert_eq!(send(&s, &form("15m")).await.status(), 200);
    assert!(
        eventually(|| async {
            alice
                .list_requests(None)
                .await
                .unwrap()
                .iter()
                .any(|r| r.extends.as_deref() == Some(grant.as_str()))
        })
        .await,
        "no extension was asked for"
    );
    // Bob may not release alice's grant; alice may.
    let release = |user: &str, n: u32| {
        json!({
            "type": "block_actions",
            "user": {"id": user, "team_id": "T0001"}, "team": {"id": "T0001"},
            "channel": {"id": "D0ALICE"}, "message": {"ts": ts},
            "actions": [{"action_id": slack::RELEASE, "value": grant, "type": "button",
                "action_ts": format!("1800000009.{n:06}")}]
        })
    };
    assert_eq!(send(&s, &release("U0BOB", 2)).await.status(), 200);
    assert!(
        eventually(|| async {
            ephemerals_to(&api, "U0BOB")
                .iter()
                .any(|t| t.contains("Only its holder") || t.contains("Not released"))
        })
        .await
    );
    assert_eq!(
        alice.get_grant(&grant).await.unwrap().state,
        GrantState::Active
    );
    assert_eq!(send(&s, &release("U0ALICE", 3)).await.status(), 200);
    assert!(
        eventually(|| async {
            matches!(
                alice.get_grant(&grant).await.unwrap().state,
                GrantState::Revoking | GrantState::Revoked
            )
        })
        .await
    );
}

/// Whether alice eventually gets a direct message containing every one of `texts`.
async fn dm_to_alice(api: &SlackApi, texts: &[&str]) -> bool {
    eventually(|| async {
        api.calls("chat.postMessage")
            .iter()
            .any(|c| c["channel"] == "U0ALICE" && texts.iter().all(|t| c.to_string().contains(t)))
    })
    .await
}

#[tokio::test]
async fn the_requester_hears_every_step_and_someone_who_may_not_approve_is_told_so() {
    use hourglass_api::GrantState;
    let api = SlackApi::start(&emails()).await;
    let s = server(&api, None).await;
    let (id, ts) = pending(&s, &api).await;

    // carol is a person Hourglass knows, but no policy lets her approve: she is told, only she,
    // and nothing changes.
    assert_eq!(
        send(
            &s,
            &click("U0CAROL", slack::APPROVE, &id, &ts, "1800000002.000001")
        )
        .await
        .status(),
        200
    );
    assert!(told(&api, "U0CAROL", "Not approved").await);
    assert_eq!(approvals(&s, &id).await, 0);
    assert_eq!(state(&s, &id).await, RequestState::Pending);
    assert_eq!(updates_saying(&api, &ts, "Approved"), 0);

    // Approved elsewhere: alice hears that the access is hers, with a link to reveal it (never
    // the credential), then that it ends soon, with Extend and Release.
    s.client("bob").approve(&id, None).await.unwrap();
    let alice = s.client("alice");
    let grant = crate::lifecycle::active_grant(&alice, &id).await;
    assert!(
        dm_to_alice(
            &api,
            &[
                "now holds demo/ops-admin",
                "https://hourglass.example.com/mine"
            ]
        )
        .await
    );
    // The warning comes 10 minutes before the end of the 30 minutes, not before.
    assert!(
        !api.calls("chat.postMessage")
            .iter()
            .any(|c| c["channel"] == "U0ALICE" && c.to_string().contains("ends at"))
    );
    s.clock.advance_ms(20 * 60_000 + 1_000);
    assert!(dm_to_alice(&api, &["ends at", slack::EXTEND, slack::RELEASE]).await);

    // Slack refuses every call now (429): the revocation is on time all the same, and alice
    // hears of it once Slack answers again.
    api.rate_limit(u32::MAX);
    s.clock.advance_ms(10 * 60_000);
    assert!(
        eventually(|| async {
            alice.get_grant(&grant).await.unwrap().state == GrantState::Revoked
        })
        .await,
        "a rate-limited Slack held up a revocation"
    );
    assert!(!s.access().contains(&grant));
    api.rate_limit(0);
    let told_revoked = || async {
        api.calls("chat.postMessage")
            .iter()
            .any(|c| c["channel"] == "U0ALICE" && c.to_string().contains("is revoked"))
    };
    let mut heard = false;
    for _ in 0..30 {
        // Deliveries are retried on Hourglass's clock.
        s.clock.advance_ms(60_000);
        if eventually(told_revoked).await {
            heard = true;
            break;
        }
    }
    assert!(heard, "alice never heard of the revocation");

    // A request nobody decides expires at its deadline, and alice is told.
    let (late, _) = pending(&s, &api).await;
    s.clock.advance_ms(24 * 3_600_000 + 1_000);
    assert!(eventually(|| async { state(&s, &late).await == RequestState::Expired }).await);
    assert!(dm_to_alice(&api, &["expired: nobody decided"]).await);
}
