//! Ticket-bound access against a local Jira and ServiceNow (real API and webhook shapes):
//! requests are checked against the ticket, policy reads what the ticket system said, and the
//! grant ends when the ticket closes, by webhook or, when the webhook was lost, by the poller.

use std::path::Path;

use hourglass_api::CreateRequest;
use hourglass_connectors::webhook;
use hourglass_core::Clock;
use hourglass_integrations::inbound::hub_signature;
use hourglass_testkit::{TestServer, eventually, spawn_server_with};
use serde_json::{Value, json};

use crate::{
    fakes::{DESK_TOKEN, DESK_USER, TicketDesk, jira_webhook},
    lifecycle::{audit_len, chain_ok, problem},
};

pub(crate) const HOOK_SECRET: &str = "jira-webhook-secret-0123456789abcdef";

fn ask(ent: &str, ticket: &str) -> CreateRequest {
    CreateRequest {
        task: None,
        entitlement: ent.into(),
        duration: Some("30m".into()),
        reason: "helpdesk work".into(),
        ticket: Some(ticket.into()),
        public_key: None,
        break_glass: false,
        starts_at: None,
    }
}

/// Writes the desk's API token and the webhook secret beside the config. (The demo policy
/// `helpdesk-ticket-in-progress` approves ops-admin for an in-progress ticket assigned to the
/// requester.)
fn secrets(dir: &Path) {
    std::fs::write(dir.join("desk.token"), format!("{DESK_TOKEN}\n")).unwrap();
    std::fs::write(dir.join("hook.secret"), HOOK_SECRET).unwrap();
}

async fn server(desk: &TicketDesk, sources: &str) -> TestServer {
    let url = desk.url();
    let sources = sources.replace("{URL}", &url);
    spawn_server_with(move |dir, text| {
        secrets(dir);
        format!("{text}\n[tickets]\npoll_interval = \"1m\"\n{sources}")
    })
    .await
    .unwrap()
}

/// The local desk as a Jira source: webhooks signed with `HOOK_SECRET`, assignee required.
fn jira_source() -> String {
    format!(
        r#"
[[ticket_sources]]
name = "jira"
kind = "jira"
pattern = 'HD-\d+'
url = "{{URL}}"
user = "{DESK_USER}"
token = {{ file = "desk.token" }}
webhook_secret = {{ file = "hook.secret" }}
require_assignee = true
users = {{ "acc-alice" = "alice" }}
allow_private = true
"#
    )
}

/// The local desk as a ServiceNow source, with `extra` keys.
fn servicenow_source(extra: &str) -> String {
    format!(
        r#"
[[ticket_sources]]
name = "servicenow"
kind = "servicenow"
pattern = 'INC\d{{7}}'
url = "{{URL}}"
user = "{DESK_USER}"
token = {{ file = "desk.token" }}
allow_private = true
{extra}
"#
    )
}

async fn post_event(
    s: &TestServer,
    path: &str,
    body: &Value,
    headers: &[(&str, String)],
) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let mut req = reqwest::Client::new()
        .post(format!("http://{}{path}", s.addr))
        .header("content-type", "application/json")
        .body(bytes);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn jira_event(s: &TestServer, body: &Value, secret: &str) -> (u16, Value) {
    let sig = hub_signature(secret.as_bytes(), &serde_json::to_vec(body).unwrap());
    post_event(
        s,
        "/v1/tickets/sources/jira/events",
        body,
        &[("x-hub-signature", sig)],
    )
    .await
}

/// The `Hourglass-Timestamp` and `Hourglass-Signature` headers of `body`, signed now with the
/// webhook secret.
fn signed_now(s: &TestServer, body: &Value) -> Vec<(&'static str, String)> {
    let ts = s.clock.now().unix_millis() / 1000;
    let sig = webhook::sign(
        HOOK_SECRET.as_bytes(),
        ts,
        &serde_json::to_vec(body).unwrap(),
    );
    vec![
        (webhook::TIMESTAMP_HEADER, ts.to_string()),
        (webhook::SIGNATURE_HEADER, sig),
    ]
}

