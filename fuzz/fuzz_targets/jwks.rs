//! JWKS documents, as issuers publish them (fetched or from a file), and Hourglass's own
//! manifest check (`verify_own`) against them. Input: a token line, then the JWKS.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (h, body) = common::headers(data, 1);
    let Ok(jwks) = std::str::from_utf8(body) else {
        return;
    };
    let _ = hourglass_tokens::issuer::parse_jwks(jwks);
    if let (Some(token), Ok(doc)) = (h[0], serde_json::from_str::<serde_json::Value>(jwks)) {
        // Nothing here holds a private key: no token can verify.
        assert!(
            hourglass_tokens::verify_own(token, &doc).is_err(),
            "a token no key signed was accepted"
        );
    }
});
