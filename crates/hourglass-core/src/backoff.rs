//! Retry delays for jobs: exponential from `base`, capped at `cap`, with "equal jitter" (a
//! random point in the upper half of the step) so that many failing jobs do not retry in step.
//! There is no attempt limit: a revocation is retried for as long as it takes.

use serde::{Deserialize, Serialize};

/// Backoff settings, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    pub base_ms: u64,
    pub cap_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 1_000,
            cap_ms: 300_000,
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (1 = first retry), with `jitter` in `[0, 1)`.
    pub fn delay_ms(&self, attempt: u32, jitter: f64) -> u64 {
        let exp = attempt.saturating_sub(1).min(40);
        let step = self.base_ms.saturating_mul(1u64 << exp).min(self.cap_ms);
        let half = step / 2;
        let jitter = jitter.clamp(0.0, 1.0);
        half + (half as f64 * jitter) as u64
    }

    /// The delay with jitter from the system's random source.
    pub fn delay_ms_random(&self, attempt: u32) -> u64 {
        let mut b = [0u8; 4];
        let jitter = match getrandom::fill(&mut b) {
            Ok(()) => f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0),
            Err(_) => 0.5,
        };
        self.delay_ms(attempt, jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grows_then_caps() {
        let b = Backoff {
            base_ms: 1_000,
            cap_ms: 10_000,
        };
        assert_eq!(b.delay_ms(1, 1.0), 1_000);
        assert_eq!(b.delay_ms(2, 1.0), 2_000);
        assert_eq!(b.delay_ms(3, 0.0), 2_000);
        assert_eq!(b.delay_ms(10, 1.0), 10_000);
        assert_eq!(b.delay_ms(u32::MAX, 1.0), 10_000);
    }

    proptest! {
        #[test]
        fn never_exceeds_cap_nor_falls_below_half_a_step(attempt in 1u32..100, j in 0.0f64..1.0) {
            let b = Backoff::default();
            let d = b.delay_ms(attempt, j);
            prop_assert!(d <= b.cap_ms);
            prop_assert!(d >= b.base_ms / 2);
        }
    }
}
