//! "Why was anyone elevated?": the story of each elevated state, from the audit chain, with the
//! chain head that covers it; through the API and the CLI.

use hourglass_core::Clock;
use hourglass_testkit::{eventually, spawn_server};

use crate::lifecycle::{ask, problem};

#[tokio::test]
async fn the_story_of_an_elevation_comes_from_the_chain_with_its_head() {
    let s = spawn_server(|c| format!("{c}\n[web]\ndemo_sign_in = true\n"))
        .await
        .unwrap();
    let (alice, bob, admin) = (s.client("alice"), s.client("bob"), s.client("admin"));
    let before = s.clock.now();
    s.clock.advance_ms(60_000);
    let r = alice
        .create_request(&ask(
            "demo/ops-admin",
            "30m",
            "restart the <b>stuck</b> worker",
        ))
        .await
        .unwrap();
    bob.approve(&r.id, Some("go ahead".into())).await.unwrap();
    let gid = alice.get_request(&r.id).await.unwrap().grant_id.unwrap();
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "active" }).await);
    s.clock.advance_ms(5 * 60_000);
    let during = s.clock.now().to_string();
    s.clock.advance_ms(60_000);
    alice.revoke(&gid, Some("done".into())).await.unwrap();
    assert!(eventually(|| async { alice.get_grant(&gid).await.unwrap().state == "revoked" }).await);

    let w = admin
        .why(&[("principal", "alice"), ("at", during.as_str())])
        .await
        .unwrap();
    assert_eq!(w.elevated.len(), 1, "{w:?}");
    let e = &w.elevated[0];
    assert_eq!(
        (
            e.grant_id.as_str(),
            e.reason.as_str(),
            e.entitlement.as_str()
        ),
        (
            gid.as_str(),
            "restart the <b>stuck</b> worker",
            "demo/ops-admin"
        )
    );
    assert!(e.active_until.is_some());
    let actions: Vec<&str> = e.story.iter().map(|l| l.action.as_str()).collect();
    for wanted in [
        "request.created",
        "approval.recorded",
        "request.approved",
        "request.fulfilled",
        "grant.created",
        "grant.activated",
        "grant.revoke_requested",
        "grant.revoked",
        "grant.revocation_verified",
    ] {
        assert!(actions.contains(&wanted), "{wanted} missing: {actions:?}");
    }
    // The approval: who, with a second factor or not, and the policies that let them.
    let approved = e
        .story
        .iter()
        .find(|l| l.action == "approval.recorded")
        .unwrap();
    assert_eq!(approved.actor, "bob");
    assert!(
        approved.details.contains(&("mfa".into(), "false".into())),
        "{approved:?}"
    );
    assert!(approved.details.iter().any(|(k, _)| k == "policy_ids"));
    // Every line is in the chain at or before the head the answer names.
    assert!(e.story.windows(2).all(|p| p[0].seq < p[1].seq));
    assert!(e.story.iter().all(|l| l.seq <= w.head_seq));
    let chain = admin.audit(0).await.unwrap();
    let head = chain.iter().find(|ev| ev.seq == w.head_seq).unwrap();
    assert_eq!(head.hash, w.head_hash);
    for l in &e.story {
        let ev = chain.iter().find(|ev| ev.seq == l.seq).unwrap();
        assert_eq!(
            (ev.action.as_str(), &ev.details),
            (l.action.as_str(), &l.details)
        );
    }

    // Before it existed, nothing; a person may ask about themselves, not about others.
    let w = admin
        .why(&[("principal", "alice"), ("at", before.to_string().as_str())])
        .await
        .unwrap();
    assert!(w.elevated.is_empty());
    assert_eq!(
        alice
            .why(&[("principal", "alice"), ("at", during.as_str())])
            .await
            .unwrap()
            .elevated
            .len(),
        1
    );
    let p = problem(
        bob.why(&[("principal", "alice"), ("at", during.as_str())])
            .await
            .unwrap_err(),
    );
    assert_eq!((p.status, p.code.as_str()), (403, "why.not_allowed"));
    let p = problem(
        admin
            .why(&[("principal", "alice"), ("at", "yesterday")])
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (p.code.as_str(), p.field.as_deref()),
        ("why.range_invalid", Some("at"))
    );

    // Evidence: the period's windows as JSON and CSV, each with its digest, the head it was
    // read under, and a manifest signed with Hourglass's key.
    let logs = alice
        .create_request(&ask(
            "demo/read-logs",
            "10m",
            "=HYPERLINK(\"x\"),\"quoted\"",
        ))
        .await
        .unwrap();
    let logs_grant = logs.grant_id.unwrap();
    assert!(
        eventually(|| async { alice.get_grant(&logs_grant).await.unwrap().state == "active" })
            .await
    );
    let (from, to) = (
        before.to_string(),
        s.clock.now().plus_millis(60_000).to_string(),
    );
    let jwks: serde_json::Value = reqwest::get(format!("http://{}/.well-known/jwks.json", s.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for format in ["json", "csv"] {
        let (body, headers) = admin
            .export_elevations(&[
                ("from", from.as_str()),
                ("to", to.as_str()),
                ("format", format),
            ])
            .await
            .unwrap();
        let header = |k: &str| headers.iter().find(|(n, _)| n == k).unwrap().1.clone();
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
        assert_eq!(header("x-hourglass-export-sha256"), digest);
        let now = s.clock.now().unix_millis() / 1000;
        let claims =
            crate::workload::verify_independently(&header("x-hourglass-manifest"), &jwks, now)
                .unwrap();
        assert_eq!(claims["sha256"], digest.as_str());
        assert_eq!(claims["rows"], 2);
        assert_eq!(
            claims["head_seq"].to_string(),
            header("x-hourglass-head-seq")
        );
        let text = String::from_utf8(body).unwrap();
        if format == "csv" {
            let mut lines = text.lines();
            assert!(
                lines
                    .next()
                    .unwrap()
                    .starts_with("grant_id,principal,acting,entitlement")
            );
            assert!(text.contains(&gid) && text.contains("bob"), "{text}");
            // A reason that a spreadsheet would run is written as text, quotes doubled.
            assert!(
                text.contains("\"'=HYPERLINK(\"\"x\"\"),\"\"quoted\"\"\""),
                "{text}"
            );
        } else {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let items = v["items"].as_array().unwrap();
            let ops = items
                .iter()
                .find(|i| i["grant_id"] == gid.as_str())
                .unwrap();
            assert_eq!(
                (ops["approved_via"].as_str(), ops["approvers"].as_str()),
                (Some("human"), Some("bob"))
            );
            let read = items
                .iter()
                .find(|i| i["grant_id"] == logs_grant.as_str())
                .unwrap();
            assert_eq!(read["approved_via"], "policy");
        }
    }
    let p = problem(
        alice
            .export_elevations(&[("from", from.as_str()), ("to", to.as_str())])
            .await
            .unwrap_err(),
    );
    assert_eq!(p.code, "why.not_allowed");

    // The web app shows it to administrators, everything people wrote as text.
    let page = crate::app::Browser::sign_in(&s, "admin")
        .await
        .get(&format!("/admin/why?principal=alice&at={during}"))
        .await;
    assert_eq!(page.0, reqwest::StatusCode::OK);
    assert!(
        page.1.contains(&gid) && page.1.contains("approval.recorded"),
        "{}",
        page.1
    );
    assert!(page.1.contains("&#60;b&#62;stuck&#60;/b&#62;") && !page.1.contains("<b>stuck"));
    assert!(page.1.contains("the chain head #"), "{}", page.1);
    let (status, _) = crate::app::Browser::sign_in(&s, "alice")
        .await
        .get(&format!("/admin/why?principal=alice&at={during}"))
        .await;
    assert_eq!(
        status,
        reqwest::StatusCode::FORBIDDEN,
        "the page is for administrators"
    );

    // The CLI tells the same story, with the sequence numbers and the head.
    let out = tokio::process::Command::new(crate::binary::BIN)
        .args(["why", "--principal", "alice", "--at", &during])
        .env("HOURGLASS_SERVER", format!("http://{}", s.addr))
        .env(
            "HOURGLASS_TOKEN",
            s.tokens
                .iter()
                .find(|(n, _)| n == "admin")
                .unwrap()
                .1
                .clone(),
        )
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&gid) && text.contains("request.approved") && text.contains("by bob"),
        "{text}"
    );
    assert!(
        text.contains("chain head #") && text.contains("audit verify"),
        "{text}"
    );
    s.stop().await;
}
