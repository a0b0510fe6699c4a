//! `web`: the web app's two heaviest pages, rendered for a signed-in person over HTTP.
//!
//! - The inbox with N pending requests waiting for one approver, next to the API's listing of
//!   pending requests (`GET /v1/requests?state=pending`, at most 500 a page) on the same
//!   server: the page judges each request for this approver (Cedar, separation of duties) and
//!   renders it, the listing judges visibility and serialises JSON.
//! - The catalogue with N entitlements, next to the same page with 10 entitlements on a second
//!   server, side by side: each entitlement costs a `Request` decision, a short search of
//!   `AutoApprove` over durations, and a `BreakGlass` decision.
//!
//! Both servers run on the system clock with a fresh SQLite store; the pages are fetched in
//! alternating rounds so that both sides see the same machine.

use std::path::Path;

use anyhow::{Context, Result};

use crate::stats::{Report, Samples, now};

/// Pages fetched per measurement (in rounds).
const ROUNDS: usize = 4;

/// A configuration with `n` entitlements `bench/e{i}` on a webhook target, which `u0` may ask
/// for and `u1` may approve (no auto-approval below 5 minutes, so that requests wait), and the
/// demo's sign-in for the two of them.
fn write_config(dir: &Path, hook: std::net::SocketAddr, n: usize) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir.join("policies"))?;
    std::fs::write(
        dir.join("policies/bench.cedar"),
        "@id(\"bench-request\")\npermit(principal == Hourglass::Principal::\"u0\", action == Hourglass::Action::\"Request\", resource is Hourglass::Entitlement);\n\
         @id(\"bench-auto-short\")\npermit(principal == Hourglass::Principal::\"u0\", action == Hourglass::Action::\"AutoApprove\", resource is Hourglass::Entitlement) when { context.duration_secs < 300 };\n\
         @id(\"bench-approve\")\npermit(principal == Hourglass::Principal::\"u1\", action == Hourglass::Action::\"Approve\", resource is Hourglass::Entitlement);\n",
    )?;
    std::fs::write(dir.join("hook.secret"), "s".repeat(48))?;
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npending_ttl = \"24h\"\n\n[store]\nurl = \"sqlite://hourglass.db\"\n\n[web]\ndemo_sign_in = true\n\n\
         [quotas]\nmax_live_grants_per_principal = 1000000\nmax_requests_per_hour_per_principal = 1000000\n\n\
         [[targets]]\nname = \"bench\"\nconnector = \"webhook\"\nwebhook = {{ url = \"http://{hook}/\", secret_file = \"hook.secret\", allow_private = true }}\n"
    );
    for i in 0..n {
        text.push_str(&format!(
            "\n[[entitlements]]\nname = \"bench/e{i}\"\ndescription = \"Entitlement number {i}\"\ndefault_duration = \"30m\"\nmax_duration = \"4h\"\n"
        ));
    }
    for (i, token) in [
        hourglass_server::auth::new_token(),
        hourglass_server::auth::new_token(),
    ]
    .into_iter()
    .enumerate()
    {
        let token = token.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        std::fs::write(dir.join(format!("u{i}.token")), &token)?;
        text.push_str(&format!(
            "\n[[identities]]\nname = \"u{i}\"\nkind = \"human\"\ntoken_sha256 = [\"{}\"]\n",
            hourglass_server::auth::token_hash(&token)
        ));
    }
    let path = dir.join("hourglass.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Signs in as `who` through the demo's sign-in; the session cookie.
async fn sign_in(http: &reqwest::Client, base: &str, who: &str) -> Result<String> {
    let resp = http
        .post(format!("{base}/signin/demo"))
        .header("origin", base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("principal={who}"))
        .send()
        .await?;
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?;
    Ok(cookie.to_owned())
}

/// Fetches `path` (with a cookie or a bearer token) and times it; checks it is a 200 holding
/// `expect`.
async fn fetch(
    http: &reqwest::Client,
    url: &str,
    auth: (&str, &str),
    expect: &str,
    into: &mut Samples,
) -> Result<()> {
    let t = now();
    let resp = http.get(url).header(auth.0, auth.1).send().await?;
    let status = resp.status();
    let body = resp.text().await?;
    into.push(t.elapsed());
    anyhow::ensure!(
        status.is_success() && body.contains(expect),
        "{url}: {status}, without {expect:?}"
    );
    Ok(())
}

pub async fn run(n: usize, fetches: usize) -> Result<()> {
    let hook = crate::harness::receiver().await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let big_dir = tempfile::tempdir()?;
    let small_dir = tempfile::tempdir()?;
    let big = crate::harness::Server::start(&write_config(big_dir.path(), hook, n)?).await?;
    let small =
        crate::harness::Server::start(&write_config(small_dir.path(), hook, 10.min(n))?).await?;

    // n pending requests on the big server, one per entitlement, all waiting for u1.
    let asker = big.client(&std::fs::read_to_string(big_dir.path().join("u0.token"))?)?;
    for i in 0..n {
        let r = asker
            .create_request(&hourglass_api::CreateRequest {
                entitlement: format!("bench/e{i}"),
                duration: Some("30m".into()),
                reason: format!("benchmark request {i}"),
                ..Default::default()
            })
            .await?;
        anyhow::ensure!(r.state == "pending", "request {i} is {}", r.state);
    }
    let approver = sign_in(&http, &big.base, "u1").await?;
    let approver_token = format!(
        "Bearer {}",
        std::fs::read_to_string(big_dir.path().join("u1.token"))?
    );
    let asker_big = sign_in(&http, &big.base, "u0").await?;
    let asker_small = sign_in(&http, &small.base, "u0").await?;

    let per_round = fetches.div_ceil(ROUNDS).max(1);
    let (mut inbox, mut listing) = (Samples::default(), Samples::default());
    let (mut cat_big, mut cat_small) = (Samples::default(), Samples::default());
    let last = format!("bench/e{}", n - 1);
    for _ in 0..ROUNDS {
        for _ in 0..per_round {
            fetch(
                &http,
                &format!("{}/inbox", big.base),
                ("cookie", &approver),
                &last,
                &mut inbox,
            )
            .await?;
        }
        for _ in 0..per_round {
            fetch(
                &http,
                &format!("{}/v1/requests?state=pending&limit=500", big.base),
                ("authorization", &approver_token),
                "bench/e",
                &mut listing,
            )
            .await?;
        }
        for _ in 0..per_round {
            fetch(
                &http,
                &format!("{}/request", big.base),
                ("cookie", &asker_big),
                &last,
                &mut cat_big,
            )
            .await?;
        }
        for _ in 0..per_round {
            fetch(
                &http,
                &format!("{}/request", small.base),
                ("cookie", &asker_small),
                "bench/e0",
                &mut cat_small,
            )
            .await?;
        }
    }
    let ms = |s: &Samples, p: f64| s.percentile(p) / 1000.0;
    for (page, size, s) in [
        ("inbox", n, &inbox),
        ("api_pending_list_500", n.min(500), &listing),
        ("catalogue", n, &cat_big),
        ("catalogue", 10.min(n), &cat_small),
    ] {
        Report::new("web")
            .field("page", page)
            .field("items", size)
            .field("fetches", s.len())
            .num("p50_ms", ms(s, 50.0), 2)
            .num("p99_ms", ms(s, 99.0), 2)
            .print();
    }
    Report::new("web")
        .num(
            "inbox_to_api_list_p50_ratio",
            inbox.median() / listing.median(),
            2,
        )
        .num(
            "catalogue_big_to_small_p50_ratio",
            cat_big.median() / cat_small.median(),
            2,
        )
        .print();
    big.running.stop().await;
    small.running.stop().await;
    Ok(())
}
