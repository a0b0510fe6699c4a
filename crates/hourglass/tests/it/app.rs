//! The web app's pages over HTTP, as a browser without script uses them: the catalogue, the
//! request form with its field errors, Mine with release and the one-time credential reveal,
//! the inbox and a decision, every form refused without its CSRF token or from another origin,
//! and markup in what people type shown as text everywhere.

use hourglass_testkit::{TestServer, eventually, spawn_server_with};
use reqwest::{StatusCode, header};

const SCRIPT: &str = "<script>alert(1)</script>";
/// How the pages write it: as text.
const SHOWN: &str = "&#60;script&#62;alert(1)&#60;/script&#62;";

/// A signed-in browser (the demo's sign-in): its own cookie jar, redirects not followed.
pub(crate) struct Browser {
    http: reqwest::Client,
    pub(crate) base: String,
    csrf: String,
}

impl Browser {
    pub(crate) async fn sign_in(s: &TestServer, who: &str) -> Browser {
        let base = format!("http://{}", s.addr);
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let resp = http
            .post(format!("{base}/signin/demo"))
            .header(header::ORIGIN, &base)
            .form(&[("principal", who)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let me: serde_json::Value = http
            .get(format!("{base}/v1/session"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Browser {
            csrf: me["csrf_token"].as_str().unwrap().to_owned(),
            http,
            base,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.text().await.unwrap())
    }

    /// Posts a form from this server's page (with the CSRF token unless `csrf` is false).
    pub(crate) async fn post(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        csrf: bool,
    ) -> reqwest::Response {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        if csrf {
            all.push(("csrf_token", &self.csrf));
        }
        self.http
            .post(format!("{}{path}", self.base))
            .header(header::ORIGIN, &self.base)
            .form(&all)
            .send()
            .await
            .unwrap()
    }
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_person_asks_from_the_catalogue_and_an_approver_decides_in_the_inbox() {
    let s = spawn_server_with(|dir, text| {
        // The demo target, issuing a credential with each grant.
        let target = dir.join("targets/demo-target.sh");
        let issuing = dir.join("targets/issuing.sh");
        std::fs::write(
            &issuing,
            format!(
                "#!/bin/sh\n\"{}\" \"$@\" || exit $?\n\
                 if [ \"$1\" = grant ]; then printf '{{\"handle\": {{\"via\": \"web\"}}, \"credential\": \"pw-from-the-web\"}}'; fi\n",
                target.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&issuing, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let text = text.replace(&target.display().to_string(), &issuing.display().to_string());
        format!("{text}\n[web]\ndemo_sign_in = true\n")
    })
    .await
    .unwrap();
    let alice = Browser::sign_in(&s, "alice").await;

    // Not signed in: every page goes to sign-in and comes back.
    let anon = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/inbox/req_0123", alice.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&anon), "/signin?return_to=%2Finbox%2Freq_0123");

    // The catalogue says what will happen before she asks.
    let resp = alice
        .http
        .get(format!("{}/request", alice.base))
        .send()
        .await
        .unwrap();
    let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    for d in [
        "script-src 'self'",
        "frame-ancestors 'none'",
        "default-src 'none'",
    ] {
        assert!(csp.contains(d), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
    let page = resp.text().await.unwrap();
    assert!(page.contains("demo/read-logs"), "{page}");
    assert!(
        page.contains("Approved at once up to 1h; longer needs 1 approval."),
        "{page}"
    );
    assert!(page.contains("demo/ops-admin"), "{page}");
    assert!(page.contains("Needs 1 approval."), "{page}");

    // The form: without the CSRF token, or from another origin, nothing happens.
    let before = s.client("admin").audit(0).await.unwrap().len();
    let fields = [
        ("what", "demo/ops-admin"),
        ("duration", "30m"),
        ("reason", SCRIPT),
    ];
    let r = alice.post("/request/new", &fields, false).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let evil = alice
        .http
        .post(format!("{}/request/new", alice.base))
        .header(header::ORIGIN, "https://evil.example")
        .form(&[
            ("what", "demo/ops-admin"),
            ("duration", "30m"),
            ("reason", "x"),
            ("csrf_token", alice.csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), StatusCode::FORBIDDEN);
    assert_eq!(s.client("admin").audit(0).await.unwrap().len(), before);

    // A bad duration comes back next to its field, with what she typed kept (escaped).
    let r = alice
        .post(
            "/request/new",
            &[
                ("what", "demo/ops-admin"),
                ("duration", "99h"),
                ("reason", SCRIPT),
            ],
            true,
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let page = r.text().await.unwrap();
    assert!(page.contains("id=\"duration-error\""), "{page}");
    assert!(page.contains("aria-invalid=\"true\""), "{page}");
    assert!(!page.contains(SCRIPT), "{page}");
    assert!(page.contains(SHOWN), "{page}");
    assert_eq!(s.client("admin").audit(0).await.unwrap().len(), before);

    // Markup in the ticket field is refused or shown as text, never as markup.
    let r = alice
        .post(
            "/request/new",
            &[
                ("what", "demo/ops-admin"),
                ("duration", "30m"),
                ("reason", "ticket test"),
                ("ticket", SCRIPT),
            ],
            true,
        )
        .await;
    let ticket_rid = (r.status() == StatusCode::SEE_OTHER)
        .then(|| location(&r).trim_start_matches("/mine#").to_owned());
    let page = r.text().await.unwrap();
    assert!(!page.contains(SCRIPT), "{page}");
    let bob = Browser::sign_in(&s, "bob").await;
    if let Some(t) = &ticket_rid {
        // Taken: bob sees the ticket as text; then alice withdraws it.
        let (_, entry) = bob.get(&format!("/inbox/{t}")).await;
        assert!(entry.contains(SHOWN) && !entry.contains(SCRIPT), "{entry}");
        let r = alice
            .post(&format!("/mine/requests/{t}/cancel"), &[], true)
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }

    // Asked: to Mine, where it waits, its reason shown as text.
    let r = alice.post("/request/new", &fields, true).await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "{}",
        r.text().await.unwrap()
    );
    let to = location(&r);
    let rid = to.strip_prefix("/mine#").unwrap().to_owned();
    let (_, page) = alice.get("/mine").await;
    assert!(page.contains(&rid) && page.contains("pending"), "{page}");
    assert!(page.contains("data-live=\"1\""), "{page}");
    assert!(!page.contains(SCRIPT) && page.contains(SHOWN), "{page}");

    // bob's inbox has it, with what he needs to judge it; a link from a notification lands there.
    let link = bob
        .http
        .get(format!("{}/approve/{rid}", bob.base))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&link), format!("/inbox/{rid}"));
    // Through sign-in and back to the entry (never off this server).
    let fresh = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let entry_url = format!("{}/inbox/{rid}", bob.base);
    let to_signin = fresh.get(&entry_url).send().await.unwrap();
    let signin = location(&to_signin);
    let page = fresh
        .get(format!("{}{signin}", bob.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("name=\"return_to\" value=\"/inbox/{rid}\"")),
        "{page}"
    );
    for (to, expect) in [
        (format!("/inbox/{rid}"), format!("/inbox/{rid}")),
        ("//evil.example/x".to_owned(), "/signin".to_owned()),
        ("https://evil.example/".to_owned(), "/signin".to_owned()),
    ] {
        let r = fresh
            .post(format!("{}/signin/demo", bob.base))
            .header(header::ORIGIN, &bob.base)
            .form(&[("principal", "bob"), ("return_to", to.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(location(&r), expect);
    }
    let (_, inbox) = bob.get("/inbox").await;
    assert!(inbox.contains(&format!("/inbox/{rid}")), "{inbox}");
    assert!(!inbox.contains(SCRIPT) && inbox.contains(SHOWN), "{inbox}");
    let (status, entry) = bob.get(&format!("/inbox/{rid}")).await;
    assert_eq!(status, StatusCode::OK);
    for want in [
        "alice",
        "demo/ops-admin",
        "30m",
        SHOWN,
        "requesters-may-request-demo",
        "approvers-approve-demo",
        "Who holds it now",
    ] {
        assert!(entry.contains(want), "{want} in {entry}");
    }
    assert!(!entry.contains(SCRIPT));
    // alice cannot decide her own.
    let (status, _) = alice.get(&format!("/inbox/{rid}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Denying needs a reason, given next to its field.
    let r = bob
        .post(&format!("/inbox/{rid}/deny"), &[("reason", "")], true)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("id=\"deny-error\""));
    let r = bob
        .post(&format!("/inbox/{rid}/approve"), &[("comment", "go")], true)
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/inbox");

    // alice's grant goes live; she reveals its credential once, then releases it.
    assert!(
        eventually(|| async {
            let (_, page) = alice.get("/mine").await;
            page.contains("Reveal credential")
        })
        .await
    );
    let (_, page) = alice.get("/mine").await;
    let gid = page
        .split("action=\"/mine/grants/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // A GET with the cookie (a link, a prefetch) never spends it.
    let (status, body) = alice.get(&format!("/v1/grants/{gid}/credential")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("credential.bearer_only"), "{body}");
    // bob may see the grant but does not release it for alice here.
    let r = bob
        .post(&format!("/mine/grants/{gid}/release"), &[], true)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = alice
        .post(&format!("/mine/grants/{gid}/credential"), &[], true)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    assert!(r.text().await.unwrap().contains("pw-from-the-web"));
    let again = alice
        .post(&format!("/mine/grants/{gid}/credential"), &[], true)
        .await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(!again.text().await.unwrap().contains("pw-from-the-web"));
    let r = alice
        .post(&format!("/mine/grants/{gid}/release"), &[], true)
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let g = s.client("alice").get_grant(&gid).await.unwrap();
    assert!(
        matches!(g.state.as_str(), "revoking" | "revoked"),
        "{}",
        g.state
    );
    assert_eq!(
        g.end_reason.as_deref(),
        Some("released early by its holder")
    );
    s.stop().await;
}

/// The administration pages: only for administrators; the audit log filtered and its chain
/// verified, live access revoked, an identity suspended (its session ends), a key shown once,
/// and policy explained.
#[tokio::test]
async fn administrators_audit_revoke_manage_identities_and_explain_policy() {
    let s = spawn_server_with(|_, text| format!("{text}\n[web]\ndemo_sign_in = true\n"))
        .await
        .unwrap();
    let alice = Browser::sign_in(&s, "alice").await;
    let bob = Browser::sign_in(&s, "bob").await;
    let admin = Browser::sign_in(&s, "admin").await;
    let (status, _) = alice.get("/admin").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, page) = alice.get("/request").await;
    assert!(!page.contains("href=\"/admin\""), "no Admin link for alice");

    // Something to see: alice's auto-approved read-logs grant, with markup in its reason.
    let r = alice
        .post(
            "/request/new",
            &[
                ("what", "demo/read-logs"),
                ("duration", "10m"),
                ("reason", SCRIPT),
            ],
            true,
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let rid = location(&r).strip_prefix("/mine#").unwrap().to_owned();
    let gid = s
        .client("alice")
        .get_request(&rid)
        .await
        .unwrap()
        .grant_id
        .unwrap();
    assert!(
        eventually(|| async { s.client("alice").get_grant(&gid).await.unwrap().state == "active" })
            .await
    );

    // The audit log: filtered by action, escaped, with the chain's head; verified whole.
    let (status, page) = admin.get("/admin?action=request.&actor=alice").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&rid), "{page}");
    assert!(!page.contains("session.started"), "filtered: {page}");
    assert!(!page.contains(SCRIPT) && page.contains(SHOWN), "{page}");
    assert!(page.contains("The chain&#39;s head") || page.contains("The chain's head"));
    let (status, _) = admin.get("/admin?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let r = admin.post("/admin/verify", &[], true).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("The audit chain is whole"));

    // Live access: alice's grant, revoked from here with a reason.
    let (_, page) = admin.get("/admin/grants").await;
    assert!(page.contains(&gid), "{page}");
    let r = admin
        .post(
            &format!("/admin/grants/{gid}/revoke"),
            &[("reason", "done with it")],
            true,
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let g = s.client("admin").get_grant(&gid).await.unwrap();
    assert!(
        matches!(g.state.as_str(), "revoking" | "revoked"),
        "{}",
        g.state
    );

    // Identities: bob suspended from here; his session ends at once.
    let (_, page) = admin.get("/admin/identities").await;
    assert!(
        page.contains("ci-deployer") && page.contains("alice"),
        "{page}"
    );
    let r = admin
        .post(
            "/admin/identities/bob/suspend",
            &[("reason", "on leave")],
            true,
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (status, _) = bob.get("/inbox").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "back to sign-in");
    // Without the CSRF token nothing happens.
    let r = admin.post("/admin/identities/bob/resume", &[], false).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        s.client("admin")
            .identities()
            .await
            .unwrap()
            .into_iter()
            .find(|i| i.name == "bob")
            .unwrap()
            .status,
        "suspended"
    );
    // A new key for the CI job, shown once on a page that is never cached.
    let r = admin
        .post(
            "/admin/identities/ci-deployer/keys",
            &[("expires", "30d")],
            true,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    let page = r.text().await.unwrap();
    let secret = page
        .split("id=\"secret\" class=\"secret\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    let who = hourglass_client::Client::new(&alice.base, Some(secret))
        .unwrap()
        .whoami()
        .await
        .unwrap();
    assert_eq!(who.principal, "ci-deployer");

    // Explain: how policy judges alice on ops-admin now.
    let (status, page) = admin
        .get("/admin/explain?principal=alice&access=demo/ops-admin")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("requesters-may-request-demo"), "{page}");
    assert!(page.contains("requesters-break-glass-ops-admin"), "{page}");
    let (status, page) = admin
        .get("/admin/explain?principal=alice&access=nope/none")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("no entitlement or profile"), "{page}");
    // Reports answer (the demo target holds nothing standing).
    let (status, page) = admin.get("/admin/reports").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    s.stop().await;
}
