//! Human durations for grants: `30m`, `2h`, `1h30m`, `90s`, `1d`. Whole seconds, at least one
//! unit, no sign, and never zero; bounds against an entitlement are checked by the engine.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// A positive whole number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GrantDuration(u64);

/// The longest duration anything in Hourglass accepts (366 days): a guard against overflow and
/// typos; entitlements set much smaller maxima.
const MAX_SECS: u64 = 366 * 24 * 3600;

impl GrantDuration {
    pub const fn from_secs(secs: u64) -> Self {
        GrantDuration(secs)
    }
    pub const fn as_secs(self) -> u64 {
        self.0
    }
    pub fn as_millis(self) -> i64 {
        i64::try_from(self.0.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

impl FromStr for GrantDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        if text.is_empty() {
            return Err("empty duration: use e.g. 30m, 2h or 1h30m".into());
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        let mut last_unit_rank = usize::MAX;
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let (rank, secs) = match c {
                'd' => (3, 86_400),
                'h' => (2, 3_600),
                'm' => (1, 60),
                's' => (0, 1),
                _ => {
                    return Err(format!(
                        "invalid duration {s:?}: unknown unit {c:?} (use d, h, m, s)"
                    ));
                }
            };
            if digits.is_empty() {
                return Err(format!(
                    "invalid duration {s:?}: a number must come before {c:?}"
                ));
            }
            if rank >= last_unit_rank {
                return Err(format!(
                    "invalid duration {s:?}: units must go from largest to smallest, once each"
                ));
            }
            last_unit_rank = rank;
            let n: u64 = digits
                .parse()
                .map_err(|_| format!("invalid duration {s:?}: number too large"))?;
            digits.clear();
            total = n
                .checked_mul(secs)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| format!("invalid duration {s:?}: too large"))?;
        }
        if !digits.is_empty() {
            return Err(format!(
                "invalid duration {s:?}: a unit must follow {digits} (e.g. {digits}m)"
            ));
        }
        if total == 0 {
            return Err(format!("invalid duration {s:?}: must be longer than zero"));
        }
        if total > MAX_SECS {
            return Err(format!("invalid duration {s:?}: longer than 366 days"));
        }
        Ok(GrantDuration(total))
    }
}

impl TryFrom<String> for GrantDuration {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<GrantDuration> for String {
    fn from(d: GrantDuration) -> String {
        d.to_string()
    }
}

impl fmt::Display for GrantDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        let mut wrote = false;
        for (unit, secs) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
            let n = rest / secs;
            rest %= secs;
            if n > 0 {
                write!(f, "{n}{unit}")?;
                wrote = true;
            }
        }
        if !wrote {
            f.write_str("0s")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_usual_forms() {
        let secs = |s: &str| s.parse::<GrantDuration>().map(|d| d.as_secs());
        assert_eq!(secs("30m"), Ok(1800));
        assert_eq!(secs("2h"), Ok(7200));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("1d2h"), Ok(93_600));
    }

    #[test]
    fn rejects_bad_forms_with_a_reason() {
        for bad in [
            "",
            "30",
            "m",
            "0m",
            "1x",
            "30m1h",
            "1h1h",
            "-5m",
            "400d",
            "99999999999999999999h",
        ] {
            let err = bad.parse::<GrantDuration>().unwrap_err();
            assert!(err.contains("duration"), "{bad}: {err}");
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(secs in 1u64..=MAX_SECS) {
            let d = GrantDuration::from_secs(secs);
            prop_assert_eq!(d.to_string().parse::<GrantDuration>(), Ok(d));
        }
    }
}
