//! Notifications end to end: a local HTTP receiver stands in for Slack and a SIEM webhook, a
//! local SMTP listener for the mail relay. Each event is delivered once to each notifier routed
//! to it; a receiver that fails is retried a bounded number of times and never delays a
//! revocation; the approval link only shows a page.

use std::time::Duration;

use axum::http::StatusCode;
use hourglass_api::CreateRequest;
use hourglass_connectors::webhook;
use hourglass_core::Clock;
use hourglass_testkit::{TestServer, eventually, spawn_server_with};
use serde_json::Value;
use sqlx::Connection;

use crate::{
    fakes::{Receiver, SmtpListener},
    lifecycle::ask,
};

const SIEM_SECRET: &str = "siem-signing-secret-0123456789abcdef";

async fn server(hooks: &Receiver, smtp: &SmtpListener, extra: &str) -> TestServer {
    let slack_url = hooks.url("slack/T000/B000/XXXX");
    let siem_url = hooks.url("siem");
    let smtp_port = smtp.addr.port();
    let extra = extra.to_owned();
    spawn_server_with(move |dir, text| {
        std::fs::write(dir.join("slack.url"), format!("{slack_url}\n")).unwrap();
        std::fs::write(dir.join("siem.secret"), SIEM_SECRET).unwrap();
        format!(
            r#"{text}
[notifications]
public_url = "https://hourglass.example.com"
expiry_warning = "5m"
{extra}

[[notifiers]]
name = "approvers"
kind = "slack"
webhook_url = {{ file = "slack.url" }}
events = ["request.pending", "break_glass"]
allow_private = true

[[notifiers]]
name = "siem"
kind = "webhook"
url = "{siem_url}"
secret = {{ file = "siem.secret" }}
allow_private = true
timeout = "2s"

[[notifiers]]
name = "mail"
kind = "email"
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from = "Hourglass <hourglass@example.com>"
to = ["{{principal}}@example.com"]
events = ["request.approved", "request.denied", "grant.expiring", "grant.revoked"]
"#
        )
    })
    .await
    .unwrap()
}

fn events_at(hooks: &Receiver, path: &str) -> Vec<Value> {
    hooks
        .got()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.json())
        .collect()
}

