//! Policy test case files (`policies/tests/*.toml`), as `hourglass policy test` reads them.
#![no_main]

use hourglass_policy::{PolicySource, cases::parse_cases};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = parse_cases(&[PolicySource {
        name: "fuzz.toml".into(),
        text: text.to_owned(),
    }]);
});
