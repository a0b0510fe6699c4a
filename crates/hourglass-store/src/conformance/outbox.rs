//! Tickets and the notification outbox: bound requests are found by ticket, the poller sees
//! only tickets with live access, notifications are queued once per notifier and event, claimed
//! under a lease, settled only by the lease holder, retried when due, and counted.

use hourglass_core::{
    id::NotificationId,
    notify::{Message, Notification, NotifyEvent, Settle},
    request::RequestState,
    store::Commit,
    ticket::Ticket,
};

use super::{Fresh, audit_len, contract, ev, grant, request, t};

pub(super) fn notification(notifier: &str, key: &str, run_at: i64) -> Notification {
    Notification {
        id: NotificationId::generate(t(run_at)).unwrap(),
        notifier: notifier.into(),
        dedup_key: key.into(),
        message: Message {
            event: NotifyEvent::GrantRevoked,
            severity: NotifyEvent::GrantRevoked.severity(),
            title: "alice's access to demo/x is revoked".into(),
            at: t(run_at),
            request_id: None,
            grant_id: Some("grt_0".into()),
            principal: Some("alice".into()),
            access: Some("demo/x".into()),
            reason: Some("expired".into()),
            duration: None,
            ticket: None,
            expires_at: Some(t(9)),
            link: None,
            details: vec![("k".into(), "v".into())],
        },
        run_at: t(run_at),
        attempts: 0,
        last_error: None,
        created_at: t(run_at),
        lease: None,
        receipt: None,
    }
}

