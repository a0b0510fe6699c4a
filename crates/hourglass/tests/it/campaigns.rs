//! Access reviews end to end: a campaign over eligibility whose removals refuse the next
//! request without a policy edit, reminders, the deadline's default action, identities removed
//! by their owners, and standing PostgreSQL privilege converted to just-in-time through the real
//! connector.

use hourglass_api::{
    CampaignDetails, CampaignItemView, CampaignScope, DefaultAction, ItemDecision, ItemWork,
    StartCampaign,
};
use hourglass_testkit::{TestServer, eventually, spawn_server_with};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::lifecycle::{ask, audit_len, problem};

fn start(scope: CampaignScope, reviewers: &str, default: DefaultAction) -> StartCampaign {
    StartCampaign {
        name: "Q4 access review".into(),
        scope,
        reviewers: reviewers.into(),
        default_action: default,
        duration: "1d".into(),
        remind_before: Some("12h".into()),
    }
}

/// Every item of a campaign, as an administrator sees them.
async fn items(s: &TestServer, id: &str) -> Vec<CampaignItemView> {
    s.client("admin").campaign(id, None).await.unwrap().items
}

fn item<'a>(all: &'a [CampaignItemView], principal: &str, access: &str) -> &'a CampaignItemView {
    all.iter()
        .find(|i| i.principal.as_deref() == Some(principal) && i.access.as_deref() == Some(access))
        .unwrap_or_else(|| panic!("no item for {principal} and {access}: {all:?}"))
}

async fn actions(s: &TestServer, after: usize) -> Vec<(String, String, Vec<(String, String)>)> {
    s.store()
        .unwrap()
        .audit_after(after as u64, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.record.action, e.record.subject, e.record.details))
        .collect()
}

