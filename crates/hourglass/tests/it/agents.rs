//! Agents ask; they never decide. With a policy set that permits an agent everything and
//! without the demo's `only-humans-approve`, the engine still refuses an agent approving,
//! denying, breaking glass and administering, on every path (the API and Slack), and changes
//! nothing.

use hourglass_core::{Clock, engine::AGENTS_NEVER_DECIDE};
use hourglass_integrations::slack;
use hourglass_testkit::{TestServer, spawn_server_with};
use serde_json::json;

use crate::{
    fakes::{SLACK_SIGNING_SECRET, SLACK_TOKEN, SlackApi},
    lifecycle::{ask, audit_len, problem},
};

/// Everything, for the agent `support-bot`.
const LAX: &str = r#"
@id("lax-for-support-bot")
permit (
  principal == Hourglass::Principal::"support-bot",
  action in [
    Hourglass::Action::"Request", Hourglass::Action::"AutoApprove",
    Hourglass::Action::"Approve", Hourglass::Action::"BreakGlass",
    Hourglass::Action::"Administer", Hourglass::Action::"Extend"
  ],
  resource
);
"#;

async fn server(api: &SlackApi) -> TestServer {
    let url = api.url();
    spawn_server_with(move |dir, text| {
        let demo = std::fs::read_to_string(dir.join("policies/demo.cedar")).unwrap();
        let start = demo.find("// Only people approve.").unwrap();
        let end = start + demo[start..].find("};").unwrap() + 2;
        let without = format!("{}{}", &demo[..start], &demo[end..]);
        assert!(!without.contains("only-humans-approve"));
        std::fs::write(dir.join("policies/demo.cedar"), without).unwrap();
        std::fs::write(dir.join("policies/lax.cedar"), LAX).unwrap();
        std::fs::write(dir.join("slack.token"), SLACK_TOKEN).unwrap();
        std::fs::write(dir.join("slack.secret"), SLACK_SIGNING_SECRET).unwrap();
        format!(
            r#"{text}
[[chat]]
name = "slack"
kind = "slack"
bot_token = {{ file = "slack.token" }}
signing_secret = {{ file = "slack.secret" }}
channel = "C0APPROVERS"
users = {{ U0BOT = "support-bot" }}
api_url = "{url}"
allow_private = true
"#
        )
    })
    .await
    .unwrap()
}

/// An agent's ask, bound to a task as an agent's must be.
pub(crate) fn for_task(mut r: hourglass_api::CreateRequest) -> hourglass_api::CreateRequest {
    r.task = Some("INC-7-triage".into());
    r
}