fn siem_events(hooks: &Receiver, about: &str) -> Vec<String> {
    events_at(hooks, "siem")
        .iter()
        .filter(|v| v["request_id"] == about || v["grant_id"] == about)
        .map(|v| v["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Waits until no notification is being delivered, and moves the clock. (Deliveries hold a
/// lease on the engine clock; jumping the manual clock past it while one is in flight would let
/// a second worker pass take it over: at-least-once, as after a crash, but not what these tests
/// count.)
pub(crate) async fn advance(s: &TestServer, ms: i64) {
    let store = s.store().unwrap();
    assert!(
        eventually(|| async {
            let mut ids: Vec<String> = Vec::new();
            for r in store
                .list_requests(&hourglass_core::store::RequestFilter {
                    limit: 100,
                    ..Default::default()
                })
                .await
                .unwrap()
            {
                ids.push(r.id.to_string());
                ids.extend(r.grant_id.map(|g| g.to_string()));
            }
            for id in ids {
                if store
                    .notifications_about(&id)
                    .await
                    .unwrap()
                    .iter()
                    .any(|n| n.lease.is_some())
                {
                    return false;
                }
            }
            true
        })
        .await,
        "a delivery never finished"
    );
    s.clock.advance_ms(ms);
}

fn mails_with(smtp: &SmtpListener, text: &str) -> usize {
    smtp.mails()
        .iter()
        .filter(|m| m.data.contains(text))
        .count()
}

#[tokio::test]
async fn each_event_reaches_its_notifiers_once() {
    let hooks = Receiver::start().await;
    let smtp = SmtpListener::start().await;
    let s = server(&hooks, &smtp, "").await;
    let alice = s.client("alice");
    let r = alice
        .create_request(&ask("demo/ops-admin", "30m", "rotate the TLS certificate"))
        .await
        .unwrap();
    assert_eq!(r.state, "pending");

    // The approvers' channel gets a Block Kit message with a link to the approval page.
    assert!(eventually(|| async { !events_at(&hooks, "slack/T000/B000/XXXX").is_empty() }).await);
    let slack = &events_at(&hooks, "slack/T000/B000/XXXX")[0];
    let blocks = slack["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    let button = blocks.iter().find(|b| b["type"] == "actions").unwrap();
    assert_eq!(
        button["elements"][0]["url"],
        format!("https://hourglass.example.com/approve/{}", r.id)
    );
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .contains("alice asks for demo/ops-admin")
    );

    // The SIEM gets every event, signed.
    assert!(
        eventually(|| async { siem_events(&hooks, &r.id).contains(&"request.pending".to_owned()) })
            .await
    );
    let first = hooks.got().into_iter().find(|g| g.path == "siem").unwrap();
    let header = |n: &str| {
        first
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let now = s.clock.now().unix_millis() / 1000;
    webhook::verify(
        SIEM_SECRET.as_bytes(),
        header(webhook::TIMESTAMP_HEADER).as_deref(),
        header(webhook::SIGNATURE_HEADER).as_deref(),
        &first.body,
        now,
        300,
    )
    .unwrap();
    assert!(
        header(webhook::IDEMPOTENCY_HEADER)
            .unwrap()
            .starts_with("ntf_")
    );

    // Approved: the requester is mailed; the grant goes active.
    let approved = s.client("bob").approve(&r.id, None).await.unwrap();
    let gid = approved.grant_id.clone().unwrap();
    assert!(eventually(|| async { mails_with(&smtp, "approved by bob") == 1 }).await);
    let mail = smtp
        .mails()
        .into_iter()
        .find(|m| m.data.contains("approved by bob"))
        .unwrap();
    assert_eq!(mail.to, ["alice@example.com"]);
    assert_eq!(mail.from, "hourglass@example.com");
    assert!(
        eventually(|| async { siem_events(&hooks, &gid).contains(&"grant.active".to_owned()) })
            .await
    );

    // Five minutes before the end, the holder is warned; at the end, told it is revoked.
    advance(&s, 25 * 60_000).await;
    assert!(eventually(|| async { mails_with(&smtp, "grant.expiring") == 1 }).await);
    advance(&s, 5 * 60_000).await;
    assert!(eventually(|| async { mails_with(&smtp, "grant.revoked") == 1 }).await);

    // Once each: nothing was queued or sent twice.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut about_grant = siem_events(&hooks, &gid);
    about_grant.sort();
    assert_eq!(
        about_grant,
        ["grant.active", "grant.expiring", "grant.revoked"]
    );
    let mut about_request = siem_events(&hooks, &r.id);
    about_request.retain(|e| e.starts_with("request."));
    about_request.sort();
    assert_eq!(about_request, ["request.approved", "request.pending"]);
    assert_eq!(
        events_at(&hooks, "slack/T000/B000/XXXX").len(),
        1,
        "slack only hears its events"
    );
    assert_eq!(mails_with(&smtp, "grant.expiring"), 1);

    // Break-glass is critical, and reaches the approvers' channel at once.
    let mut bg = ask("demo/ops-admin", "15m", "the database is down");
    bg.break_glass = true;
    let glass = alice.create_request(&bg).await.unwrap();
    assert_eq!(glass.state, "fulfilled");
    assert!(
        eventually(|| async {
            events_at(&hooks, "slack/T000/B000/XXXX").iter().any(|m| {
                m["text"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("BREAK-GLASS")
            })
        })
        .await
    );
    assert!(
        eventually(|| async {
            events_at(&hooks, "siem")
                .iter()
                .any(|v| v["event"] == "break_glass" && v["severity"] == "critical")
        })
        .await
    );
}

#[tokio::test]
async fn a_failing_receiver_is_retried_boundedly_and_never_delays_revocation() {
    let hooks = Receiver::start().await;
    hooks.fail_with(Some(StatusCode::INTERNAL_SERVER_ERROR));
    let smtp = SmtpListener::start().await;
    let s = server(&hooks, &smtp, "max_attempts = 2").await;
    let alice = s.client("alice");
    let r = alice
        .create_request(&ask("demo/read-logs", "1m", "check errors"))
        .await
        .unwrap();
    let gid = r.grant_id.clone().unwrap();
    assert!(eventually(|| async { s.access().contains(&gid) }).await);

    // The window closes on time while the SIEM keeps failing.
    advance(&s, 60_000).await;
    assert!(
        eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "revoked" }).await,
        "revoked on time"
    );
    assert!(!s.access().contains(&gid));
    let store = s.store().unwrap();
    assert!(
        eventually(|| async {
            store
                .notifications_about(&gid)
                .await
                .unwrap()
                .iter()
                .any(|n| n.notifier == "siem" && n.attempts >= 1)
        })
        .await
    );
    let failed = store.notifications_about(&gid).await.unwrap();
    let active = failed
        .iter()
        .find(|n| n.notifier == "siem" && n.dedup_key.starts_with("grant.active"))
        .unwrap();
    assert_eq!(
        active.last_error.as_deref(),
        Some("the receiver answered HTTP 500 Internal Server Error")
    );
    // The mail notifier, which works, was not held up by the failing one.
    assert!(eventually(|| async { mails_with(&smtp, "grant.revoked") == 1 }).await);

    // The second failure is the last (max_attempts = 2): given up, counted, not retried.
    for _ in 0..3 {
        advance(&s, 31 * 60_000).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        eventually(|| async {
            let m = alice.metrics().await.unwrap();
            m.contains("hourglass_notifications_dead{notifier=\"siem\"}")
                && !m.contains("hourglass_notifications_queued{notifier=\"siem\"} 1")
                && !m.contains("hourglass_notifications_dead{notifier=\"siem\"} 0")
        })
        .await
    );
    let m = alice.metrics().await.unwrap();
    assert!(
        m.contains("hourglass_notifications_total{notifier=\"siem\",outcome=\"retry\"}"),
        "{m}"
    );
    assert!(
        m.contains("hourglass_notifications_total{notifier=\"siem\",outcome=\"dead\"}"),
        "{m}"
    );
    // At most two posts per notification: no flood.
    let mut per_id = std::collections::BTreeMap::<String, u32>::new();
    for g in hooks.got().iter().filter(|g| g.path == "siem") {
        let id = g.headers[webhook::IDEMPOTENCY_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        *per_id.entry(id).or_default() += 1;
    }
    assert!(!per_id.is_empty());
    assert!(per_id.values().all(|n| *n <= 2), "{per_id:?}");
}

#[tokio::test]
async fn the_approval_link_opens_the_inbox_entry_after_sign_in_and_never_approves() {
    let hooks = Receiver::start().await;
    let smtp = SmtpListener::start().await;
    let s = server(&hooks, &smtp, "").await;
    let alice = s.client("alice");
    let r = alice
        .create_request(&CreateRequest {
            ..ask("demo/ops-admin", "30m", "rotate keys")
        })
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The link goes to the request's inbox entry; without a session, on to sign-in and back.
    let link = http
        .get(format!("http://{}/approve/{}", s.addr, r.id))
        .send()
        .await
        .unwrap();
    assert_eq!(link.status(), 303);
    assert_eq!(
        link.headers()["location"],
        format!("/inbox/{}", r.id).as_str()
    );
    let entry = http
        .get(format!("http://{}/inbox/{}", s.addr, r.id))
        .send()
        .await
        .unwrap();
    assert_eq!(entry.status(), 303);
    let to = entry.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(to, format!("/signin?return_to=%2Finbox%2F{}", r.id));
    assert!(
        !entry.text().await.unwrap().contains("rotate keys"),
        "nothing is shown without a session"
    );
    // Fetching it (twice, as link previews do) approves nothing; it cannot be posted to.
    http.get(format!("http://{}/approve/{}", s.addr, r.id))
        .send()
        .await
        .unwrap();
    assert_eq!(alice.get_request(&r.id).await.unwrap().state, "pending");
    let post = http
        .post(format!("http://{}/approve/{}", s.addr, r.id))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    // A malformed id is not echoed anywhere.
    let bad = http
        .get(format!("http://{}/approve/%3Cscript%3E", s.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.headers()["location"], "/inbox");
    assert_eq!(alice.get_request(&r.id).await.unwrap().state, "pending");
}

#[tokio::test]
async fn an_overdue_revocation_is_reported_and_a_timely_one_is_not() {
    let hooks = Receiver::start().await;
    let smtp = SmtpListener::start().await;
    let s = server(&hooks, &smtp, "").await;
    // From now on the demo target refuses to revoke anything.
    let script = s.dir.path().join("targets/demo-target.sh");
    let original = std::fs::read_to_string(&script).unwrap();
    let on_time = s.client("alice");
    let r1 = on_time
        .create_request(&ask("demo/read-logs", "1m", "on time"))
        .await
        .unwrap();
    let g1 = r1.grant_id.clone().unwrap();
    assert!(eventually(|| async { s.access().contains(&g1) }).await);
    on_time.revoke(&g1, None).await.unwrap();
    assert!(
        eventually(|| async { on_time.get_grant(&g1).await.unwrap().state == "revoked" }).await
    );

    std::fs::write(
        &script,
        original.replace(
            "case \"$op\" in",
            "if [ \"$op\" = revoke ]; then echo 'target down' >&2; exit 1; fi\ncase \"$op\" in",
        ),
    )
    .unwrap();
    let r2 = on_time
        .create_request(&ask("demo/read-logs", "1m", "stuck"))
        .await
        .unwrap();
    let g2 = r2.grant_id.clone().unwrap();
    assert!(eventually(|| async { s.access().contains(&g2) }).await);
    advance(&s, 60_000).await;
    assert!(
        eventually(|| async { on_time.get_grant(&g2).await.unwrap().state == "revoking" }).await
    );
    assert!(!siem_events(&hooks, &g2).contains(&"revocation.overdue".to_owned()));

    // A minute (overdue_after) past due and still not confirmed: reported, critical.
    advance(&s, 61_000).await;
    assert!(
        eventually(|| async {
            siem_events(&hooks, &g2).contains(&"revocation.overdue".to_owned())
        })
        .await
    );
    let overdue = events_at(&hooks, "siem")
        .into_iter()
        .find(|v| v["event"] == "revocation.overdue")
        .unwrap();
    assert_eq!(overdue["severity"], "critical");
    assert_eq!(overdue["grant_id"], g2.as_str());
    // The grant revoked in time had the same notification scheduled; it was dropped unsent.
    let store = s.store().unwrap();
    assert!(
        eventually(|| async {
            store
                .notifications_about(&g1)
                .await
                .unwrap()
                .iter()
                .any(|n| {
                    n.dedup_key.starts_with("revocation.overdue")
                        && n.last_error
                            .as_deref()
                            .is_some_and(|e| e.contains("is revoked"))
                })
        })
        .await
    );
    assert!(!siem_events(&hooks, &g1).contains(&"revocation.overdue".to_owned()));
}

#[tokio::test]
async fn drift_is_reported_once_however_often_it_is_found() {
    let Some(db) = hourglass_testdb::postgres().await else {
        return;
    };
    let hooks = Receiver::start().await;
    let smtp = SmtpListener::start().await;
    let stray = format!("{}grt_0000000000000000000000000000dead", db.prefix);
    let mut admin_db = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE ROLE {stray} LOGIN")))
        .execute(&mut admin_db)
        .await
        .unwrap();
    let (url, prefix) = (db.url.clone(), db.prefix.clone());
    let siem_url = hooks.url("siem");
    let smtp_port = smtp.addr.port();
    let s = spawn_server_with(move |dir, text| {
        std::fs::write(dir.join("siem.secret"), SIEM_SECRET).unwrap();
        format!(
            r#"{text}
[[targets]]
name = "pg"
connector = "postgres"
postgres = {{ url = "{url}", prefix = "{prefix}", timeout_secs = 2 }}

[[entitlements]]
name = "pg/read"
default_duration = "10m"
max_duration = "1h"
params = {{ roles = ["pg_read_all_data"] }}

[[notifiers]]
name = "siem"
kind = "webhook"
url = "{siem_url}"
secret = {{ file = "siem.secret" }}
allow_private = true
events = ["drift"]

[[notifiers]]
name = "mail"
kind = "email"
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from = "hourglass@example.com"
to = ["secops@example.com"]
events = ["drift"]
"#
        )
    })
    .await
    .unwrap();
    let admin = s.client("admin");
    let report = admin.reconcile().await.unwrap();
    assert_eq!(report.drift.len(), 1, "{report:?}");
    assert!(
        eventually(|| async {
            events_at(&hooks, "siem").iter().any(|v| {
                v["event"] == "drift"
                    && v["severity"] == "warning"
                    && v["details"]["kind"] == "leftover"
                    && v["details"]["name"] == stray.as_str()
            })
        })
        .await
    );
    assert!(eventually(|| async { mails_with(&smtp, "drift in pg") == 1 }).await);
    // The reconciler removed it; recreated by hand, it is found again, but the same drift is
    // not announced twice.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE ROLE {stray} LOGIN")))
        .execute(&mut admin_db)
        .await
        .unwrap();
    assert_eq!(admin.reconcile().await.unwrap().drift.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(events_at(&hooks, "siem").len(), 1);
    assert_eq!(mails_with(&smtp, "drift in pg"), 1);
}