#[tokio::test]
async fn an_eligibility_review_removes_at_the_next_request_and_the_deadline_applies_its_default() {
    // Approvers (bob, and admin) may ask for logs too.
    let s = spawn_server_with(|dir, text| {
        std::fs::write(
            dir.join("policies/approvers-ask.cedar"),
            "@id(\"approvers-may-ask-for-logs\")\npermit (principal in Hourglass::Group::\"approvers\", action == Hourglass::Action::\"Request\", resource == Hourglass::Entitlement::\"demo/read-logs\");\n",
        )
        .unwrap();
        text.to_owned()
    })
    .await
    .unwrap();
    let (admin, alice, bob) = (s.client("admin"), s.client("alice"), s.client("bob"));

    // Bad input and people who may not start one change nothing.
    let before = audit_len(&s).await;
    let mut bad = start(CampaignScope::Eligibility, "boss", DefaultAction::Remove);
    let e = problem(admin.start_campaign(&bad).await.unwrap_err());
    assert_eq!(
        (e.status, e.code.as_str(), e.field.as_deref()),
        (400, "campaign.invalid", Some("reviewers"))
    );
    bad.reviewers = "manager".into();
    bad.duration = "10m".into();
    let e = problem(admin.start_campaign(&bad).await.unwrap_err());
    assert_eq!(
        (e.code.as_str(), e.field.as_deref()),
        ("campaign.invalid", Some("duration"))
    );
    bad.duration = "1d".into();
    bad.remind_before = Some("2d".into());
    let e = problem(admin.start_campaign(&bad).await.unwrap_err());
    assert_eq!(e.field.as_deref(), Some("remind_before"));
    let e = problem(
        alice
            .start_campaign(&start(
                CampaignScope::Eligibility,
                "manager",
                DefaultAction::Keep,
            ))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.status, e.code.as_str()), (403, "campaign.not_allowed"));
    assert!(admin.campaigns().await.unwrap().is_empty());
    assert_eq!(audit_len(&s).await, before);

    // Who may ask for what, from policy: alice may ask for read-logs and ops-admin; bob reports
    // to alice, so she reviews his items; alice has no manager, so the administrators review hers.
    let c = admin
        .start_campaign(&start(
            CampaignScope::Eligibility,
            "manager",
            DefaultAction::Remove,
        ))
        .await
        .unwrap();
    assert_eq!(c.state, hourglass_api::CampaignState::Open);
    let all = items(&s, &c.id).await;
    assert_eq!(c.progress.unwrap().total, all.len() as u64);
    let logs = item(&all, "alice", "demo/read-logs");
    let ops = item(&all, "alice", "demo/ops-admin");
    assert_eq!(logs.reviewer, "administrators");
    assert!(
        all.iter()
            .all(|i| i.principal.as_deref() != Some("bob") || i.reviewer == "person:alice"),
        "{all:?}"
    );
    assert!(
        all.iter()
            .all(|i| i.decision.is_none() && i.work == ItemWork::None)
    );

    // Reviewers see their own items only; someone else's item is not found.
    let mine = alice.my_campaign_items().await.unwrap();
    assert!(!mine.is_empty(), "bob's item waits for alice");
    assert!(
        mine.iter()
            .flat_map(|d| &d.items)
            .all(|i| i.reviewer == "person:alice")
    );
    let e = problem(
        alice
            .decide_item(&logs.id, ItemDecision::Keep, None)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.status, e.code.as_str()),
        (404, "campaign.item_not_found")
    );
    let e = problem(bob.campaign(&c.id, None).await.unwrap_err());
    assert_eq!(e.status, 404);
    // Nobody reviews their own access, administrators included.
    let own = item(&all, "admin", "demo/read-logs");
    let e = problem(
        admin
            .decide_item(&own.id, ItemDecision::Keep, None)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.status, e.code.as_str()), (403, "campaign.self_review"));
    // Convert is for standing privilege.
    let e = problem(
        admin
            .decide_item(&logs.id, ItemDecision::Convert, None)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.status, e.code.as_str()),
        (400, "campaign.decision_invalid")
    );

    // alice may read logs now; the administrators remove it; her next request is refused by
    // the review's decision, named as the policy, and the catalogue no longer offers it.
    assert!(
        alice
            .catalogue()
            .await
            .unwrap()
            .iter()
            .any(|o| o.name == "demo/read-logs")
    );
    let at = audit_len(&s).await;
    let decided = admin
        .decide_item(
            &logs.id,
            ItemDecision::Remove,
            Some("not needed since the move"),
        )
        .await
        .unwrap();
    assert_eq!(decided.decision, Some(ItemDecision::Remove));
    assert_eq!(decided.decided_by.as_deref(), Some("admin"));
    let e = problem(
        alice
            .create_request(&ask("demo/read-logs", "10m", "after the review"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.status, e.code.as_str()),
        (403, "request.not_eligible"),
        "{e:?}"
    );
    assert!(
        !alice
            .catalogue()
            .await
            .unwrap()
            .iter()
            .any(|o| o.name == "demo/read-logs")
    );
    let events = actions(&s, at).await;
    let removed = events
        .iter()
        .find(|(a, _, _)| a == "eligibility.removed")
        .expect("eligibility.removed");
    assert_eq!(removed.1, "alice");
    assert!(
        removed
            .2
            .contains(&("access".into(), "demo/read-logs".into()))
    );
    assert!(events.iter().any(|(a, sub, d)| a == "campaign.item_decided"
        && *sub == logs.id
        && d.contains(&("decision".into(), "remove".into()))
        && d.contains(&("note".into(), "not needed since the move".into()))));
    let refused = events
        .iter()
        .find(|(a, _, _)| a == "request.refused")
        .expect("request.refused");
    assert!(
        refused
            .2
            .iter()
            .any(|(k, v)| k == "policy_ids" && *v == format!("hourglass:review:{}", logs.id))
    );
    // A decided item stays decided.
    let e = problem(
        admin
            .decide_item(&logs.id, ItemDecision::Keep, None)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.status, e.code.as_str()), (409, "campaign.item_decided"));

    // alice keeps one of bob's items.
    let b = item(&all, "bob", "demo/read-logs").clone();
    assert_eq!(b.reviewer, "person:alice");
    assert!(
        alice.my_campaign_items().await.unwrap()[0]
            .items
            .iter()
            .any(|i| i.id == b.id)
    );
    alice
        .decide_item(&b.id, ItemDecision::Keep, None)
        .await
        .unwrap();

    // 12 hours before the deadline, reviewers with undecided items are reminded, once each.
    let at = audit_len(&s).await;
    s.clock.advance_ms(12 * 3_600_000 + 1_000);
    assert!(
        eventually(|| async {
            actions(&s, at)
                .await
                .iter()
                .any(|(a, _, _)| a == "campaign.reminded")
        })
        .await
    );
    let reminded: Vec<_> = actions(&s, at)
        .await
        .into_iter()
        .filter(|(a, _, _)| a == "campaign.reminded")
        .collect();
    assert!(reminded.iter().all(|(_, sub, _)| *sub == c.id));
    assert_eq!(
        reminded.len(),
        1,
        "only the administrators have items left: {reminded:?}"
    );
    assert!(
        reminded
            .iter()
            .any(|(_, _, d)| d.contains(&("reviewer".into(), "administrators".into()))),
        "{reminded:?}"
    );
    // alice decided her only item (bob's): she is not reminded; nobody is reminded twice.
    assert!(
        !reminded
            .iter()
            .any(|(_, _, d)| d.contains(&("reviewer".into(), "person:alice".into()))),
        "{reminded:?}"
    );

    // At the deadline every undecided item takes the default action (remove), and the
    // campaign closes: alice's ops-admin eligibility is gone too; bob's kept item stays.
    let at = audit_len(&s).await;
    s.clock.advance_ms(12 * 3_600_000);
    assert!(
        eventually(|| async {
            admin.campaign(&c.id, None).await.unwrap().campaign.state
                == hourglass_api::CampaignState::Closed
        })
        .await
    );
    let CampaignDetails {
        campaign,
        items: after,
    } = admin.campaign(&c.id, None).await.unwrap();
    let p = campaign.progress.unwrap();
    assert_eq!(p.decided, p.total);
    assert_eq!(p.by_default, p.total - 2, "all but the two people decided");
    let ops_now = item(&after, "alice", "demo/ops-admin");
    assert_eq!(ops_now.decision, Some(ItemDecision::Remove));
    assert_eq!(ops_now.decided_by.as_deref(), Some("deadline"));
    let e = problem(
        alice
            .create_request(&ask("demo/ops-admin", "30m", "after the deadline"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, "request.not_eligible");
    {
        let kept = after.iter().find(|i| i.id == b.id).unwrap();
        assert_eq!(
            (kept.decision, kept.decided_by.as_deref()),
            (Some(ItemDecision::Keep), Some("alice"))
        );
    }
    let events = actions(&s, at).await;
    let closed = events
        .iter()
        .find(|(a, _, _)| a == "campaign.closed")
        .expect("campaign.closed");
    assert!(
        closed
            .2
            .contains(&("by_default".into(), p.by_default.to_string()))
    );
    assert!(events.iter().any(|(a, _, d)| a == "campaign.item_decided"
        && d.contains(&("by_default".into(), "true".into()))));
    // A closed campaign takes no more decisions.
    let e = problem(
        alice
            .decide_item(&b.id, ItemDecision::Remove, None)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.status, e.code.as_str()), (409, "campaign.closed"));
    // The worker ran passes after the reminder (it closed the campaign): still one reminder
    // per reviewer.
    assert_eq!(
        actions(&s, 0)
            .await
            .iter()
            .filter(|(a, _, _)| a == "campaign.reminded")
            .count(),
        reminded.len()
    );
    // A removal refuses breaking glass too (alice may break glass into ops-admin by policy).
    let mut glass = ask("demo/ops-admin", "15m", "emergency after the review");
    glass.break_glass = true;
    let e = problem(alice.create_request(&glass).await.unwrap_err());
    assert_eq!(
        (e.status, e.code.as_str()),
        (403, "request.break_glass_not_allowed"),
        "{e:?}"
    );
    let refused = actions(&s, 0)
        .await
        .into_iter()
        .rfind(|(a, _, _)| a == "request.refused")
        .unwrap();
    assert!(
        refused
            .2
            .iter()
            .any(|(k, v)| k == "policy_ids" && *v == format!("hourglass:review:{}", ops.id)),
        "{refused:?}"
    );
    // bob's kept eligibility still stands.
    assert!(
        s.client("bob")
            .catalogue()
            .await
            .unwrap()
            .iter()
            .any(|o| o.name == "demo/read-logs")
    );
    s.stop().await;
}

