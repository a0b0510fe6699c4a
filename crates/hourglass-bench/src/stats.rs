//! Timing and reporting: percentiles over samples, a table line and a JSON line per result.

use std::time::Duration;

/// A monotonic stopwatch. Benchmarks read real time on purpose: that is what they measure.
#[allow(clippy::disallowed_methods)]
pub fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// Seconds since the epoch on the system clock (the clock the benchmark's server runs on).
pub fn unix_secs() -> i64 {
    use hourglass_core::Clock as _;
    hourglass_server::clock::SystemClock.now().unix_millis() / 1000
}

/// Samples in microseconds, sorted on demand.
#[derive(Debug, Default, Clone)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1e6);
    }

    /// The `p`-th percentile (0–100), nearest rank.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    pub fn median(&self) -> f64 {
        self.percentile(50.0)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// One result: a scenario, its parameters and figures, printed as a table row and a JSON line.
pub struct Report {
    pub scenario: &'static str,
    pub fields: Vec<(String, serde_json::Value)>,
}

impl Report {
    pub fn new(scenario: &'static str) -> Self {
        Report {
            scenario,
            fields: Vec::new(),
        }
    }

    pub fn field(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.fields.push((name.to_owned(), value.into()));
        self
    }

    /// A float rounded to `digits` decimals.
    pub fn num(self, name: &str, value: f64, digits: i32) -> Self {
        let f = 10f64.powi(digits);
        let v = (value * f).round() / f;
        self.field(name, serde_json::json!(v))
    }

    pub fn print(&self) {
        let cells: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| format!("{k}={}", v.to_string().trim_matches('"')))
            .collect();
        println!("{:<13} {}", self.scenario, cells.join("  "));
        let mut obj = serde_json::Map::new();
        obj.insert("scenario".into(), self.scenario.into());
        for (k, v) in &self.fields {
            obj.insert(k.clone(), v.clone());
        }
        println!("JSON {}", serde_json::Value::Object(obj));
    }
}
