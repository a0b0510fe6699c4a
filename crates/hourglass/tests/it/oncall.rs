//! On-call schedules and undecided requests, end to end. Local servers speak PagerDuty's REST
//! and Events APIs, Opsgenie's Who Is On Call API, Slack's Web API and a Teams webhook
//! (fakes.rs). `context.oncall` follows the schedule systems and never outlives their answers;
//! a request nobody decides is brought back to its approvers, then escalated, and the page is
//! resolved when someone decides.

use std::time::Duration;

use hourglass_testkit::{TestServer, eventually, spawn_server_with};
use serde_json::Value;

use crate::{
    fakes::{
        OPSGENIE_KEY, Opsgenie, PAGERDUTY_ROUTING_KEY, PAGERDUTY_TOKEN, PagerDuty, Receiver,
        SLACK_SIGNING_SECRET, SLACK_TOKEN, SlackApi,
    },
    lifecycle::ask,
    notifications::advance,
};

async fn metric(s: &TestServer, line: &str) -> bool {
    s.client("admin")
        .metrics()
        .await
        .unwrap()
        .lines()
        .any(|l| l == line)
}

/// The value of a metric line, or 0.
async fn metric_value(s: &TestServer, series: &str) -> u64 {
    s.client("admin")
        .metrics()
        .await
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Asks for the on-call profile; answers its state, and revokes what it granted.
async fn triage(s: &TestServer, why: &str) -> String {
    let alice = s.client("alice");
    let r = alice
        .create_request(&ask("incident/triage", "30m", why))
        .await
        .unwrap();
    if let Some(grants) = r.grants.clone().filter(|g| !g.is_empty()) {
        let ids: Vec<String> = grants.iter().map(|g| g.id.clone()).collect();
        for g in &ids {
            assert!(
                eventually(|| async { alice.get_grant(g).await.unwrap().state == "active" }).await
            );
        }
        alice.revoke(&ids[0], Some("done".into())).await.unwrap();
        for g in &ids {
            assert!(
                eventually(|| async { alice.get_grant(g).await.unwrap().state == "revoked" }).await
            );
        }
    } else if r.state == "pending" {
        alice.cancel(&r.id).await.unwrap();
    }
    r.state.as_str().to_owned()
}

#[tokio::test]
async fn on_call_follows_pagerduty_and_opsgenie_and_an_unreachable_source_puts_nobody_on_call() {
    let pd = PagerDuty::start().await;
    let genie = Opsgenie::start().await;
    // Three entries: PagerDuty pages them two at a time.
    pd.set_on_call(&[
        ("bob@example.com", 1),
        ("Alice@Example.com", 1),
        ("admin@example.com", 2),
    ]);
    genie.set_on_call("ops_schedule", &[]);
    let (pd_url, genie_url) = (pd.url(), genie.url());
    let s = spawn_server_with(move |dir, text| {
        std::fs::write(dir.join("pd.token"), PAGERDUTY_TOKEN).unwrap();
        std::fs::write(dir.join("genie.key"), OPSGENIE_KEY).unwrap();
        format!(
            r#"{text}
[[oncall]]
name = "pd"
kind = "pagerduty"
token = {{ file = "pd.token" }}
schedules = ["PSCH001"]
max_level = 1
api_url = "{pd_url}"
refresh = "1m"
ttl = "5m"
timeout = "1s"
email_domain = "example.com"
allow_private = true

[[oncall]]
name = "ops"
kind = "opsgenie"
token = {{ file = "genie.key" }}
schedules = ["ops_schedule"]
by_name = true
api_url = "{genie_url}"
refresh = "1m"
ttl = "5m"
timeout = "1s"
users = {{ "carol.ops@example.net" = "alice" }}
allow_private = true
"#
        )
    })
    .await
    .unwrap();
    assert!(
        eventually(|| async {
            metric(
                &s,
                "hourglass_oncall_reads_total{source=\"pd\",outcome=\"ok\"} 1",
            )
            .await
                && metric(
                    &s,
                    "hourglass_oncall_reads_total{source=\"ops\",outcome=\"ok\"} 1",
                )
                .await
        })
        .await
    );
    // Two pages of /oncalls were read.
    assert_eq!(pd.reads(), 2);
    assert!(metric(&s, "hourglass_oncall_source_up{source=\"pd\"} 1").await);

    // PagerDuty puts alice (by her address in the domain) on call: policy approves at once.
    assert_eq!(triage(&s, "INC-1").await, "fulfilled");

    // PagerDuty stops answering. Its last answer counts until its ttl...
    pd.hang(Some(Duration::from_secs(5)));
    s.clock.advance_ms(61_000);
    assert!(
        eventually(|| async {
            metric(
                &s,
                "hourglass_oncall_reads_total{source=\"pd\",outcome=\"failed\"} 1",
            )
            .await
        })
        .await
    );
    assert!(metric(&s, "hourglass_oncall_source_up{source=\"pd\"} 0").await);
    assert!(metric(&s, "hourglass_oncall_answer_fresh{source=\"pd\"} 1").await);
    assert_eq!(triage(&s, "INC-2").await, "fulfilled");

    // ...then nobody is on call by it: a person approves.
    s.clock.advance_ms(4 * 60_000);
    assert!(metric(&s, "hourglass_oncall_answer_fresh{source=\"pd\"} 0").await);
    assert_eq!(triage(&s, "INC-3").await, "pending");

    // Opsgenie now has alice on call (under an address mapped in `users`).
    genie.set_on_call("ops_schedule", &["carol.ops@example.net"]);
    let before = genie.reads();
    s.clock.advance_ms(61_000);
    assert!(eventually(|| async { genie.reads() > before }).await);
    assert!(
        eventually(|| async {
            metric(
                &s,
                "hourglass_oncall_reads_total{source=\"ops\",outcome=\"ok\"} 3",
            )
            .await
        })
        .await
    );
    assert_eq!(triage(&s, "INC-4").await, "fulfilled");
    s.stop().await;
}

fn calls_with(api: &SlackApi, method: &str, key: &str, value: &str) -> Vec<Value> {
    api.calls(method)
        .into_iter()
        .filter(|c| c[key] == value)
        .collect()
}

#[tokio::test]
async fn an_undecided_request_is_reminded_then_escalated_and_the_page_resolves_when_decided() {
    let slack = SlackApi::start(&[
        ("U0BOB", "bob@example.com"),
        ("U0ALICE", "alice@example.com"),
    ])
    .await;
    let pd = PagerDuty::start().await;
    let teams = Receiver::start().await;
    let (slack_url, pd_url, teams_url) = (slack.url(), pd.url(), teams.url("teams/webhook"));
    let s = spawn_server_with(move |dir, text| {
        std::fs::write(dir.join("slack.token"), SLACK_TOKEN).unwrap();
        std::fs::write(dir.join("slack.secret"), SLACK_SIGNING_SECRET).unwrap();
        std::fs::write(dir.join("pd.key"), PAGERDUTY_ROUTING_KEY).unwrap();
        std::fs::write(dir.join("teams.url"), &teams_url).unwrap();
        format!(
            r#"{text}
[notifications]
public_url = "https://hourglass.example.com"

[[chat]]
name = "slack"
kind = "slack"
bot_token = {{ file = "slack.token" }}
signing_secret = {{ file = "slack.secret" }}
channel = "C0APPROVERS"
escalation_channel = "C0LEADS"
notify_approvers = true
notify_requester = false
email_domain = "example.com"
api_url = "{slack_url}"
allow_private = true
max_retry_wait = "5s"

[[notifiers]]
name = "pager"
kind = "pagerduty"
routing_key = {{ file = "pd.key" }}
url = "{pd_url}/v2/enqueue"
source = "hourglass.example.com"
allow_private = true
timeout = "5s"

[[notifiers]]
name = "teams"
kind = "teams"
webhook_url = {{ file = "teams.url" }}
events = ["request.pending", "request.approved"]
allow_private = true

[[escalation]]
access = ["demo/ops-admin"]
remind_after = "30m"
escalate_after = "1h"
to = ["pager", "slack"]
"#
        )
    })
    .await
    .unwrap();
    let (alice, bob) = (s.client("alice"), s.client("bob"));
    let r = alice
        .create_request(&ask("demo/ops-admin", "30m", "rotate the [TLS](x) *cert*"))
        .await
        .unwrap();
    assert_eq!(r.state, "pending");
    assert!(
        eventually(|| async {
            calls_with(&slack, "chat.postMessage", "channel", "C0APPROVERS").len() == 1
        })
        .await
    );
    let first = calls_with(&slack, "chat.postMessage", "channel", "C0APPROVERS").remove(0);
    assert!(first.get("thread_ts").is_none());
    // bob may approve it: he has it directly too, with the buttons; alice, who asked, has not.
    assert!(
        eventually(|| async {
            calls_with(&slack, "chat.postMessage", "channel", "U0BOB").len() == 1
        })
        .await
    );
    assert!(
        calls_with(&slack, "chat.postMessage", "channel", "U0BOB")[0]
            .to_string()
            .contains("hourglass.approve")
    );
    assert!(calls_with(&slack, "chat.postMessage", "channel", "U0ALICE").is_empty());
    // Teams has the Adaptive Card, what alice typed escaped, with the approval link.
    assert!(eventually(|| async { !teams.got().is_empty() }).await);
    let card = teams.got()[0].json();
    assert_eq!(
        card["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let content = &card["attachments"][0]["content"];
    assert_eq!(
        content["actions"][0]["url"],
        format!("https://hourglass.example.com/approve/{}", r.id)
    );
    assert!(
        content
            .to_string()
            .contains(r"rotate the \\[TLS\\]\\(x\\) \\*cert\\*"),
        "{content}"
    );
    assert!(
        pd.events().is_empty(),
        "nothing pages before the escalation"
    );

    // 30 minutes: a reminder in the request's thread, shown in the channel.
    advance(&s, 30 * 60_000).await;
    assert!(
        eventually(|| async {
            slack
                .calls("chat.postMessage")
                .iter()
                .any(|c| c["reply_broadcast"] == true)
        })
        .await
    );
    let reply = slack
        .calls("chat.postMessage")
        .into_iter()
        .find(|c| c["reply_broadcast"] == true)
        .unwrap();
    assert_eq!(reply["channel"], "C0APPROVERS");
    assert!(reply["thread_ts"].is_string());
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .starts_with("Reminder: alice has waited 30m")
    );
    // Teams was not asked for reminders, but a reminder follows `request.pending`.
    assert!(eventually(|| async { teams.got().len() == 2 }).await);
    assert!(pd.events().is_empty());

    // An hour: PagerDuty pages (after one 429 and its Retry-After), and the fallback channel
    // gets the request with its buttons.
    pd.rate_limit(1);
    advance(&s, 30 * 60_000).await;
    assert!(eventually(|| async { pd.events().len() == 1 }).await);
    let page = pd.events().remove(0);
    assert_eq!(page["event_action"], "trigger");
    assert_eq!(page["routing_key"], PAGERDUTY_ROUTING_KEY);
    assert_eq!(page["dedup_key"], format!("hourglass/request/{}", r.id));
    assert_eq!(page["payload"]["severity"], "warning");
    assert_eq!(page["payload"]["source"], "hourglass.example.com");
    assert_eq!(page["payload"]["custom_details"]["waiting"], "1h");
    assert!(
        eventually(|| async {
            calls_with(&slack, "chat.postMessage", "channel", "C0LEADS").len() == 1
        })
        .await
    );
    let leads = calls_with(&slack, "chat.postMessage", "channel", "C0LEADS").remove(0);
    assert!(leads.to_string().contains("hourglass.approve"), "{leads}");

    // bob decides: the page is resolved, and both Slack messages show the decision.
    bob.approve(&r.id, None).await.unwrap();
    assert!(eventually(|| async { pd.events().len() == 2 }).await);
    let resolve = pd.events().remove(1);
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], page["dedup_key"]);
    assert!(eventually(|| async { slack.calls("chat.update").len() == 3 }).await);
    let mut updated: Vec<String> = slack
        .calls("chat.update")
        .iter()
        .map(|u| u["channel"].as_str().unwrap().to_owned())
        .collect();
    updated.sort();
    assert_eq!(updated, ["C0APPROVERS", "C0LEADS", "U0BOB"]);
    assert!(
        slack
            .calls("chat.update")
            .iter()
            .all(|u| u.to_string().contains("Approved by bob"))
    );

    // A request decided in time is neither reminded nor escalated: its reminder and
    // escalation are dropped when their moment comes.
    let slack_dropped = "hourglass_notifications_total{notifier=\"slack\",outcome=\"dropped\"}";
    let pager_dropped = "hourglass_notifications_total{notifier=\"pager\",outcome=\"dropped\"}";
    let grant = bob.get_request(&r.id).await.unwrap().grants.unwrap()[0]
        .id
        .clone();
    assert!(
        eventually(|| async { alice.get_grant(&grant).await.unwrap().state == "active" }).await
    );
    alice.revoke(&grant, Some("done".into())).await.unwrap();
    assert!(
        eventually(|| async { alice.get_grant(&grant).await.unwrap().state == "revoked" }).await
    );
    // The warnings scheduled about that grant (its end, an overdue revocation) are dropped
    // when their moments pass.
    advance(&s, 30 * 60_000).await;
    assert!(
        eventually(|| async {
            metric_value(&s, slack_dropped).await == 2 && metric_value(&s, pager_dropped).await == 1
        })
        .await
    );
    let quick = alice
        .create_request(&ask("demo/ops-admin", "10m", "quick one"))
        .await
        .unwrap();
    bob.deny(&quick.id, "not now").await.unwrap();
    let posts = slack.calls("chat.postMessage").len();
    advance(&s, 2 * 3_600_000).await;
    assert!(
        eventually(|| async {
            metric_value(&s, slack_dropped).await == 4 && metric_value(&s, pager_dropped).await == 2
        })
        .await,
        "{}",
        s.client("admin").metrics().await.unwrap()
    );
    assert_eq!(pd.events().len(), 2, "no page for a decided request");
    assert!(
        slack.calls("chat.postMessage")[posts..]
            .iter()
            .all(|c| c["thread_ts"].is_null() && c["channel"] != "C0LEADS"),
        "nothing chased the decided request"
    );
    s.stop().await;
}
