//! SCIM filters (`?filter=`), attribute and PATCH paths, and PATCH bodies, as a directory
//! sends them. Input: a filter or path line, then a PATCH body.
#![no_main]

use hourglass_integrations::scim::{AttrPath, Filter, PatchRequest, patch::PatchPath};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (h, body) = common::headers(data, 1);
    if let Some(text) = h[0] {
        let _ = Filter::parse(text);
        let _ = Filter::parse_value_filter(text);
        let _ = AttrPath::parse(text);
        let _ = PatchPath::parse(text);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let _ = PatchRequest::parse(&v);
    }
});