#[tokio::test]
async fn an_owner_removes_an_agent_in_an_identity_review_and_the_deadline_keeps_the_rest() {
    let s = spawn_server_with(|_, text| text.to_owned()).await.unwrap();
    let (admin, alice) = (s.client("admin"), s.client("alice"));
    let c = admin
        .start_campaign(&start(
            CampaignScope::Identities,
            "owner",
            DefaultAction::Keep,
        ))
        .await
        .unwrap();
    let all = items(&s, &c.id).await;
    let bot = all
        .iter()
        .find(|i| i.principal.as_deref() == Some("support-bot"))
        .unwrap();
    let ci = all
        .iter()
        .find(|i| i.principal.as_deref() == Some("ci-deployer"))
        .unwrap();
    assert_eq!(
        (bot.reviewer.as_str(), ci.reviewer.as_str()),
        ("person:alice", "person:alice")
    );
    assert!(
        bot.privilege.as_deref().unwrap().contains("owned by alice"),
        "{bot:?}"
    );
    assert!(
        all.iter().all(|i| i.principal.as_deref() != Some("alice")),
        "people are not in it"
    );

    // The agent cannot review itself or anything else.
    let e = problem(
        s.client("support-bot")
            .decide_item(&bot.id, ItemDecision::Keep, None)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.status, 403);
    alice
        .decide_item(&bot.id, ItemDecision::Remove, Some("the pilot ended"))
        .await
        .unwrap();
    let bot_now = admin
        .identities()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.name == "support-bot")
        .unwrap();
    assert_eq!(bot_now.status.as_str(), "suspended");
    assert!(s.client("support-bot").whoami().await.is_err());

    s.clock.advance_ms(24 * 3_600_000 + 1_000);
    assert!(
        eventually(|| async {
            admin.campaign(&c.id, None).await.unwrap().campaign.state
                == hourglass_api::CampaignState::Closed
        })
        .await
    );
    let ci_now = items(&s, &c.id)
        .await
        .into_iter()
        .find(|i| i.id == ci.id)
        .unwrap();
    assert_eq!(
        (ci_now.decision, ci_now.decided_by.as_deref()),
        (Some(ItemDecision::Keep), Some("deadline"))
    );
    assert!(
        s.client("ci-deployer").whoami().await.is_ok(),
        "kept by default"
    );
    s.stop().await;
}

