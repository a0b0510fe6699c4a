//! Access reviews' part of the store contract: campaigns and their items round-trip and are
//! versioned (a stale write fails the whole commit), items page by id and filter by reviewer
//! and decision, progress is counted, due target work is found in order, and a principal's
//! reviewed eligibility holds one entry per access, the latest.

use hourglass_core::{
    Error,
    campaign::{
        Campaign, CampaignItem, CampaignScope, CampaignState, DefaultAction, Effect,
        EligibilityEntry, ItemDecision, Progress, Reviewer, ReviewerRule, Work,
    },
    id::{CampaignId, CampaignItemId, PrincipalId},
    store::{Commit, ItemFilter},
};

use super::{Fresh, audit_len, contract, ev, t};

fn campaign_id(n: u32) -> CampaignId {
    CampaignId::parse(&format!("cmp_{n:032x}")).unwrap()
}

fn item_id(n: u32) -> CampaignItemId {
    CampaignItemId::parse(&format!("itm_{n:032x}")).unwrap()
}

fn person(name: &str) -> Reviewer {
    Reviewer::Person(PrincipalId::new(name).unwrap())
}

pub(super) fn campaign(n: u32) -> Campaign {
    Campaign {
        id: campaign_id(n),
        name: format!("Q{n} review"),
        scope: CampaignScope::Eligibility,
        reviewers: ReviewerRule::Group("sre".into()),
        default_action: DefaultAction::Remove,
        state: CampaignState::Open,
        created_by: "carol".into(),
        created_at: t(1_000),
        deadline: t(90_000),
        remind_at: Some(t(60_000)),
        reminded: false,
        closed_at: None,
        items: 0,
        version: 0,
    }
}

/// An undecided eligibility item of campaign `c`, reviewed by bob.
pub(super) fn item(c: u32, n: u32) -> CampaignItem {
    CampaignItem {
        id: item_id(n),
        campaign: campaign_id(c),
        kind: CampaignScope::Eligibility,
        principal: Some(PrincipalId::new("alice").unwrap()),
        access: Some("pg/read".into()),
        target: None,
        holder: None,
        privilege: None,
        reviewer: person("bob"),
        decision: None,
        decided_by: None,
        decided_at: None,
        note: None,
        work: Work::None,
        run_at: None,
        attempts: 0,
        last_error: None,
        version: 0,
    }
}

fn decided(mut i: CampaignItem, d: ItemDecision, by: &str) -> CampaignItem {
    i.decision = Some(d);
    i.decided_by = Some(by.into());
    i.decided_at = Some(t(5_000));
    i
}

fn with_work(mut i: CampaignItem, work: Work, run_at: i64) -> CampaignItem {
    i.work = work;
    i.run_at = Some(t(run_at));
    i
}

async fn put(s: &Fresh, campaigns: Vec<Campaign>, items: Vec<CampaignItem>) {
    s.commit(Commit {
        campaigns,
        campaign_items: items,
        ..Commit::default()
    })
    .await
    .unwrap();
}

fn ids(items: &[CampaignItem]) -> Vec<CampaignItemId> {
    items.iter().map(|i| i.id.clone()).collect()
}