/// The problem a request for `ent` bound to `ticket` is refused with.
async fn refused(c: &hourglass_client::Client, ent: &str, ticket: &str) -> hourglass_api::Problem {
    problem(c.create_request(&ask(ent, ticket)).await.unwrap_err())
}

async fn audit_actions(s: &TestServer, action: &str) -> Vec<hourglass_core::audit::AuditEvent> {
    s.store()
        .unwrap()
        .audit_after(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.record.action == action)
        .collect()
}

#[tokio::test]
async fn jira_tickets_gate_requests_and_their_closure_revokes_the_grant() {
    let desk = TicketDesk::start().await;
    desk.put_jira(TicketDesk::jira("HD-1", "Done", "done", Some("acc-alice")));
    desk.put_jira(TicketDesk::jira(
        "HD-2",
        "In Progress",
        "indeterminate",
        Some("acc-bob"),
    ));
    let in_progress = TicketDesk::jira("HD-3", "In Progress", "indeterminate", Some("acc-alice"));
    desk.put_jira(in_progress.clone());
    desk.put_jira(TicketDesk::jira("HD-4", "To Do", "new", Some("acc-alice")));
    let s = server(&desk, &jira_source()).await;
    let alice = s.client("alice");
    let before = audit_len(&s).await;

    // Refused before anything is written: closed, assigned elsewhere, unknown.
    let p = refused(&alice, "demo/ops-admin", "HD-1").await;
    assert_eq!((p.status, p.code.as_str()), (400, "ticket.closed"));
    assert!(p.detail.contains("Done"), "{}", p.detail);
    let p = refused(&alice, "demo/ops-admin", "HD-2").await;
    assert_eq!((p.status, p.code.as_str()), (403, "ticket.not_assigned"));
    assert!(p.detail.contains("acc-bob"), "{}", p.detail);
    let p = refused(&alice, "demo/ops-admin", "HD-404").await;
    assert_eq!((p.status, p.code.as_str()), (400, "ticket.not_found"));
    assert_eq!(audit_len(&s).await, before, "refusals write nothing");

    // Open but not in progress: a person must approve. When the ticket closes (Jira's
    // issue_deleted here), the request is withdrawn.
    let waiting = alice
        .create_request(&ask("demo/ops-admin", "HD-4"))
        .await
        .unwrap();
    assert_eq!(waiting.state, "pending");
    let deleted = json!({"webhookEvent": "jira:issue_deleted", "timestamp": 1_800_000_000_000_i64,
        "issue": TicketDesk::jira("HD-4", "To Do", "new", Some("acc-alice"))});
    let (status, body) = jira_event(&s, &deleted, HOOK_SECRET).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cancelled"], json!([waiting.id]));
    let w = alice.get_request(&waiting.id).await.unwrap();
    assert_eq!(w.state, "cancelled");
    assert!(
        w.state_reason
            .unwrap_or_default()
            .contains("ticket HD-4 closed (deleted")
    );

    // Assigned to her and in progress: policy approves with no human.
    let r = alice
        .create_request(&ask("demo/ops-admin", "HD-3"))
        .await
        .unwrap();
    assert_eq!(r.state, "fulfilled", "{r:?}");
    assert_eq!(
        r.approvals.as_ref().unwrap()[0].policy_ids,
        ["helpdesk-ticket-in-progress"]
    );
    let created = audit_actions(&s, "request.created").await;
    let details = &created.last().unwrap().record.details;
    for (k, v) in [
        ("ticket", "HD-3"),
        ("ticket_source", "jira"),
        ("ticket_status", "In Progress"),
        ("ticket_assignee", "alice"),
    ] {
        assert!(details.contains(&(k.into(), v.into())), "{details:?}");
    }
    let gid = r.grant_id.clone().unwrap();
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "active" }).await);
    assert!(s.access().contains(&gid));

    let mut done = in_progress.clone();
    done["fields"]["status"] = json!({"name": "Done", "statusCategory": {"key": "done"}});
    // An extension is bound to the same ticket, checked again: open now, closed later.
    let ext = alice.extend(&gid, "10m", "not finished").await.unwrap();
    assert_eq!(ext.ticket.as_deref(), Some("HD-3"));
    assert_eq!(
        ext.state, "fulfilled",
        "the helpdesk policy read the ticket again"
    );
    let grant_id = hourglass_core::id::GrantId::parse(&gid).unwrap();
    let store = s.store().unwrap();
    assert!(
        eventually(|| async { store.get_job(&grant_id).await.unwrap().is_none() }).await,
        "the extension reached the target"
    );
    desk.put_jira(done.clone());
    let p = problem(alice.extend(&gid, "10m", "more").await.unwrap_err());
    assert_eq!(p.code, "ticket.closed");
    desk.put_jira(in_progress.clone());

    // Jira posts the whole issue: a long description must not make the event too large.
    done["fields"]["description"] = json!("the printer queue again. ".repeat(8_000));
    // A forged closure changes nothing.
    let event = jira_webhook(&done, "In Progress");
    let before = audit_len(&s).await;
    let (status, body) = jira_event(&s, &event, "not-the-secret-not-the-secret-0000").await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = post_event(&s, "/v1/tickets/sources/jira/events", &event, &[]).await;
    assert_eq!(status, 401);
    assert_eq!(audit_len(&s).await, before);
    assert_eq!(alice.get_grant(&gid).await.unwrap().state, "active");

    // Jira reports the closure: the grant is revoked, in the ledger and in the target.
    let (status, body) = jira_event(&s, &event, HOOK_SECRET).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], json!([gid]));
    assert_eq!(body["open"], json!(false));
    assert!(eventually(|| async { !s.access().contains(&gid) }).await);
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "revoked" }).await);
    let closed = audit_actions(&s, "ticket.closed").await;
    assert_eq!(closed.len(), 2, "HD-4 and HD-3");
    let rec = &closed[1].record;
    assert_eq!(
        (rec.subject.as_str(), rec.actor.as_str()),
        ("HD-3", "ticket:jira")
    );
    assert!(rec.details.contains(&("via".into(), "jira webhook".into())));
    assert!(rec.details.contains(&("status".into(), "Done".into())));
    let g = alice.get_grant(&gid).await.unwrap();
    assert!(
        g.end_reason
            .as_deref()
            .unwrap_or_default()
            .contains("ticket HD-3 closed"),
        "{g:?}"
    );
    // The same delivery again is refused as a replay: nothing changes, nothing recorded.
    let before = audit_len(&s).await;
    let (status, body) = jira_event(&s, &event, HOOK_SECRET).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("ticket_event.replayed"))
    );
    assert_eq!(audit_len(&s).await, before);
    // A signed "In Progress" event after the closure does not reopen the ticket by itself: Jira
    // is asked, and it still says Done.
    let mut reopened = in_progress.clone();
    reopened["fields"]["updated"] = json!("2027-01-15T08:00:00.000+0000");
    desk.put_jira(done.clone());
    let (status, body) = jira_event(&s, &jira_webhook(&reopened, "Done"), HOOK_SECRET).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("ticket_event.reopen_unconfirmed")),
        "{body}"
    );
    chain_ok(&s).await;
}

