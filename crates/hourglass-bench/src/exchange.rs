//! `exchange`: a workload's identity token (from an issuer whose JWKS is cached) exchanged for
//! a signed access token over HTTP (`POST /v1/token`), 1 and 8 concurrent clients. Next to it,
//! measured in the same run, the raw operations an exchange is made of: one token
//! verification (parse, Ed25519 signature, claims), one Cedar evaluation of `Exchange`, one
//! Ed25519 signature of the access token, and one durable SQLite commit. Their sum is the
//! floor of one exchange's latency; the commit rate bounds the throughput (one commit each).

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use hourglass_core::{
    GrantDuration,
    catalog::{Entitlement, Principal, PrincipalKind, PrincipalStatus, Risk},
    id::{EntitlementId, PrincipalId, TargetId},
    policy::{Action, DecisionContext, PolicyDecider, PolicyQuery, Resource, WorkloadToken},
};
use hourglass_policy::{PolicySetEngine, PolicySource};
use hourglass_tokens::{DevIssuer, IssuerSpec, Issuers, JwksSource, Rotation, Rule, Signer};
use serde_json::json;

use crate::{
    harness::{Server, concurrently, sqlite_commits_per_sec},
    stats::{Report, Samples, now},
};

const ISS: &str = "https://bench-issuer.invalid";
const POLICY: &str = "@id(\"bench-exchange\")\npermit(principal in Hourglass::Group::\"workloads\", action == Hourglass::Action::\"Exchange\", resource == Hourglass::Entitlement::\"tok/api\") when { context.token has repository && context.token.repository == \"acme/app\" };\n@id(\"bench-admin\")\npermit(principal == Hourglass::Principal::\"owner\", action == Hourglass::Action::\"Administer\", resource);\n";

fn token(idp: &DevIssuer, n: usize) -> String {
    // The system clock is the server's clock here.
    let now = crate::stats::unix_secs();
    idp.mint(
        &json!({"iss": ISS, "sub": "w", "aud": "hourglass", "iat": now, "exp": now + 3_600,
        "jti": format!("bench-{n}"), "repository": "acme/app"}),
    )
}

pub async fn run(concurrency: &[usize], per_client: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let raw_commit = sqlite_commits_per_sec(dir.path(), 2_000).await?;
    let idp = DevIssuer::generate()?;
    std::fs::write(dir.path().join("jwks.json"), idp.jwks().to_string())?;
    std::fs::create_dir_all(dir.path().join("policies"))?;
    std::fs::write(dir.path().join("policies/bench.cedar"), POLICY)?;
    std::fs::write(
        dir.path().join("hourglass.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://hourglass.db\"\n[quotas]\nmax_live_grants_per_principal = 10000000\nmax_requests_per_hour_per_principal = 10000000\n\n\
             [[identities]]\nname = \"owner\"\nkind = \"human\"\n\n[[identities]]\nname = \"w\"\nkind = \"workload\"\nowner = \"owner\"\ngroups = [\"workloads\"]\n\n\
             [[targets]]\nname = \"tok\"\nconnector = \"token\"\n\n[[entitlements]]\nname = \"tok/api\"\ndefault_duration = \"5m\"\nmax_duration = \"15m\"\nparams = {{ audience = \"api\" }}\n\n\
             [[issuers]]\nname = \"bench\"\nissuer = \"{ISS}\"\njwks_file = \"jwks.json\"\naudience = [\"hourglass\"]\nalgorithms = [\"EdDSA\"]\nmap = [{{ principal = \"w\", claims = {{ sub = \"w\" }} }}]\n"
        ),
    )?;
    let server = Server::start(&dir.path().join("hourglass.toml")).await?;
    let anon = hourglass_client::Client::new(&server.base, None)?;
    let mut minted = 0usize;
    for &clients in concurrency {
        // Tokens are minted before the clock starts: that is the identity provider's cost.
        let batches: Vec<Vec<String>> = (0..clients)
            .map(|_| {
                (0..per_client)
                    .map(|_| {
                        minted += 1;
                        token(&idp, minted)
                    })
                    .collect()
            })
            .collect();
        let tasks = batches
            .into_iter()
            .map(|batch| {
                let c = anon.clone();
                async move {
                    let mut samples = Samples::default();
                    for t in batch {
                        let at = now();
                        let r = c
                            .exchange(&[
                                (
                                    "grant_type",
                                    "urn:ietf:params:oauth:grant-type:token-exchange",
                                ),
                                ("subject_token", &t),
                                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                                ("resource", "tok/api"),
                            ])
                            .await
                            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                        samples.push(at.elapsed());
                        if r.token_type != "Bearer" {
                            bail!("not a signed token: {r:?}");
                        }
                    }
                    anyhow::Ok(samples)
                }
            })
            .collect();
        let (all, secs) = concurrently("exchange", tasks, per_client).await?;
        let rps = all.len() as f64 / secs;
        Report::new("exchange")
            .field("clients", clients)
            .field("exchanges", all.len())
            .num("median_ms", all.median() / 1000.0, 3)
            .num("p99_ms", all.percentile(99.0) / 1000.0, 3)
            .num("exchanges_per_s", rps, 0)
            .num("raw_sqlite_commits_per_s", raw_commit, 0)
            .num("ratio_to_commit_bound", rps / raw_commit, 2)
            .print();
    }
    server.running.stop().await;
    raw_parts(&idp, raw_commit, per_client.max(200)).await
}

