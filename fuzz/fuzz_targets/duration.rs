//! Grant durations (`30m`, `1h30m`), as requests, the CLI and the configuration give them.
#![no_main]

use hourglass_core::GrantDuration;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(d) = text.parse::<GrantDuration>() {
        assert!(d.as_secs() > 0, "{text:?} parsed to zero");
        let again: GrantDuration = d
            .to_string()
            .parse()
            .unwrap_or_else(|e| panic!("{d} does not parse back: {e}"));
        assert_eq!(again, d, "{text:?}");
    }
});