#[tokio::test]
async fn the_poller_revokes_when_the_closing_webhook_was_lost() {
    let desk = TicketDesk::start().await;
    desk.put_incident(TicketDesk::incident(
        "INC0010001",
        ("2", "In Progress"),
        Some("alice"),
        "Service Desk",
    ));
    let sources = servicenow_source("require_assignee = true");
    let s = server(&desk, &sources).await;
    let alice = s.client("alice");
    let r = alice
        .create_request(&ask("demo/ops-admin", "INC0010001"))
        .await
        .unwrap();
    // ServiceNow's label for state 2 is "In Progress", so the helpdesk policy lets it through.
    assert_eq!(r.state, "fulfilled", "{r:?}");
    let gid = r.grant_id.clone().unwrap();
    assert!(eventually(|| async { s.access().contains(&gid) }).await);

    // The incident is closed in ServiceNow; no webhook comes.
    desk.put_incident(TicketDesk::incident(
        "INC0010001",
        ("7", "Closed"),
        Some("alice"),
        "Service Desk",
    ));
    let asked = desk.lookups();
    s.clock.advance_ms(60_000);
    assert!(
        eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "revoked" }).await,
        "the poller found the closure"
    );
    assert!(!s.access().contains(&gid));
    assert!(desk.lookups() > asked);
    let closed = audit_actions(&s, "ticket.closed").await;
    assert_eq!(closed.len(), 1);
    assert!(
        closed[0]
            .record
            .details
            .contains(&("via".into(), "poll".into()))
    );
    assert!(
        closed[0]
            .record
            .details
            .contains(&("status".into(), "Closed".into()))
    );
    let metrics = alice.metrics().await.unwrap();
    assert!(
        metrics.contains("hourglass_ticket_poll_closed_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_servicenow_business_rule_reports_a_closure() {
    let desk = TicketDesk::start().await;
    let open = TicketDesk::incident(
        "INC0020002",
        ("2", "In Progress"),
        Some("alice"),
        "Service Desk",
    );
    desk.put_incident(open);
    let sources = servicenow_source("webhook_secret = { file = \"hook.secret\" }");
    let s = server(&desk, &sources).await;
    let alice = s.client("alice");
    let r = alice
        .create_request(&ask("demo/read-logs", "INC0020002"))
        .await
        .unwrap();
    let gid = r.grant_id.clone().unwrap();
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "active" }).await);

    // The business rule posts the record as the Table API shapes it, signed with the
    // Hourglass scheme (ServiceNow has no signed webhooks of its own).
    let record = json!({"result": TicketDesk::incident(
        "INC0020002",
        ("6", "Resolved"),
        Some("alice"),
        "Service Desk",
    )});
    let bytes = serde_json::to_vec(&record).unwrap();
    let ts = s.clock.now().unix_millis() / 1000;
    let sig = webhook::sign(HOOK_SECRET.as_bytes(), ts, &bytes);
    let (status, body) = post_event(
        &s,
        "/v1/tickets/sources/servicenow/events",
        &record,
        &[
            (webhook::TIMESTAMP_HEADER, ts.to_string()),
            (webhook::SIGNATURE_HEADER, sig.clone()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "Resolved");
    assert_eq!(body["revoked"], json!([gid]));
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "revoked" }).await);
    // The same signature ten minutes later is a replay: refused.
    s.clock.advance_ms(600_000);
    let (status, _) = post_event(
        &s,
        "/v1/tickets/sources/servicenow/events",
        &record,
        &[
            (webhook::TIMESTAMP_HEADER, ts.to_string()),
            (webhook::SIGNATURE_HEADER, sig),
        ],
    )
    .await;
    assert_eq!(status, 401);
    // A source that does not exist, or takes no events, is a 404.
    let (status, _) = post_event(&s, "/v1/tickets/sources/nope/events", &record, &[]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_ticket_system_that_does_not_answer_denies_or_asks_a_human_as_configured() {
    let desk = TicketDesk::start().await;
    desk.put_jira(TicketDesk::jira(
        "HD-7",
        "In Progress",
        "indeterminate",
        Some("acc-alice"),
    ));
    desk.put_incident(TicketDesk::incident(
        "INC0000007",
        ("2", "In Progress"),
        Some("alice"),
        "Service Desk",
    ));
    let servicenow = servicenow_source("on_unavailable = \"approval\"");
    let sources = format!("{}\n{servicenow}", jira_source());
    let s = server(&desk, &sources).await;
    let alice = s.client("alice");
    desk.set_down(true);
    let before = audit_len(&s).await;

    // Jira is configured to deny: a clear 503, nothing written.
    let p = refused(&alice, "demo/ops-admin", "HD-7").await;
    assert_eq!((p.status, p.code.as_str()), (503, "ticket.unavailable"));
    assert!(p.detail.contains("jira"), "{}", p.detail);
    assert_eq!(audit_len(&s).await, before);

    // ServiceNow is configured to ask a human: even read-logs, which policy approves on its
    // own, waits for a person, and the audit says the ticket was not checked.
    let r = alice
        .create_request(&ask("demo/read-logs", "INC0000007"))
        .await
        .unwrap();
    assert_eq!(r.state, "pending");
    let created = audit_actions(&s, "request.created").await;
    let details = &created.last().unwrap().record.details;
    assert!(
        details
            .iter()
            .any(|(k, v)| k == "ticket_unchecked" && v.contains("503")),
        "{details:?}"
    );
    let approved = s.client("bob").approve(&r.id, None).await.unwrap();
    assert_eq!(approved.state, "fulfilled");

    // Back up: the same request goes through on policy again.
    desk.set_down(false);
    let r = alice
        .create_request(&ask("demo/ops-admin", "HD-7"))
        .await
        .unwrap();
    assert_eq!(r.state, "fulfilled");
}

#[tokio::test]
async fn a_generic_webhook_source_reports_tickets_and_their_closure() {
    let desk = TicketDesk::start().await;
    let sources = r#"
[[ticket_sources]]
name = "ops"
kind = "webhook"
pattern = 'OPS-\d+'
webhook_secret = { file = "hook.secret" }
"#;
    let s = server(&desk, sources).await;
    let alice = s.client("alice");
    let signed = |body: &Value| signed_now(&s, body);

    // Nothing reported yet: the source cannot vouch for the ticket (default: deny).
    let p = refused(&alice, "demo/read-logs", "OPS-1").await;
    assert_eq!(p.code, "ticket.unavailable");

    let open = json!({"ref": "OPS-1", "status": "In Progress", "assignee": "alice"});
    let open_headers = signed(&open);
    let (status, body) = post_event(&s, "/v1/tickets/events", &open, &open_headers).await;
    assert_eq!(status, 200, "{body}");
    let r = alice
        .create_request(&ask("demo/ops-admin", "OPS-1"))
        .await
        .unwrap();
    assert_eq!(
        r.state, "fulfilled",
        "the policy read the reported status and assignee"
    );
    let gid = r.grant_id.clone().unwrap();
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "active" }).await);

    // Malformed, foreign and unsigned events are refused.
    let bad = json!({"status": "closed"});
    let (status, _) = post_event(&s, "/v1/tickets/events", &bad, &signed(&bad)).await;
    assert_eq!(status, 400);
    let foreign = json!({"ref": "HD-1", "status": "closed"});
    let (status, _) = post_event(&s, "/v1/tickets/events", &foreign, &signed(&foreign)).await;
    assert_eq!(status, 400);
    let closed = json!({"ref": "OPS-1", "status": "resolved"});
    let (status, _) = post_event(&s, "/v1/tickets/events", &closed, &[]).await;
    assert_eq!(status, 401);
    assert_eq!(alice.get_grant(&gid).await.unwrap().state, "active");

    let (status, body) = post_event(&s, "/v1/tickets/events", &closed, &signed(&closed)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], json!([gid]));
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "revoked" }).await);
    // Closed now: a new request on it is refused.
    let p = refused(&alice, "demo/read-logs", "OPS-1").await;
    assert_eq!(p.code, "ticket.closed");
    // Each accepted report is in the audit, by the source.
    let reported = audit_actions(&s, "ticket.reported").await;
    assert_eq!(reported.len(), 2);
    assert_eq!(reported[0].record.actor, "ticket:ops");

    // Replaying the signed "In Progress" event within its window does not reopen it.
    let (status, body) = post_event(&s, "/v1/tickets/events", &open, &open_headers).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("ticket_event.replayed"))
    );
    // Nor does an event older than what was reported, freshly signed.
    s.clock.advance_ms(2_000);
    let old = json!({"ref": "OPS-1", "status": "In Progress", "assignee": "alice", "updated": 1_700_000_000});
    let (status, body) = post_event(&s, "/v1/tickets/events", &old, &signed(&old)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("ticket_event.stale"))
    );
    // Nor a new one: this source only reports, so reopening a closed ticket needs a person.
    let (status, body) = post_event(&s, "/v1/tickets/events", &open, &signed(&open)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("ticket_event.reopen_refused"))
    );
    // The timeless Jira scheme is refused for a webhook source.
    let hub = hub_signature(HOOK_SECRET.as_bytes(), &serde_json::to_vec(&open).unwrap());
    let (status, _) =
        post_event(&s, "/v1/tickets/events", &open, &[("x-hub-signature", hub)]).await;
    assert_eq!(status, 401);
    let p = refused(&alice, "demo/read-logs", "OPS-1").await;
    assert_eq!(p.code, "ticket.closed");
    assert_eq!(audit_actions(&s, "ticket.reported").await.len(), 2);

    // An administrator reopens it, with a reason; alice cannot.
    let path = "/v1/tickets/sources/ops/tickets/OPS-1/reopen";
    let body = r#"{"reason": "the customer wrote back"}"#;
    assert_eq!(
        problem(alice.post_raw(path, body).await.unwrap_err()).status,
        403
    );
    s.client("admin").post_raw(path, body).await.unwrap();
    let reopened = audit_actions(&s, "ticket.reopened").await;
    assert_eq!(reopened[0].record.actor, "admin");
    alice
        .create_request(&ask("demo/read-logs", "OPS-1"))
        .await
        .unwrap();
    chain_ok(&s).await;
}

