//! The configuration file and its environment overrides: any text gives a configuration or
//! an error naming a key, never a panic. Input: the file, then after a NUL byte
//! `HOURGLASS_…=value` lines.
#![no_main]

use hourglass_server::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (file, env) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let Ok(text) = std::str::from_utf8(file) else {
        return;
    };
    let env: Vec<(String, String)> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if let Err(e) = Config::from_text(text, "fuzz.toml", env) {
        assert!(!e.key.is_empty(), "an error without a key: {e}");
        assert!(!e.reason.is_empty(), "an error without a reason");
    }
});