const CONVERT_POLICY: &str = r#"
@id("admins-approve-pgc")
permit (
  principal in Hourglass::Group::"admins",
  action == Hourglass::Action::"Approve",
  resource is Hourglass::Entitlement
)
when { resource.target == "pgc" };
"#;

async fn member_of(db: &hourglass_testdb::TestDb, member: &str, role: &str) -> bool {
    let mut c = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query_scalar("SELECT pg_has_role($1, $2, 'MEMBER')")
        .bind(member)
        .bind(role)
        .fetch_one(&mut c)
        .await
        .unwrap()
}

#[tokio::test]
async fn standing_pg_read_all_data_is_converted_to_just_in_time_through_the_postgres_connector() {
    let Some(db) = hourglass_testdb::postgres().await else {
        return;
    };
    // alice's own database role holds pg_read_all_data standing, outside any grant.
    let login = format!("{}_alice", db.name);
    let mut c = PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE ROLE {login} LOGIN; GRANT pg_read_all_data TO {login};"
    )))
    .execute(&mut c)
    .await
    .unwrap();
    assert!(member_of(&db, &login, "pg_read_all_data").await);
    let (url, prefix, login_in) = (db.url.clone(), db.prefix.clone(), login.clone());
    let s = spawn_server_with(move |dir, text| {
        std::fs::write(dir.join("policies/pgc.cedar"), CONVERT_POLICY).unwrap();
        format!(
            "{text}\n[[targets]]\nname = \"pgc\"\nconnector = \"postgres\"\n[targets.postgres]\nurl = \"{url}\"\nprefix = \"{prefix}\"\ntimeout_secs = 5\nlogins = {{ alice = \"{login_in}\" }}\n\n\
             [[entitlements]]\nname = \"pgc/read-all\"\ndefault_duration = \"10m\"\nmax_duration = \"1h\"\n[entitlements.params]\nroles = [\"pg_read_all_data\"]\nmode = \"membership\"\n"
        )
    })
    .await
    .unwrap();
    let (admin, alice) = (s.client("admin"), s.client("alice"));
    // No policy lets alice ask for it: she holds it standing instead.
    let e = problem(
        alice
            .create_request(&ask("pgc/read-all", "10m", "read the data"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, "request.not_eligible");

    let c = admin
        .start_campaign(&start(
            CampaignScope::Standing,
            "administrators",
            DefaultAction::Keep,
        ))
        .await
        .unwrap();
    let all = items(&s, &c.id).await;
    let standing = all
        .iter()
        .find(|i| i.holder.as_deref() == Some(login.as_str()))
        .unwrap_or_else(|| panic!("{all:?}"));
    assert_eq!(
        (
            standing.target.as_deref(),
            standing.privilege.as_deref(),
            standing.principal.as_deref(),
            standing.access.as_deref()
        ),
        (
            Some("pgc"),
            Some("pg_read_all_data"),
            Some("alice"),
            Some("pgc/read-all")
        )
    );
    let at = audit_len(&s).await;
    let decided = admin
        .decide_item(
            &standing.id,
            ItemDecision::Convert,
            Some("just in time from now on"),
        )
        .await
        .unwrap();
    assert_eq!(decided.work, ItemWork::Pending);
    // The connector job takes the membership away, and discovery confirms it.
    assert!(
        eventually(|| async {
            items(&s, &c.id)
                .await
                .iter()
                .any(|i| i.id == standing.id && i.work == ItemWork::Done)
        })
        .await,
        "{:?}",
        items(&s, &c.id).await.iter().find(|i| i.id == standing.id)
    );
    assert!(!member_of(&db, &login, "pg_read_all_data").await);
    let events = actions(&s, at).await;
    let added = events
        .iter()
        .find(|(a, _, _)| a == "eligibility.added")
        .expect("eligibility.added");
    assert_eq!(added.1, "alice");
    assert!(added.2.contains(&("access".into(), "pgc/read-all".into())));
    let removed = events
        .iter()
        .find(|(a, sub, _)| a == "standing.removed" && *sub == standing.id)
        .expect("standing.removed");
    assert!(removed.2.contains(&("holder".into(), login.clone())));
    assert!(
        removed
            .2
            .iter()
            .any(|(k, v)| k == "checked" && v.contains("no longer finds"))
    );

    // alice is eligible now: she asks, an administrator approves, and the membership exists
    // for the window only.
    let r = alice
        .create_request(&ask("pgc/read-all", "10m", "read the data"))
        .await
        .unwrap();
    assert_eq!(r.state, "pending");
    admin.approve(&r.id, None).await.unwrap();
    let gid = admin.get_request(&r.id).await.unwrap().grant_id.unwrap();
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "active" }).await);
    assert!(member_of(&db, &login, "pg_read_all_data").await);
    s.clock.advance_ms(10 * 60_000 + 1_000);
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "revoked" }).await);
    assert!(
        !member_of(&db, &login, "pg_read_all_data").await,
        "the standing membership is not restored at the grant's end"
    );
    s.stop().await;
    let mut c = PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!("DROP ROLE IF EXISTS {login}")))
        .execute(&mut c)
        .await
        .ok();
}