#[tokio::test]
async fn a_source_ends_only_what_it_vouched_for() {
    let desk = TicketDesk::start().await;
    // `any` also matches OPS-1, but `ops` (first) owns it and checked alice's request.
    let sources = r#"
[[ticket_sources]]
name = "ops"
kind = "webhook"
pattern = 'OPS-\d+'
webhook_secret = { file = "hook.secret" }

[[ticket_sources]]
name = "any"
kind = "webhook"
pattern = '[A-Z]+-\d+'
webhook_secret = { file = "hook.secret" }
"#;
    let s = server(&desk, sources).await;
    let alice = s.client("alice");
    let signed = |body: &Value| signed_now(&s, body);
    let open = json!({"ref": "OPS-1", "status": "In Progress", "assignee": "alice"});
    let (status, _) = post_event(&s, "/v1/tickets/events", &open, &signed(&open)).await;
    assert_eq!(status, 200);
    let r = alice
        .create_request(&ask("demo/read-logs", "OPS-1"))
        .await
        .unwrap();
    let gid = r.grant_id.clone().unwrap();
    // The other source reports OPS-1 closed: it vouched for nothing, so nothing ends.
    let closed = json!({"ref": "OPS-1", "status": "closed"});
    let (status, body) = post_event(
        &s,
        "/v1/tickets/sources/any/events",
        &closed,
        &signed(&closed),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], json!([]));
    assert_ne!(alice.get_grant(&gid).await.unwrap().state, "revoked");
    // Its owner's closure ends it.
    s.clock.advance_ms(1_000);
    let (status, body) = post_event(&s, "/v1/tickets/events", &closed, &signed(&closed)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], json!([gid]));
}