async fn campaigns_and_items_round_trip_and_a_stale_write_changes_nothing(s: &Fresh) {
    let mut c = campaign(1);
    c.items = 3;
    // Every optional field set on one item, none on another.
    let full = CampaignItem {
        kind: CampaignScope::Standing,
        target: Some("prod-pg".into()),
        holder: Some("alice_admin".into()),
        privilege: Some("rds_superuser".into()),
        reviewer: Reviewer::Group("dba".into()),
        note: Some("still on call".into()),
        attempts: 2,
        last_error: Some("connection refused".into()),
        ..with_work(
            decided(item(1, 1), ItemDecision::Convert, "bob"),
            Work::Pending,
            7_000,
        )
    };
    let bare = CampaignItem {
        kind: CampaignScope::Identities,
        principal: None,
        access: None,
        reviewer: Reviewer::Administrators,
        ..item(1, 2)
    };
    let mut other = item(1, 3);
    other.reviewer = person("dave");
    s.commit(Commit {
        campaigns: vec![c.clone()],
        campaign_items: vec![full.clone(), bare.clone(), other.clone()],
        audit: vec![ev("review started")],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert_eq!(
        s.get_campaign(&c.id).await.unwrap(),
        Some(Campaign {
            version: 1,
            ..c.clone()
        })
    );
    for i in [&full, &bare, &other] {
        assert_eq!(
            s.get_campaign_item(&i.id).await.unwrap(),
            Some(CampaignItem {
                version: 1,
                ..i.clone()
            })
        );
    }
    assert!(s.get_campaign(&campaign_id(9)).await.unwrap().is_none());
    assert!(s.get_campaign_item(&item_id(9)).await.unwrap().is_none());
    // The same id again is a conflict, not a second row.
    assert!(matches!(
        s.commit(Commit {
            campaigns: vec![c.clone()],
            ..Commit::default()
        })
        .await,
        Err(Error::StoreConflict)
    ));

    // Updated at the version read.
    let read = s.get_campaign_item(&other.id).await.unwrap().unwrap();
    let kept = decided(read.clone(), ItemDecision::Keep, "dave");
    put(s, Vec::new(), vec![kept]).await;
    let now = s.get_campaign_item(&other.id).await.unwrap().unwrap();
    assert_eq!((now.version, now.decision), (2, Some(ItemDecision::Keep)));

    // A second write from the same read, with a campaign change, eligibility and an audit
    // record: the stale item fails it all.
    let audited = audit_len(s).await;
    let mut closing = s.get_campaign(&c.id).await.unwrap().unwrap();
    closing.state = CampaignState::Closed;
    closing.closed_at = Some(t(9_000));
    closing.reminded = true;
    let err = s
        .commit(Commit {
            campaigns: vec![closing.clone()],
            campaign_items: vec![decided(read, ItemDecision::Remove, "dave")],
            eligibility: vec![EligibilityEntry {
                principal: PrincipalId::new("alice").unwrap(),
                access: "pg/read".into(),
                effect: Effect::Removed,
                item: other.id.clone(),
                at: t(9_000),
            }],
            audit: vec![ev("item decided")],
            ..Commit::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err, Error::StoreConflict);
    let after = s.get_campaign_item(&other.id).await.unwrap().unwrap();
    assert_eq!(
        (after.version, after.decision),
        (2, Some(ItemDecision::Keep))
    );
    let unchanged = s.get_campaign(&c.id).await.unwrap().unwrap();
    assert_eq!(
        (unchanged.version, unchanged.state),
        (1, CampaignState::Open)
    );
    assert!(
        s.eligibility_of(&PrincipalId::new("alice").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(audit_len(s).await, audited);

    // The campaign alone at its version goes through; then that version is stale too.
    put(s, vec![closing.clone()], Vec::new()).await;
    assert_eq!(
        s.get_campaign(&c.id).await.unwrap(),
        Some(Campaign {
            version: 2,
            ..closing.clone()
        })
    );
    assert!(matches!(
        s.commit(Commit {
            campaigns: vec![closing],
            ..Commit::default()
        })
        .await,
        Err(Error::StoreConflict)
    ));
}

async fn campaigns_list_newest_first_by_state(s: &Fresh) {
    let mut closed = campaign(2);
    closed.state = CampaignState::Closed;
    closed.closed_at = Some(t(5_000));
    // Written out of order, so that only the ORDER BY puts them in order.
    put(s, vec![campaign(3), closed, campaign(1)], Vec::new()).await;
    let listed = |v: Vec<Campaign>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        listed(s.list_campaigns(None, 10).await.unwrap()),
        [campaign_id(3), campaign_id(2), campaign_id(1)]
    );
    assert_eq!(
        listed(s.list_campaigns(None, 2).await.unwrap()),
        [campaign_id(3), campaign_id(2)]
    );
    assert_eq!(
        listed(
            s.list_campaigns(Some(CampaignState::Open), 10)
                .await
                .unwrap()
        ),
        [campaign_id(3), campaign_id(1)]
    );
    assert_eq!(
        listed(
            s.list_campaigns(Some(CampaignState::Closed), 10)
                .await
                .unwrap()
        ),
        [campaign_id(2)]
    );
}

async fn campaign_items_page_by_id_and_filter_by_reviewer_and_decision(s: &Fresh) {
    // Items 1-6 of campaign 1: odd ones bob's, even ones the sre group's; 2 and 3 decided.
    let mut items: Vec<CampaignItem> = (1..=6)
        .map(|n| {
            let mut i = item(1, n);
            if n % 2 == 0 {
                i.reviewer = Reviewer::Group("sre".into());
            }
            i
        })
        .collect();
    items[1] = decided(items[1].clone(), ItemDecision::Keep, "erin");
    items[2] = decided(items[2].clone(), ItemDecision::Remove, "bob");
    // Another campaign's item, bob's and undecided, between them by id.
    items.push(item(2, 4_000));
    // Written in reverse, so that only the ORDER BY puts them in order.
    items.reverse();
    put(s, vec![campaign(1), campaign(2)], items).await;

    let page = |undecided: bool, reviewer: Option<Reviewer>, after: Option<u32>, limit: u32| {
        let f = ItemFilter {
            campaign: campaign_id(1),
            undecided,
            reviewer,
            after: after.map(item_id),
            limit,
        };
        async move { ids(&s.campaign_items(&f).await.unwrap()) }
    };
    let want = |ns: &[u32]| ns.iter().copied().map(item_id).collect::<Vec<_>>();

    assert_eq!(
        page(false, None, None, 100).await,
        want(&[1, 2, 3, 4, 5, 6])
    );
    // Pages: `after` is exclusive, and the last page ends empty.
    assert_eq!(page(false, None, None, 2).await, want(&[1, 2]));
    assert_eq!(page(false, None, Some(2), 2).await, want(&[3, 4]));
    assert_eq!(page(false, None, Some(4), 2).await, want(&[5, 6]));
    assert_eq!(page(false, None, Some(6), 2).await, want(&[]));
    // Undecided only.
    assert_eq!(page(true, None, None, 100).await, want(&[1, 4, 5, 6]));
    assert_eq!(page(true, None, Some(1), 2).await, want(&[4, 5]));
    // One reviewer, exactly: bob, not the group, not another person.
    assert_eq!(
        page(false, Some(person("bob")), None, 100).await,
        want(&[1, 3, 5])
    );
    assert_eq!(
        page(true, Some(person("bob")), None, 100).await,
        want(&[1, 5])
    );
    assert_eq!(
        page(true, Some(person("bob")), Some(1), 100).await,
        want(&[5])
    );
    assert_eq!(
        page(false, Some(Reviewer::Group("sre".into())), Some(2), 1).await,
        want(&[4])
    );
    assert_eq!(page(false, Some(person("sre")), None, 100).await, want(&[]));
    assert_eq!(
        page(false, Some(Reviewer::Administrators), None, 100).await,
        want(&[])
    );
    // The other campaign sees only its own.
    let f = ItemFilter {
        campaign: campaign_id(2),
        undecided: true,
        reviewer: Some(person("bob")),
        after: None,
        limit: 100,
    };
    assert_eq!(ids(&s.campaign_items(&f).await.unwrap()), want(&[4_000]));
}

async fn campaign_progress_counts_decisions_defaults_and_work(s: &Fresh) {
    assert_eq!(
        s.campaign_progress(&campaign_id(1)).await.unwrap(),
        Progress::default()
    );
    put(
        s,
        vec![campaign(1), campaign(2)],
        vec![
            decided(item(1, 1), ItemDecision::Keep, "bob"),
            decided(item(1, 2), ItemDecision::Remove, "deadline"),
            decided(item(1, 3), ItemDecision::Keep, "deadline"),
            with_work(
                decided(item(1, 4), ItemDecision::Convert, "bob"),
                Work::Pending,
                10,
            ),
            with_work(
                decided(item(1, 5), ItemDecision::Remove, "bob"),
                Work::Failed,
                10,
            ),
            with_work(
                decided(item(1, 6), ItemDecision::Remove, "bob"),
                Work::Done,
                10,
            ),
            item(1, 7),
            item(1, 8),
            // Another campaign's items count there only.
            with_work(
                decided(item(2, 9), ItemDecision::Convert, "deadline"),
                Work::Pending,
                10,
            ),
        ],
    )
    .await;
    assert_eq!(
        s.campaign_progress(&campaign_id(1)).await.unwrap(),
        Progress {
            total: 8,
            decided: 6,
            keep: 2,
            remove: 3,
            convert: 1,
            by_default: 2,
            work_pending: 1,
            work_failed: 1,
        }
    );
    assert_eq!(
        s.campaign_progress(&campaign_id(2)).await.unwrap(),
        Progress {
            total: 1,
            decided: 1,
            keep: 0,
            remove: 0,
            convert: 1,
            by_default: 1,
            work_pending: 1,
            work_failed: 0,
        }
    );
}

async fn due_campaign_work_is_pending_due_and_in_order(s: &Fresh) {
    let standing = |n: u32, work: Work, run_at: i64| {
        with_work(
            decided(item(1, n), ItemDecision::Remove, "bob"),
            work,
            run_at,
        )
    };
    put(
        s,
        vec![campaign(1)],
        vec![
            standing(1, Work::Pending, 300),
            standing(2, Work::Pending, 100),
            standing(3, Work::Pending, 100),
            standing(4, Work::Pending, 900),
            standing(5, Work::Done, 50),
            standing(6, Work::Failed, 50),
            standing(7, Work::None, 50),
            item(1, 8),
        ]
        .into_iter()
        .rev()
        .collect(),
    )
    .await;
    let due = |now: i64, limit: u32| async move {
        ids(&s.due_campaign_work(t(now), limit).await.unwrap())
    };
    let want = |ns: &[u32]| ns.iter().copied().map(item_id).collect::<Vec<_>>();
    assert_eq!(due(500, 10).await, want(&[2, 3, 1]));
    assert_eq!(due(500, 2).await, want(&[2, 3]));
    assert_eq!(due(100, 10).await, want(&[2, 3]), "due at run_at itself");
    assert_eq!(due(99, 10).await, want(&[]));
    assert_eq!(due(1_000, 10).await, want(&[2, 3, 1, 4]));

    // Done work is due no more.
    let mut done = s.get_campaign_item(&item_id(2)).await.unwrap().unwrap();
    done.work = Work::Done;
    put(s, Vec::new(), vec![done]).await;
    assert_eq!(due(500, 10).await, want(&[3, 1]));
}

async fn eligibility_keeps_the_latest_entry_per_principal_and_access(s: &Fresh) {
    put(s, vec![campaign(1)], (1..=4).map(|n| item(1, n)).collect()).await;
    let alice = PrincipalId::new("alice").unwrap();
    let bob = PrincipalId::new("bob").unwrap();
    let entry = |p: &PrincipalId, access: &str, effect: Effect, n: u32, at: i64| EligibilityEntry {
        principal: p.clone(),
        access: access.into(),
        effect,
        item: item_id(n),
        at: t(at),
    };
    s.commit(Commit {
        eligibility: vec![
            entry(&alice, "pg/read", Effect::Added, 1, 100),
            entry(&alice, "ops/bundle", Effect::Removed, 2, 100),
            entry(&bob, "pg/read", Effect::Removed, 3, 100),
        ],
        ..Commit::default()
    })
    .await
    .unwrap();
    // A later review removes what an earlier one added: one entry, the removal.
    s.commit(Commit {
        eligibility: vec![entry(&alice, "pg/read", Effect::Removed, 4, 200)],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert_eq!(
        s.eligibility_of(&alice).await.unwrap(),
        [
            entry(&alice, "ops/bundle", Effect::Removed, 2, 100),
            entry(&alice, "pg/read", Effect::Removed, 4, 200),
        ]
    );
    assert_eq!(
        s.eligibility_of(&bob).await.unwrap(),
        [entry(&bob, "pg/read", Effect::Removed, 3, 100)]
    );
    assert!(
        s.eligibility_of(&PrincipalId::new("carol").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

contract! {
    campaigns_and_items_round_trip_and_a_stale_write_changes_nothing,
    campaigns_list_newest_first_by_state,
    campaign_items_page_by_id_and_filter_by_reviewer_and_decision,
    campaign_progress_counts_decisions_defaults_and_work,
    due_campaign_work_is_pending_due_and_in_order,
    eligibility_keeps_the_latest_entry_per_principal_and_access,
}