#[tokio::test]
async fn campaigns_are_started_followed_and_decided_in_the_web_app() {
    use crate::app::Browser;
    let s = spawn_server_with(|_, text| format!("{text}\n[web]\ndemo_sign_in = true\n"))
        .await
        .unwrap();
    let admin = Browser::sign_in(&s, "admin").await;
    let alice = Browser::sign_in(&s, "alice").await;

    // Only administrators see the page and start campaigns; a form without its CSRF token
    // starts nothing.
    assert_eq!(alice.get("/admin/campaigns").await.0, 403);
    let form = [
        ("name", "Agents <b>Q1</b>"),
        ("scope", "identities"),
        ("reviewers", "owner"),
        ("duration", "7d"),
        ("remind_before", "1d"),
        ("default_action", "remove"),
    ];
    assert_eq!(
        admin.post("/admin/campaigns", &form, false).await.status(),
        403
    );
    assert_eq!(
        alice.post("/admin/campaigns", &form, true).await.status(),
        400
    );
    assert!(s.client("admin").campaigns().await.unwrap().is_empty());
    let bad = admin
        .post(
            "/admin/campaigns",
            &[
                ("name", "x"),
                ("scope", "identities"),
                ("default_action", "keep"),
                ("reviewers", "boss"),
                ("duration", "7d"),
            ],
            true,
        )
        .await;
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("reviewers must be"));
    let no_scope = admin
        .post(
            "/admin/campaigns",
            &[("name", "x"), ("reviewers", "owner"), ("duration", "7d")],
            true,
        )
        .await;
    assert_eq!(no_scope.status(), 400);
    assert!(
        no_scope
            .text()
            .await
            .unwrap()
            .contains("choose eligibility")
    );
    assert_eq!(
        admin.post("/admin/campaigns", &form, true).await.status(),
        303
    );
    let (status, page) = admin.get("/admin/campaigns").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Agents &#60;b&#62;Q1&#60;/b&#62;"),
        "the name is shown as text"
    );
    let c = &s.client("admin").campaigns().await.unwrap()[0];
    assert!(page.contains(&format!("/reviews/{}", c.id)));

    // alice owns the support agent: it waits for her at /reviews, and she removes it.
    let (status, page) = alice.get("/reviews").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("support-bot") && page.contains("ci-deployer"),
        "{page}"
    );
    let bot = items(&s, &c.id)
        .await
        .into_iter()
        .find(|i| i.principal.as_deref() == Some("support-bot"))
        .unwrap();
    let path = format!("/reviews/items/{}", bot.id);
    assert_eq!(
        alice
            .post(&path, &[("decision", "remove")], false)
            .await
            .status(),
        403,
        "no CSRF token, nothing decided"
    );
    assert!(items(&s, &c.id).await.iter().all(|i| i.decision.is_none()));
    let back = format!("/reviews/{}", c.id);
    let done = alice
        .post(
            &path,
            &[
                ("decision", "remove"),
                ("note", "pilot over"),
                ("back", &back),
            ],
            true,
        )
        .await;
    assert_eq!(done.status(), 303);
    assert_eq!(done.headers()["location"].to_str().unwrap(), back);
    let (_, page) = alice.get(&back).await;
    assert!(page.contains("remove by alice: pilot over"), "{page}");
    // Deciding it again says why not, and changes nothing.
    let again = alice.post(&path, &[("decision", "keep")], true).await;
    assert_eq!(again.status(), 400);
    assert!(again.text().await.unwrap().contains("already decided"));
    s.stop().await;
}

