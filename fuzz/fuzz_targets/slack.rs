//! Slack requests: the signature headers, interaction payloads and slash commands. Input: the
//! `X-Slack-Request-Timestamp` line, the `X-Slack-Signature` line, then the body.
#![no_main]

use hourglass_integrations::slack;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (h, body) = common::headers(data, 2);
    assert!(
        slack::verify(b"fuzz-secret", h[0], h[1], body, 1_800_000_000).is_err(),
        "a request not signed with the secret was accepted"
    );
    let _ = slack::parse_interaction(body);
    let _ = slack::parse_command(body);
});