/// The approver's inbox shows the ticket as its source last reported it, not only as it was
/// when the request was made.
#[tokio::test]
async fn the_inbox_shows_the_ticket_as_its_source_last_reported_it() {
    let desk = TicketDesk::start().await;
    let sources = r#"
[[ticket_sources]]
name = "ops"
kind = "webhook"
pattern = 'OPS-\d+'
webhook_secret = { file = "hook.secret" }
"#;
    let s = server(&desk, &format!("{sources}\n[web]\ndemo_sign_in = true\n")).await;
    let signed = |body: &Value| signed_now(&s, body);
    let waiting = json!({"ref": "OPS-7", "status": "Waiting for customer", "assignee": "alice"});
    let (status, body) = post_event(&s, "/v1/tickets/events", &waiting, &signed(&waiting)).await;
    assert_eq!(status, 200, "{body}");
    let r = s
        .client("alice")
        .create_request(&ask("demo/ops-admin", "OPS-7"))
        .await
        .unwrap();
    assert_eq!(r.state, "pending", "not in progress: a human decides");

    // bob's view of it, through the web app.
    let bob = crate::app::Browser::sign_in(&s, "bob").await;
    let url = format!("/inbox/{}", r.id);
    let (_, page) = bob.get(&url).await;
    assert!(page.contains("Waiting for customer"), "{page}");

    // The ticket moves on; the page says what the source says now.
    s.clock.advance_ms(1_000);
    let moved = json!({"ref": "OPS-7", "status": "Escalated", "assignee": "carol"});
    let (status, body) = post_event(&s, "/v1/tickets/events", &moved, &signed(&moved)).await;
    assert_eq!(status, 200, "{body}");
    let (_, page) = bob.get(&url).await;
    assert!(
        page.contains("Escalated, open, assigned to carol, as its source last reported it"),
        "{page}"
    );
}