#[tokio::test]
async fn a_scheduled_campaign_starts_once_a_period_and_a_bad_schedule_names_its_key() {
    let err = spawn_server_with(|_, text| {
        format!(
            "{text}\n[[campaigns]]\nname = \"q\"\nscope = \"everything\"\nreviewers = \"boss\"\nevery = \"90d\"\nduration = \"100d\"\n"
        )
    })
    .await
    .err()
    .expect("a bad schedule is refused at start")
    .to_string();
    for key in [
        "campaigns[0].scope",
        "campaigns[0].reviewers",
        "campaigns[0].duration",
    ] {
        assert!(err.contains(key), "{key} in {err}");
    }

    let s = spawn_server_with(|_, text| {
        format!(
            "{text}\n[[campaigns]]\nname = \"Agents, every quarter\"\nscope = \"identities\"\nreviewers = \"owner\"\nevery = \"90d\"\nduration = \"14d\"\nremind_before = \"3d\"\n"
        )
    })
    .await
    .unwrap();
    let admin = s.client("admin");
    assert!(eventually(|| async { admin.campaigns().await.unwrap().len() == 1 }).await);
    let first = admin.campaigns().await.unwrap().remove(0);
    assert_eq!(
        (first.created_by.as_str(), first.name.as_str()),
        ("schedule", "Agents, every quarter")
    );
    assert!(first.progress.unwrap().total >= 2, "{first:?}");
    // Later in the same period: still one. Past its deadline it closes (default keep).
    s.clock.advance_ms(15 * 86_400_000);
    assert!(
        eventually(|| async {
            admin.campaigns().await.unwrap()[0].state == hourglass_api::CampaignState::Closed
        })
        .await
    );
    assert_eq!(admin.campaigns().await.unwrap().len(), 1);
    // The next period starts the next one.
    s.clock.advance_ms(90 * 86_400_000);
    assert!(eventually(|| async { admin.campaigns().await.unwrap().len() == 2 }).await);
    let all = admin.campaigns().await.unwrap();
    assert_eq!(all[0].state, hourglass_api::CampaignState::Open);
    assert_ne!(all[0].id, all[1].id);
    s.stop().await;
}