async fn tickets_find_their_bound_requests_and_live_access(s: &Fresh) {
    let mut pending = request(10);
    pending.state = RequestState::Pending;
    pending.ticket = Some("HD-1".into());
    let mut granted = request(20);
    granted.ticket = Some("HD-2".into());
    let g = grant(&granted, 5_000);
    let mut done = request(30);
    done.ticket = Some("HD-3".into());
    done.state = RequestState::Denied;
    s.commit(Commit {
        requests: vec![pending.clone(), granted.clone(), done.clone()],
        grants: vec![g.clone()],
        audit: vec![ev("a")],
        ..Commit::default()
    })
    .await
    .unwrap();
    let bound = s.requests_with_ticket("HD-2", 10).await.unwrap();
    assert_eq!(bound.len(), 1);
    assert_eq!(bound[0].id, granted.id);
    assert!(s.requests_with_ticket("HD-9", 10).await.unwrap().is_empty());
    // Only live requests are bound: a denied one is not, however recent.
    assert!(s.requests_with_ticket("HD-3", 10).await.unwrap().is_empty());
    // Denied requests bind nothing; pending ones and live grants do.
    assert_eq!(s.live_tickets(10).await.unwrap(), vec!["HD-1", "HD-2"]);

    let mut revoked = s.get_grant(&g.id).await.unwrap().unwrap();
    revoked.state = hourglass_core::grant::GrantState::Revoked;
    s.commit(Commit {
        grants: vec![revoked],
        audit: vec![ev("b")],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert_eq!(s.live_tickets(10).await.unwrap(), vec!["HD-1"]);
    // A fulfilled request whose grants ended binds nothing more.
    assert!(s.requests_with_ticket("HD-2", 10).await.unwrap().is_empty());

    // Ticket facts and the task survive the round trip.
    let mut facts = request(40);
    facts.ticket = Some("HD-4".into());
    facts.task = Some("INC-4-triage".into());
    facts.ticket_facts = Some(hourglass_core::policy::TicketFacts {
        reference: "HD-4".into(),
        status: Some("In Progress".into()),
        assignee: Some("alice".into()),
        priority: None,
        source: Some("jira".into()),
        verified: true,
    });
    s.commit(Commit {
        requests: vec![facts.clone()],
        audit: vec![ev("c")],
        ..Commit::default()
    })
    .await
    .unwrap();
    let back = s.get_request(&facts.id).await.unwrap().unwrap();
    assert_eq!(back.ticket_facts, facts.ticket_facts);
    assert_eq!(back.task.as_deref(), Some("INC-4-triage"));
}

async fn webhook_ticket_state_is_remembered_per_source(s: &Fresh) {
    let mut tk = Ticket {
        reference: "OPS-7".into(),
        open: true,
        status: "open".into(),
        assignee: Some("alice".into()),
        group: None,
        priority: Some("P2".into()),
        updated: Some(t(1)),
    };
    let record = |tk: &Ticket, what: &str| Commit {
        tickets: vec![("ops".into(), tk.clone())],
        audit: vec![ev(what)],
        ..Commit::default()
    };
    s.commit(record(&tk, "reported open")).await.unwrap();
    tk.open = false;
    tk.status = "closed".into();
    tk.updated = Some(t(2));
    s.commit(record(&tk, "reported closed")).await.unwrap();
    assert_eq!(s.get_ticket("ops", "OPS-7").await.unwrap(), Some(tk));
    assert_eq!(s.get_ticket("other", "OPS-7").await.unwrap(), None);
    // Written with its audit record, in the same commit.
    assert_eq!(audit_len(s).await, 2);
}

async fn notifications_are_queued_once_per_notifier_and_event(s: &Fresh) {
    let a = notification("slack", "grant.revoked:grt_0", 100);
    let again = notification("slack", "grant.revoked:grt_0", 100);
    let other = notification("mail", "grant.revoked:grt_0", 100);
    s.commit(Commit {
        notifications: vec![a.clone(), again.clone(), other.clone()],
        audit: vec![ev("a")],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert!(s.get_notification(&again.id).await.unwrap().is_none());
    let about = s.notifications_about("grt_0").await.unwrap();
    assert_eq!(about.len(), 2);
    assert_eq!(about[0].message, a.message);
    // A rolled-back commit queues nothing.
    let mut stale = request(10);
    stale.version = 7;
    let lost = notification("slack", "grant.revoked:grt_1", 100);
    assert!(
        s.commit(Commit {
            requests: vec![stale],
            notifications: vec![lost.clone()],
            ..Commit::default()
        })
        .await
        .is_err()
    );
    assert!(s.get_notification(&lost.id).await.unwrap().is_none());
}

async fn claims_are_leased_fenced_and_retried_when_due(s: &Fresh) {
    let now = notification("slack", "k1", 100);
    let later = notification("slack", "k2", 10_000);
    s.commit(Commit {
        notifications: vec![now.clone(), later.clone()],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert_eq!(s.next_notification_at().await.unwrap(), Some(t(100)));
    let got = s
        .claim_notifications(t(200), "w1", t(60_200), 10)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, now.id);
    let lease = got[0].lease.clone().unwrap();
    // Leased: nobody else gets it until the lease runs out.
    assert!(
        s.claim_notifications(t(300), "w2", t(60_300), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Only the lease holder settles it.
    let retry = Settle::Retry {
        run_at: t(5_000),
        error: "HTTP 500".into(),
    };
    assert!(
        !s.settle_notification(&now.id, "not-ours", &retry, t(400))
            .await
            .unwrap()
    );
    assert!(
        s.settle_notification(&now.id, &lease.token, &retry, t(400))
            .await
            .unwrap()
    );
    let back = s.get_notification(&now.id).await.unwrap().unwrap();
    assert_eq!(
        (back.attempts, back.last_error.as_deref()),
        (1, Some("HTTP 500"))
    );
    assert_eq!(s.next_notification_at().await.unwrap(), Some(t(5_000)));
    let stats = s.notification_stats().await.unwrap();
    assert_eq!((stats[0].pending, stats[0].dead), (2, 0));

    // Due again; this time it is given up.
    let got = s
        .claim_notifications(t(5_000), "w1", t(65_000), 10)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let token = got[0].lease.clone().unwrap().token;
    let dead = Settle::Dead {
        error: "HTTP 500".into(),
    };
    assert!(
        s.settle_notification(&now.id, &token, &dead, t(5_100))
            .await
            .unwrap()
    );
    // A settled notification cannot be settled again.
    assert!(
        !s.settle_notification(&now.id, &token, &Settle::Sent { receipt: None }, t(5_200))
            .await
            .unwrap()
    );
    let stats = s.notification_stats().await.unwrap();
    assert_eq!((stats[0].pending, stats[0].dead), (1, 1));

    // A worker that died holding a lease: its notification is claimable after a restart.
    let got = s
        .claim_notifications(t(10_000), "w1", t(70_000), 10)
        .await
        .unwrap();
    assert_eq!(got[0].id, later.id);
    assert_eq!(s.release_all_leases().await.unwrap(), 1);
    let again = s
        .claim_notifications(t(10_001), "w2", t(70_001), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
}

async fn sent_notifications_deduplicate_for_a_week_then_are_forgotten(s: &Fresh) {
    let n = notification("slack", "k", 100);
    s.commit(Commit {
        notifications: vec![n.clone()],
        ..Commit::default()
    })
    .await
    .unwrap();
    let got = s
        .claim_notifications(t(100), "w", t(1_000), 1)
        .await
        .unwrap();
    let token = got[0].lease.clone().unwrap().token;
    let receipt = Some("C0123:1712345678.000100".to_owned());
    assert!(
        s.settle_notification(
            &n.id,
            &token,
            &Settle::Sent {
                receipt: receipt.clone()
            },
            t(200)
        )
        .await
        .unwrap()
    );
    // The destination's receipt is kept with what was sent.
    assert_eq!(
        s.get_notification(&n.id).await.unwrap().unwrap().receipt,
        receipt
    );
    // Within the week the key still de-duplicates.
    let repeat = notification("slack", "k", 300);
    s.commit(Commit {
        notifications: vec![repeat.clone()],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert!(s.get_notification(&repeat.id).await.unwrap().is_none());
    let week = 7 * 24 * 3_600_000;
    assert!(
        s.claim_notifications(t(200 + week + 1), "w", t(week * 2), 1)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.get_notification(&n.id).await.unwrap().is_none());
}

contract! {
    tickets_find_their_bound_requests_and_live_access,
    webhook_ticket_state_is_remembered_per_source,
    notifications_are_queued_once_per_notifier_and_event,
    claims_are_leased_fenced_and_retried_when_due,
    sent_notifications_deduplicate_for_a_week_then_are_forgotten,
}
