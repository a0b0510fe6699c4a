//! The web app in a real browser: Debian's Chromium, headless, driven through WebDriver
//! (`chromium-driver`; `.ci/run` installs both), signing in through the certified OpenID
//! provider. alice asks for ops-admin; bob, in another browser, approves it from his inbox;
//! alice's page shows the grant active without a reload; she releases it. A PostgreSQL
//! credential is revealed once and is gone on a second look.
//!
//! The screenshots it takes are the README's browser tour: they are written to
//! `target/screenshots/`, and to `docs/screenshots/` with `HOURGLASS_UPDATE_SCREENSHOTS=1`.

use std::{path::PathBuf, process::Stdio, time::Duration};

use fantoccini::{Client, ClientBuilder, Locator};
use hourglass_testkit::{TestServer, eventually, spawn_server_on};
use serde_json::json;
use sqlx::Connection as _;
use tokio::process::{Child, Command};

use crate::oidc::{Idp, free_addr, idp, real_now};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

const PG_POLICY: &str = r#"
@id("requesters-read-pg-auto")
permit (
  principal in Hourglass::Group::"requesters",
  action in [Hourglass::Action::"Request", Hourglass::Action::"AutoApprove"],
  resource is Hourglass::Entitlement
)
when { resource.target == "pg" };
"#;

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    url: String,
    _child: Child,
    _profiles: tempfile::TempDir,
}

async fn driver() -> Option<Driver> {
    if !std::path::Path::new(CHROMEDRIVER).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium-driver is not installed (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipped: chromium-driver is not installed");
        return None;
    }
    let port = free_addr().port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver runs");
    let url = format!("http://127.0.0.1:{port}");
    let up = eventually(|| async {
        reqwest::get(format!("{url}/status"))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(up, "chromedriver answers");
    Some(Driver {
        url,
        _child: child,
        _profiles: tempfile::tempdir().unwrap(),
    })
}

/// A fresh headless browser (its own profile: its own cookies).
async fn browser(d: &Driver, name: &str) -> Client {
    let profile = d._profiles.path().join(name);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1200,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&d.url)
        .await
        .expect("a browser session starts")
}

/// Saves a screenshot of what `c` shows as `name.png`.
async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut dirs = vec![root.join("target/screenshots")];
    if std::env::var_os("HOURGLASS_UPDATE_SCREENSHOTS").is_some() {
        dirs.push(root.join("docs/screenshots"));
    }
    for dir in dirs {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
    }
}

async fn wait_for(c: &Client, css: &str) -> fantoccini::elements::Element {
    match c
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
    {
        Ok(e) => e,
        Err(e) => {
            let url = c.current_url().await.map(|u| u.to_string());
            let page = c.source().await.unwrap_or_default();
            panic!("{css}: {e}\nat {url:?}\n{page}")
        }
    }
}