#[tokio::test]
async fn an_agent_never_approves_denies_breaks_glass_or_administers_whatever_policy_says() {
    let api = SlackApi::start(&[]).await;
    let s = server(&api).await;
    let (alice, bot) = (s.client("alice"), s.client("support-bot"));
    let pending = alice
        .create_request(&ask("demo/ops-admin", "30m", "restart the service"))
        .await
        .unwrap();
    assert_eq!(pending.state, "pending");
    let logs = alice
        .create_request(&ask("demo/read-logs", "30m", "read the logs"))
        .await
        .unwrap();
    let grant = logs.grants.clone().unwrap()[0].id.clone();
    assert!(
        hourglass_testkit::eventually(|| async {
            alice.get_grant(&grant).await.unwrap().state == "active"
        })
        .await
    );
    let before = audit_len(&s).await;

    // Through the API: alice's request is not even visible to it (an approver's view).
    let p = problem(bot.approve(&pending.id, None).await.unwrap_err());
    assert_eq!(
        (p.status, p.code.as_str()),
        (404, "request.not_found"),
        "{p:?}"
    );
    let p = problem(bot.deny(&pending.id, "no").await.unwrap_err());
    assert_eq!(
        (p.status, p.code.as_str()),
        (404, "request.not_found"),
        "{p:?}"
    );
    let mut glass = ask("demo/ops-admin", "15m", "an emergency, allegedly");
    glass.break_glass = true;
    glass.task = Some("INC-7".into());
    let p = problem(bot.create_request(&glass).await.unwrap_err());
    assert_eq!(p.status, 403, "{p:?}");
    assert_eq!(
        problem(bot.revoke(&grant, None).await.unwrap_err()).code,
        "grant.not_found"
    );
    assert_eq!(problem(bot.reconcile().await.unwrap_err()).status, 403);
    assert!(
        bot.audit(0)
            .await
            .unwrap_or_default()
            .iter()
            .all(|e| e.actor == "support-bot")
    );
    // What it may do: ask for itself.
    let own = bot
        .create_request(&for_task(ask(
            "demo/read-logs",
            "10m",
            "summarise the logs",
        )))
        .await
        .unwrap();
    assert_ne!(own.state, "pending");

    // Through Slack: the click is judged by the same engine.
    let payload = json!({
        "type": "block_actions",
        "user": {"id": "U0BOT", "team_id": "T0001"},
        "team": {"id": "T0001"},
        "trigger_id": "trigger-bot",
        "container": {"type": "message", "message_ts": "1800000000.000001", "channel_id": "C0APPROVERS"},
        "channel": {"id": "C0APPROVERS"},
        "message": {"ts": "1800000000.000001"},
        "actions": [{"action_id": slack::APPROVE, "block_id": "decide", "value": pending.id, "type": "button", "action_ts": "1800000001.000001"}]
    });
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish();
    let ts = (s.clock.now().unix_millis() / 1000).to_string();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/slack/slack/interactions", s.addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(slack::TIMESTAMP_HEADER, &ts)
        .header(
            slack::SIGNATURE_HEADER,
            slack::sign(SLACK_SIGNING_SECRET.as_bytes(), &ts, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    assert!(
        hourglass_testkit::eventually(|| async {
            api.calls("chat.postEphemeral")
                .iter()
                .any(|c| c["text"].as_str().unwrap_or("").contains("Not approved"))
        })
        .await,
        "the agent is told, in Slack, that it approved nothing"
    );

    // Nothing changed but the agent's own request.
    assert_eq!(
        alice.get_request(&pending.id).await.unwrap().state,
        "pending"
    );
    assert_eq!(alice.get_grant(&grant).await.unwrap().state, "active");
    let after = s
        .store()
        .unwrap()
        .audit_after(before as u64, 1000)
        .await
        .unwrap();
    // The break-glass refusal names the rule, not a policy of the set.
    let refused = after
        .iter()
        .find(|e| e.record.action == "request.refused")
        .unwrap();
    assert!(
        refused
            .record
            .details
            .iter()
            .any(|(_, v)| v.contains(AGENTS_NEVER_DECIDE)),
        "{:?}",
        refused.record.details
    );
    assert!(
        after
            .iter()
            .all(|e| e.record.subject != pending.id && e.record.subject != grant),
        "{:?}",
        after
            .iter()
            .map(|e| (&e.record.actor, &e.record.action, &e.record.subject))
            .collect::<Vec<_>>()
    );
    s.stop().await;
}

/// `support-bot` may read logs at once for 15 minutes, and ask for ops-admin (a person
/// approves).
pub(crate) const ASKS: &str = r#"
@id("support-bot-asks")
permit (
  principal == Hourglass::Principal::"support-bot",
  action == Hourglass::Action::"Request",
  resource is Hourglass::Entitlement
)
when { resource.target == "demo" };

@id("support-bot-reads-logs-at-once")
permit (
  principal == Hourglass::Principal::"support-bot",
  action == Hourglass::Action::"AutoApprove",
  resource == Hourglass::Entitlement::"demo/read-logs"
)
when { context.duration_secs <= 900 };
"#;

#[tokio::test]
async fn suspending_an_agent_ends_everything_it_holds_in_one_commit() {
    let s = spawn_server_with(|dir, text| {
        std::fs::write(dir.join("policies/asks.cedar"), ASKS).unwrap();
        text
    })
    .await
    .unwrap();
    let (bot, alice) = (s.client("support-bot"), s.client("alice"));
    let logs = bot
        .create_request(&for_task(ask(
            "demo/read-logs",
            "10m",
            "summarise the logs",
        )))
        .await
        .unwrap();
    let grant = logs.grants.clone().unwrap()[0].id.clone();
    assert!(
        hourglass_testkit::eventually(|| async { s.access().contains(&grant) }).await,
        "granted in the target"
    );
    let waiting = bot
        .create_request(&for_task(ask(
            "demo/ops-admin",
            "30m",
            "restart the service",
        )))
        .await
        .unwrap();
    assert_eq!(waiting.state, "pending");

    // Its owner pulls the kill switch.
    let before = audit_len(&s).await;
    alice
        .identity_status::<serde_json::Value>(
            "support-bot",
            "suspend",
            Some("it misbehaved".into()),
        )
        .await
        .unwrap();
    let events = s
        .store()
        .unwrap()
        .audit_after(before as u64, 100)
        .await
        .unwrap();
    let suspended = events
        .iter()
        .find(|e| e.record.action == "identity.suspended")
        .unwrap();
    assert!(
        suspended
            .record
            .details
            .contains(&("grants_revoked".into(), "1".into()))
    );
    assert!(
        suspended
            .record
            .details
            .contains(&("requests_cancelled".into(), "1".into()))
    );
    // The grant's revocation and the request's cancellation are audited with it.
    assert!(
        events
            .iter()
            .any(|e| e.record.action == "grant.revoke_requested" && e.record.subject == grant)
    );
    assert_eq!(
        s.client("admin")
            .get_request(&waiting.id)
            .await
            .unwrap()
            .state,
        "cancelled"
    );
    assert!(
        hourglass_testkit::eventually(|| async { !s.access().contains(&grant) }).await,
        "gone from the target"
    );
    // It cannot act; resumed, it holds nothing.
    assert!(bot.whoami().await.is_err());
    alice
        .identity_status::<serde_json::Value>("support-bot", "resume", Some("fixed".into()))
        .await
        .unwrap();
    assert_eq!(bot.whoami().await.unwrap().principal, "support-bot");
    assert!(bot.list_grants(Some("active")).await.unwrap().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn an_agent_has_its_own_tighter_quotas() {
    let s = spawn_server_with(|dir, text| {
        std::fs::write(dir.join("policies/asks.cedar"), ASKS).unwrap();
        format!("{text}\n[quotas]\nmax_requests_per_hour_per_agent = 2\n")
    })
    .await
    .unwrap();
    let bot = s.client("support-bot");
    let one = bot
        .create_request(&for_task(ask("demo/read-logs", "10m", "one")))
        .await
        .unwrap();
    // Its grant is provisioned in the background: wait, so that the count below is still.
    let grant = one.grants.clone().unwrap()[0].id.clone();
    assert!(
        hourglass_testkit::eventually(|| async {
            bot.get_grant(&grant).await.unwrap().state == "active"
        })
        .await
    );
    let two = bot
        .create_request(&for_task(ask("demo/ops-admin", "10m", "two")))
        .await
        .unwrap();
    // Withdrawn, it still counts among the requests of the hour.
    bot.cancel(&two.id).await.unwrap();
    let before = audit_len(&s).await;
    let p = problem(
        bot.create_request(&for_task(ask("demo/ops-admin", "10m", "three")))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (p.status, p.code.as_str()),
        (429, "quota.principal_requests")
    );
    assert!(p.detail.contains("the most an agent may make"), "{p:?}");
    assert_eq!(
        audit_len(&s).await,
        before,
        "a refusal by quota writes nothing"
    );
    // People keep theirs (60 an hour by default).
    let alice = s.client("alice");
    for reason in ["one", "two", "three"] {
        let r = alice
            .create_request(&ask("demo/ops-admin", "10m", reason))
            .await
            .unwrap();
        alice.cancel(&r.id).await.unwrap();
    }
    s.stop().await;
}
