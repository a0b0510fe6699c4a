//! "Why was anyone elevated?": the story of each elevated state, from the audit chain, with the
//! chain head that covers it; through the API and the CLI.

use hourglass_core::Clock;
use hourglass_testkit::{eventually, spawn_server};

use crate::lifecycle::{active_grant, ask, problem};

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

#[tokio::test]
async fn the_printable_report_adds_up_the_period_and_ends_with_what_an_auditor_checks() {
    let s = spawn_server(|c| format!("{c}\n[web]\ndemo_sign_in = true\n"))
        .await
        .unwrap();
    let (alice, bob, admin) = (s.client("alice"), s.client("bob"), s.client("admin"));
    let start = s.clock.now();
    let ended = |c: &hourglass_client::Client, g: String| {
        let c = c.clone();
        async move {
            assert!(
                eventually(|| async { c.get_grant(&g).await.unwrap().state == "revoked" }).await
            );
        }
    };
    // Half an hour of logs, approved by policy.
    let logs = alice
        .create_request(&ask("demo/read-logs", "30m", "logs"))
        .await
        .unwrap();
    let logs = active_grant(&alice, &logs.id).await;
    s.clock.advance_ms(30 * 60_000);
    ended(&alice, logs).await;
    // An hour of ops-admin, approved by bob.
    let ops = alice
        .create_request(&ask("demo/ops-admin", "1h", "restart"))
        .await
        .unwrap();
    bob.approve(&ops.id, None).await.unwrap();
    let ops = active_grant(&alice, &ops.id).await;
    s.clock.advance_ms(60 * 60_000);
    ended(&alice, ops).await;
    // Half an hour of break-glass, reviewed by bob; its reason is markup.
    let mut glass = ask("demo/ops-admin", "30m", "<script>alert(1)</script>");
    glass.break_glass = true;
    let glass = alice.create_request(&glass).await.unwrap();
    let glass_grant = active_grant(&alice, &glass.id).await;
    let review = bob.list_reviews(Some("open")).await.unwrap()[0].id.clone();
    bob.close_review(&review, "checked the incident")
        .await
        .unwrap();
    s.clock.advance_ms(30 * 60_000);
    ended(&alice, glass_grant.clone()).await;

    let (from, to) = (
        start.to_string(),
        s.clock.now().plus_millis(60_000).to_string(),
    );
    let q = [
        ("from", from.as_str()),
        ("to", to.as_str()),
        ("format", "html"),
    ];
    let p = problem(alice.export_elevations(&q).await.unwrap_err());
    assert_eq!(p.code, "why.not_allowed");
    let (json, json_headers) = admin
        .export_elevations(&[("from", from.as_str()), ("to", to.as_str())])
        .await
        .unwrap();
    let (body, headers) = admin.export_elevations(&q).await.unwrap();
    let header =
        |h: &[(String, String)], k: &str| h.iter().find(|(n, _)| n == k).unwrap().1.clone();
    let html = String::from_utf8(body.clone()).unwrap();

    // The figures: two hours for alice, all on the demo target; one approval of each kind.
    assert!(
        html.contains("<strong>3</strong>elevated windows"),
        "{html}"
    );
    assert!(
        html.contains("<strong>2.0 h</strong>privileged time"),
        "{html}"
    );
    assert!(
        html.contains(r#"<th scope="row">alice</th><td class="num">2.0 h</td>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<th scope="row">demo</th><td class="num">2.0 h</td>"#),
        "{html}"
    );
    for via in ["policy", "human", "break_glass"] {
        assert!(
            html.contains(&format!(
                r#"<th scope="row">{via}</th><td class="num">1 (33%)</td>"#
            )),
            "{via}: {html}"
        );
    }
    assert!(
        html.contains("<code>read-logs-auto-approve-1h</code>"),
        "{html}"
    );
    assert!(
        html.contains("reviewed by bob: checked the incident"),
        "{html}"
    );
    assert!(html.contains("3 revocations proven: median"), "{html}");
    // The chart: one day, its column the tallest (180 of 200 units), labelled with its hours.
    assert!(
        html.contains(r#"height="180""#) && html.contains(": 2.0 h</title>"),
        "a chart: {html}"
    );
    // What people typed is text; the page runs nothing.
    assert!(!html.contains("<script>alert") && html.contains("&#60;script&#62;alert(1)"));
    assert!(!html.contains("<script"), "no script at all");
    // It ends with the head, the command and the JSON export's digest and signed manifest.
    let head = header(&headers, "x-hourglass-head-hash");
    assert_eq!(head, header(&json_headers, "x-hourglass-head-hash"));
    assert!(
        html.contains(&format!("hash <code>{head}</code>")),
        "{html}"
    );
    assert!(
        html.contains("hourglass report elevations --from"),
        "{html}"
    );
    let json_digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&json));
    assert!(html.contains(&json_digest), "the JSON export's digest");
    let jwks: serde_json::Value = reqwest::get(format!("http://{}/.well-known/jwks.json", s.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let now = s.clock.now().unix_millis() / 1000;
    let embedded = html
        .split(r#"<p class="mono">"#)
        .nth(1)
        .and_then(|t| t.split("</p>").next())
        .unwrap();
    let claims = crate::workload::verify_independently(embedded, &jwks, now).unwrap();
    assert_eq!(
        (claims["sha256"].as_str(), claims["format"].as_str()),
        (Some(json_digest.as_str()), Some("json"))
    );
    // The page itself has its own digest and manifest.
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    assert_eq!(header(&headers, "x-hourglass-export-sha256"), digest);
    let claims = crate::workload::verify_independently(
        &header(&headers, "x-hourglass-manifest"),
        &jwks,
        now,
    )
    .unwrap();
    assert_eq!(
        (claims["sha256"].as_str(), claims["format"].as_str()),
        (Some(digest.as_str()), Some("html"))
    );

    // The served page may run nothing.
    let resp = reqwest::Client::new()
        .get(format!(
            "http://{}/v1/reports/elevations?from={from}&to={to}&format=html",
            s.addr
        ))
        .bearer_auth(&s.tokens.iter().find(|(n, _)| n == "admin").unwrap().1)
        .send()
        .await
        .unwrap();
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.starts_with("default-src 'none'") && !csp.contains("script"),
        "{csp}"
    );

    // The CLI writes the report and its manifest beside it.
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("report.html");
    let out = tokio::process::Command::new(crate::binary::BIN)
        .args([
            "report",
            "elevations",
            "--from",
            &from,
            "--to",
            &to,
            "--format",
            "html",
            "--out",
        ])
        .arg(&out_file)
        .env("HOURGLASS_SERVER", format!("http://{}", s.addr))
        .env(
            "HOURGLASS_TOKEN",
            &s.tokens.iter().find(|(n, _)| n == "admin").unwrap().1,
        )
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read(&out_file).unwrap();
    let manifest = std::fs::read_to_string(dir.path().join("report.html.manifest.jwt")).unwrap();
    let claims = crate::workload::verify_independently(manifest.trim(), &jwks, now).unwrap();
    assert_eq!(
        claims["sha256"].as_str().unwrap(),
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&written))
    );
    // `audit verify` checks the export offline against the chain: signature, digest, head.
    let verify = |file: std::path::PathBuf| {
        let config = s.config.clone();
        async move {
            let out = tokio::process::Command::new(crate::binary::BIN)
                .args(["audit", "verify", "--config"])
                .arg(&config)
                .arg("--export")
                .arg(&file)
                .output()
                .await
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        }
    };
    let (ok, text) = verify(out_file.clone()).await;
    assert!(ok && text.contains("is in the verified chain"), "{text}");
    let changed = dir.path().join("changed.html");
    std::fs::write(&changed, [written.as_slice(), b" "].concat()).unwrap();
    std::fs::copy(
        dir.path().join("report.html.manifest.jwt"),
        dir.path().join("changed.html.manifest.jwt"),
    )
    .unwrap();
    let (ok, text) = verify(changed).await;
    assert!(
        !ok && text.contains("not the file the manifest signed"),
        "{text}"
    );

    // The web app makes it from two days, for administrators only.
    let day = from.get(..10).unwrap().to_owned();
    let (status, page) = crate::app::Browser::sign_in(&s, "admin")
        .await
        .get(&format!("/admin/reports/evidence?from={day}&to={day}"))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(
        page.contains("Evidence report") && page.contains(&glass_grant),
        "{page}"
    );
    let (status, _) = crate::app::Browser::sign_in(&s, "alice")
        .await
        .get(&format!("/admin/reports/evidence?from={day}&to={day}"))
        .await;
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN);
    s.stop().await;
}