/// Checks the page in `c` for what keyboard and screen-reader users need: one `h1`, a language,
/// a label for every field, a name for every button and link, and no sideways scrolling.
async fn accessible(c: &Client, what: &str) {
    let problems = c
        .execute(
            r#"
            const out = [];
            if (document.querySelectorAll('h1').length !== 1) out.push('not exactly one h1');
            if (!document.documentElement.lang) out.push('no lang');
            for (const el of document.querySelectorAll('input:not([type=hidden]), textarea, select')) {
              const labelled = (el.id && document.querySelector(`label[for="${el.id}"]`))
                || el.getAttribute('aria-label') || el.closest('label');
              if (!labelled) out.push('unlabelled field ' + (el.name || el.id));
            }
            for (const el of document.querySelectorAll('button, a')) {
              if (!(el.textContent.trim() || el.getAttribute('aria-label'))) out.push('unnamed ' + el.outerHTML);
            }
            if (document.documentElement.scrollWidth > window.innerWidth + 1) out.push('scrolls sideways');
            return out;
            "#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(problems, json!([]), "{what}");
}

/// Signs in through the provider's page as `who`, from the server's sign-in page.
async fn sign_in(c: &Client, s: &TestServer, who: &str) {
    c.goto(&format!("http://{}/signin", s.addr)).await.unwrap();
    c.find(Locator::Css("a#sso"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(c, "#login").await.send_keys(who).await.unwrap();
    c.find(Locator::Css("#idp-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Back at Hourglass, signed in: the catalogue.
    wait_for(c, "nav a[href='/request']").await;
}

async fn server(
    idp: &Idp,
    addr: std::net::SocketAddr,
    db: &hourglass_testdb::TestDb,
) -> TestServer {
    let issuer = idp.issuer.clone();
    let (url, prefix) = (db.url.clone(), db.prefix.clone());
    spawn_server_on(addr, real_now(), move |dir, text| {
        std::fs::write(dir.join("oidc.secret"), "test-client-secret").unwrap();
        std::fs::write(dir.join("policies/pg.cedar"), PG_POLICY).unwrap();
        format!(
            "{text}\n[[targets]]\nname = \"pg\"\nconnector = \"postgres\"\n[targets.postgres]\n\
             url = \"{url}\"\nprefix = \"{prefix}\"\ntimeout_secs = 5\n\n\
             [[entitlements]]\nname = \"pg/read\"\ndescription = \"Read the orders database\"\n\
             default_duration = \"10m\"\nmax_duration = \"1h\"\n\
             [entitlements.params]\nroles = [\"{prefix}reader\"]\n\n\
             [web.oidc]\nissuer = \"{issuer}\"\nclient_id = \"hourglass\"\n\
             client_secret = {{ file = \"oidc.secret\" }}\n\
             redirect_url = \"http://{addr}/signin/callback\"\nlabel = \"Sign in with Example IdP\"\n"
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn alice_asks_bob_approves_and_alices_page_follows_without_a_reload() {
    let Some(db) = hourglass_testdb::postgres().await else {
        return;
    };
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE \"{}reader\" NOLOGIN",
        db.prefix
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let addr = free_addr();
    let Some(idp) = idp(&format!("http://{addr}/signin/callback"), "{}").await else {
        return;
    };
    let Some(d) = driver().await else {
        return;
    };
    let s = server(&idp, addr, &db).await;

    // alice signs in and asks for ops-admin.
    let a = browser(&d, "alice").await;
    sign_in(&a, &s, "alice").await;
    shot(&a, "1-catalogue").await;
    accessible(&a, "the catalogue").await;
    a.goto(&format!(
        "http://{}/request/new?what=demo/ops-admin",
        s.addr
    ))
    .await
    .unwrap();
    let duration = wait_for(&a, "#duration").await;
    duration.clear().await.unwrap();
    duration.send_keys("30m").await.unwrap();
    a.find(Locator::Css("#reason"))
        .await
        .unwrap()
        .send_keys("Deploy the fix for INC-42")
        .await
        .unwrap();
    shot(&a, "2-ask").await;
    accessible(&a, "the request form").await;
    a.find(Locator::Css("form.form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&a, "#requests-h").await;
    assert!(a.current_url().await.unwrap().path() == "/mine");
    assert!(a.source().await.unwrap().contains("pending"));
    // A mark that a reload would wipe.
    a.execute("window.hourglassMark = 42; return true;", vec![])
        .await
        .unwrap();

    // bob, in another browser, approves it from his inbox.
    let b = browser(&d, "bob").await;
    sign_in(&b, &s, "bob").await;
    b.goto(&format!("http://{}/inbox", s.addr)).await.unwrap();
    let link = wait_for(&b, "table.list a[href^='/inbox/req_']").await;
    shot(&b, "3-inbox").await;
    accessible(&b, "the inbox").await;
    link.click().await.unwrap();
    wait_for(&b, "#comment")
        .await
        .send_keys("go ahead")
        .await
        .unwrap();
    shot(&b, "4-decide").await;
    accessible(&b, "a request to decide").await;
    b.find(Locator::Css("form[action$='/approve'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&b, "main h1").await;

    // alice's page shows the grant active, without a reload.
    wait_for(&a, "form[action$='/release'] button").await;
    let mark = a
        .execute("return window.hourglassMark;", vec![])
        .await
        .unwrap();
    assert_eq!(
        mark,
        json!(42),
        "the page was updated in place, not reloaded"
    );
    assert!(a.source().await.unwrap().contains("state-active"));
    shot(&a, "5-mine-live").await;
    accessible(&a, "mine").await;
    // On a phone: the same page, one column, nothing off the side.
    a.set_window_size(390, 844).await.unwrap();
    accessible(&a, "mine on a phone").await;
    shot(&a, "7-phone").await;
    a.set_window_size(1200, 900).await.unwrap();
    // Found again: the live page may have redrawn the grant since (a later event about it).
    wait_for(&a, "form[action$='/release'] button")
        .await
        .click()
        .await
        .unwrap();
    assert!(
        eventually(|| async {
            let page = a.source().await.unwrap();
            page.contains("state-revoked") || page.contains("state-revoking")
        })
        .await
    );

    // A PostgreSQL grant's credential: revealed once, gone on a second look.
    a.goto(&format!("http://{}/request/new?what=pg/read", s.addr))
        .await
        .unwrap();
    wait_for(&a, "#reason")
        .await
        .send_keys("Check yesterday's orders")
        .await
        .unwrap();
    a.find(Locator::Css("form.form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let reveal = wait_for(&a, "form[action$='/credential'] button").await;
    reveal.click().await.unwrap();
    let secret = wait_for(&a, "#secret").await.text().await.unwrap();
    assert!(secret.starts_with("postgres://"), "{secret}");
    // The screenshot shows no live password.
    a.execute(
        "document.getElementById('secret').textContent = 'postgres://hg_…:••••••••@db.example.com/orders'; return true;",
        vec![],
    )
    .await
    .unwrap();
    shot(&a, "6-reveal").await;
    a.goto(&format!("http://{}/mine", s.addr)).await.unwrap();
    wait_for(&a, "#grants-h").await;
    let page = a.source().await.unwrap();
    assert!(!page.contains("Reveal credential"), "shown once");
    assert!(!page.contains(&secret));
    a.back().await.unwrap();
    assert!(
        !a.source().await.unwrap().contains(&secret),
        "not kept in history"
    );

    a.close().await.unwrap();
    b.close().await.unwrap();
    s.stop().await;
}