/// The raw operations one exchange is made of, each timed alone.
async fn raw_parts(idp: &DevIssuer, raw_commit: f64, n: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("jwks.json"), idp.jwks().to_string())?;
    let issuers = Issuers::new(vec![IssuerSpec {
        name: "bench".into(),
        issuer: ISS.into(),
        jwks: JwksSource::File(dir.path().join("jwks.json")),
        audience: vec!["hourglass".into()],
        delegation_audience: Vec::new(),
        api_audience: Vec::new(),
        mcp_audience: Vec::new(),
        algorithms: vec![hourglass_tokens::parse_algorithm("EdDSA").map_err(anyhow::Error::msg)?],
        skew_secs: 60,
        rules: vec![Rule {
            principal: "w".into(),
            claims: [("sub".to_owned(), "w".to_owned())].into(),
        }],
    }])
    .map_err(anyhow::Error::msg)?;
    let tokens: Vec<String> = (0..n).map(|i| token(idp, 1_000_000 + i)).collect();
    let now_s = crate::stats::unix_secs();
    let mut verify = Samples::default();
    for t in &tokens {
        let at = now();
        issuers
            .verify(t, now_s, hourglass_tokens::Purpose::Exchange)
            .await
            .map_err(|r| anyhow::anyhow!("{r}"))?;
        verify.push(at.elapsed());
    }

    let engine = PolicySetEngine::load(
        &[PolicySource {
            name: "bench.cedar".into(),
            text: POLICY.into(),
        }],
        vec![],
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ent = Entitlement {
        id: EntitlementId::new("tok/api").map_err(anyhow::Error::msg)?,
        target: TargetId::new("tok").map_err(anyhow::Error::msg)?,
        description: String::new(),
        risk: Risk::Medium,
        default_duration: GrantDuration::from_secs(300),
        max_duration: GrantDuration::from_secs(900),
        approvals_required: 1,
        profiles: vec![],
        params: serde_json::Value::Null,
        max_live_grants: None,
        max_requests_per_hour: None,
    };
    let w = Principal {
        id: PrincipalId::new("w").map_err(anyhow::Error::msg)?,
        kind: PrincipalKind::Workload,
        owner: Some("owner".into()),
        groups: vec!["workloads".into()],
        status: PrincipalStatus::Active,
        manager: None,
        department: None,
    };
    let claims = [("repository".to_owned(), "acme/app".to_owned())].into();
    let ctx = DecisionContext {
        duration_secs: 300,
        weekday: "Monday".into(),
        token: Some(WorkloadToken::from_claims("bench", "w", &claims)),
        ..DecisionContext::default()
    };
    let mut cedar = Samples::default();
    for _ in 0..n {
        let at = now();
        let d = engine.decide(PolicyQuery {
            action: Action::Exchange,
            principal: &w,
            resource: Resource::Entitlement(&ent),
            context: &ctx,
        })?;
        cedar.push(at.elapsed());
        if !d.allowed {
            bail!("the bench policy refused");
        }
    }

    let signer = Arc::new(
        Signer::open(
            &dir.path().join("keys"),
            "https://hg",
            Rotation {
                rotate_every_secs: 86_400,
                retire_after_secs: 86_400,
            },
            now_s,
        )
        .context("signer")?,
    );
    let mut sign = Samples::default();
    let claims = json!({"iss": "https://hg", "sub": "w", "aud": "api", "exp": now_s + 300, "jti": "grt_x", "grant_id": "grt_x", "entitlement": "tok/api"});
    for _ in 0..n {
        let at = now();
        signer.sign(&claims, now_s)?;
        sign.push(at.elapsed());
    }
    let commit_us = 1e6 / raw_commit;
    let sum = verify.median() + cedar.median() + sign.median() + commit_us;
    Report::new("exchange_parts")
        .num("verify_token_us", verify.median(), 1)
        .num("cedar_exchange_us", cedar.median(), 1)
        .num("sign_ed25519_us", sign.median(), 1)
        .num("sqlite_commit_us", commit_us, 1)
        .num("sum_us", sum, 1)
        .print();
    Ok(())
}
