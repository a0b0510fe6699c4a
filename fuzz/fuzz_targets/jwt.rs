//! Identity tokens presented for exchange, as API bearers and at /mcp: arbitrary text, and
//! arbitrary headers and claims signed by a trusted key (so that the claim checks are reached).
//! Input: a mode line (`exchange`, `api`, `mcp`, with `signed` to sign), then the token, or a
//! header JSON line and the claims JSON.
#![no_main]

use std::sync::OnceLock;

use hourglass_tokens::{
    DevIssuer,
    issuer::{IssuerSpec, Issuers, JwksSource, Purpose, Rule, parse_algorithm},
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[path = "common.rs"]
mod common;

struct Fixture {
    issuers: Issuers,
    key: DevIssuer,
    runtime: tokio::runtime::Runtime,
}

const NOW: i64 = 1_800_000_000;

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = DevIssuer::generate().expect("a key");
        let dir = std::env::temp_dir().join(format!("hourglass-fuzz-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let jwks = dir.join("jwks.json");
        std::fs::write(&jwks, key.jwks().to_string()).expect("the JWKS written");
        let issuers = Issuers::new(vec![IssuerSpec {
            name: "fuzz".into(),
            issuer: "https://issuer.example".into(),
            jwks: JwksSource::File(jwks),
            audience: vec!["hourglass".into()],
            delegation_audience: vec!["hourglass-delegation".into()],
            api_audience: vec!["hourglass-api".into()],
            mcp_audience: vec!["hourglass-mcp".into()],
            algorithms: vec![parse_algorithm("EdDSA").expect("EdDSA")],
            skew_secs: 30,
            rules: vec![Rule {
                principal: "ci-deployer".into(),
                claims: [("repository".to_owned(), "org/app".to_owned())].into(),
            }],
        }])
        .expect("issuers");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        Fixture {
            issuers,
            key,
            runtime,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let (h, body) = common::headers(data, 1);
    let mode = h[0].unwrap_or_default();
    let purpose = if mode.contains("api") {
        Purpose::ApiBearer
    } else if mode.contains("mcp") {
        Purpose::McpBearer
    } else {
        Purpose::Exchange
    };
    let signed = mode.contains("signed");
    let f = fixture();
    let token = if signed {
        // Signed by the trusted key: the header and the claims are the fuzzer's.
        let (h, claims) = common::headers(body, 1);
        let (Some(Ok(header)), Ok(claims)) = (
            h[0].map(serde_json::from_str::<Value>),
            serde_json::from_slice::<Value>(claims),
        ) else {
            return;
        };
        f.key.mint_with_header(&header, &claims)
    } else {
        let Ok(t) = std::str::from_utf8(body) else {
            return;
        };
        t.to_owned()
    };
    if let Ok(v) = f.runtime.block_on(f.issuers.verify(&token, NOW, purpose)) {
        // Only the trusted key's tokens are accepted, and then for one of the rules' principals.
        assert!(
            signed,
            "a token the key did not sign was accepted: {token:?}"
        );
        assert_eq!(v.principal.as_str(), "ci-deployer");
    }
});
