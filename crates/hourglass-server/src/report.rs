//! The printable evidence report: an HTML page (no script, printable to PDF) that summarises
//! the elevated windows of a period with charts, and ends with what an auditor needs to check
//! it offline: the chain head, the command that made it, and the signed manifest of the same
//! windows' JSON export.
//!
//! [`figures`] is pure (windows in, figures out) and unit-tested; the page only shows them.

use std::collections::BTreeMap;

use askama::Template;
use hourglass_core::{Timestamp, engine::Window, review::Review};

/// What an export covers.
pub(crate) struct Scope {
    pub from: Timestamp,
    pub to: Timestamp,
    pub principal: Option<String>,
    pub target: Option<String>,
    pub entitlement: Option<String>,
}

/// What the report is made from, besides the windows.
pub(crate) struct Extras {
    /// Per target: (target, holdings explained by live grants, standing holdings, error).
    pub standing: Vec<(String, usize, usize, Option<String>)>,
    /// Revocations overdue now: (grant, principal, entitlement, due).
    pub overdue: Vec<(String, String, String, String)>,
    /// Break-glass reviews of the period's grants.
    pub reviews: Vec<Review>,
    /// Who asked for the report.
    pub by: String,
    /// The command that makes it again.
    pub command: String,
    /// The manifest (JWT) and SHA-256 of the same windows' JSON export.
    pub manifest: Option<String>,
    pub export_sha256: String,
}

/// One bar of a chart: its label, its value as text, and its length in percent of the
/// largest.
pub(crate) struct Bar {
    pub label: String,
    pub value: String,
    pub percent: u32,
}

/// What the report shows, computed from the windows.
#[derive(Default)]
pub(crate) struct Figures {
    pub windows: usize,
    pub hours_total: f64,
    pub by_person: Vec<(String, f64)>,
    pub by_target: Vec<(String, f64)>,
    /// Privileged hours per day (or per week for long periods): (bucket start, hours).
    pub over_time: Vec<(Timestamp, f64)>,
    pub bucket_days: i64,
    /// Revocation lags in milliseconds of the windows that ended after their revocation was due.
    pub lag_count: usize,
    pub lag_median_ms: Option<i64>,
    pub lag_p99_ms: Option<i64>,
    pub lag_max_ms: Option<i64>,
    /// How the windows were approved: (via, count).
    pub via: Vec<(String, usize)>,
    /// Automatic approvals per policy: (policy ids, count).
    pub auto_by_policy: Vec<(String, usize)>,
    pub break_glass: Vec<(String, String, String, String)>,
}

const HOUR_MS: f64 = 3_600_000.0;
const DAY_MS: i64 = 86_400_000;

/// The value at quantile `q` of sorted `v` (nearest rank).
fn quantile(v: &[i64], q: f64) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Figures of `windows` within `[from, to)`, as of `now` (a window still active counts up to
/// now).
pub(crate) fn figures(
    windows: &[Window],
    from: Timestamp,
    to: Timestamp,
    now: Timestamp,
) -> Figures {
    let mut f = Figures {
        windows: windows.len(),
        ..Figures::default()
    };
    let span = to.millis_since(from).max(1);
    f.bucket_days = if span <= 62 * DAY_MS { 1 } else { 7 };
    let bucket = f.bucket_days * DAY_MS;
    let buckets = usize::try_from((span + bucket - 1) / bucket).unwrap_or(0);
    let mut series = vec![0.0f64; buckets];
    let mut person: BTreeMap<String, f64> = BTreeMap::new();
    let mut target: BTreeMap<String, f64> = BTreeMap::new();
    let mut via: BTreeMap<String, usize> = BTreeMap::new();
    let mut auto: BTreeMap<String, usize> = BTreeMap::new();
    let mut lags = Vec::new();
    for w in windows {
        let g = &w.grant;
        let Some(start) = g.activated_at else {
            continue;
        };
        let start = start.max(from);
        let end = g.ended_at.unwrap_or(now).min(to).min(now.max(from));
        let ms = end.millis_since(start).max(0);
        let hours = ms as f64 / HOUR_MS;
        f.hours_total += hours;
        *person.entry(g.principal.to_string()).or_default() += hours;
        *target.entry(g.target.to_string()).or_default() += hours;
        // Spread the window over the buckets it overlaps.
        let mut t = start.unix_millis();
        while t < end.unix_millis() {
            let i = usize::try_from((t - from.unix_millis()) / bucket).unwrap_or(usize::MAX);
            let bucket_end = from.unix_millis() + (i as i64 + 1) * bucket;
            let upto = bucket_end.min(end.unix_millis());
            if let Some(b) = series.get_mut(i) {
                *b += (upto - t) as f64 / HOUR_MS;
            }
            t = upto;
        }
        let how = if g.break_glass {
            "break_glass".to_owned()
        } else {
            w.approvals
                .first()
                .map_or_else(|| "unknown".to_owned(), |a| a.via.as_str().to_owned())
        };
        if how == "policy" {
            let ids = w
                .approvals
                .iter()
                .filter(|a| a.approver == "policy")
                .flat_map(|a| a.policy_ids.iter().cloned())
                .collect::<Vec<_>>()
                .join(", ");
            *auto
                .entry(if ids.is_empty() { "?".into() } else { ids })
                .or_default() += 1;
        }
        *via.entry(how).or_default() += 1;
        if let (Some(due), Some(ended)) = (g.revoke_due_at, g.ended_at) {
            lags.push(ended.millis_since(due).max(0));
        }
        if g.break_glass {
            f.break_glass.push((
                g.id.to_string(),
                g.principal.to_string(),
                g.entitlement.to_string(),
                w.request
                    .as_ref()
                    .map(|r| r.reason.clone())
                    .unwrap_or_default(),
            ));
        }
    }
    lags.sort_unstable();
    f.lag_count = lags.len();
    f.lag_median_ms = quantile(&lags, 0.5);
    f.lag_p99_ms = quantile(&lags, 0.99);
    f.lag_max_ms = lags.last().copied();
    let ranked = |m: BTreeMap<String, f64>| {
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    };
    f.by_person = ranked(person);
    f.by_target = ranked(target);
    f.over_time = series
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            (
                Timestamp::from_unix_millis(from.unix_millis() + i as i64 * bucket),
                h,
            )
        })
        .collect();
    let mut via: Vec<_> = via.into_iter().collect();
    via.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    f.via = via;
    let mut auto: Vec<_> = auto.into_iter().collect();
    auto.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    f.auto_by_policy = auto;
    f
}

fn hours(h: f64) -> String {
    format!("{h:.1} h")
}

fn ms(v: Option<i64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{:.1} s", v as f64 / 1000.0))
}

fn bars(rows: &[(String, f64)], unit: impl Fn(f64) -> String, limit: usize) -> Vec<Bar> {
    let max = rows.iter().map(|r| r.1).fold(0.0f64, f64::max);
    rows.iter()
        .take(limit)
        .map(|(label, v)| Bar {
            label: label.clone(),
            value: unit(*v),
            percent: if max > 0.0 {
                ((v / max) * 100.0).round() as u32
            } else {
                0
            },
        })
        .collect()
}

/// One column of the time chart: its x, its height and its y in the SVG's units.
pub(crate) struct Column {
    pub x: u32,
    pub y: u32,
    pub height: u32,
    pub width: u32,
    pub label: String,
}

#[derive(Template)]
#[template(path = "report.html")]
pub(crate) struct ReportPage {
    from: String,
    to: String,
    scope: String,
    generated_at: String,
    by: String,
    windows: usize,
    hours_total: String,
    by_person: Vec<Bar>,
    by_target: Vec<Bar>,
    columns: Vec<Column>,
    bucket: &'static str,
    peak: String,
    peak_zero: bool,
    people_left: usize,
    targets_left: usize,
    standing: Vec<(String, usize, usize, Option<String>)>,
    lag_count: usize,
    lag_median: String,
    lag_p99: String,
    lag_max: String,
    overdue: Vec<(String, String, String, String)>,
    break_glass: Vec<(String, String, String, String, String)>,
    via: Vec<Bar>,
    auto_by_policy: Vec<Bar>,
    head_seq: u64,
    head_hash: String,
    command: String,
    manifest: Option<String>,
    export_sha256: String,
}

/// The report's HTML.
pub(crate) fn render(
    windows: &hourglass_core::engine::Windows,
    scope: &Scope,
    extras: Extras,
    now: Timestamp,
) -> Result<String, String> {
    let f = figures(&windows.windows, scope.from, scope.to, now);
    let peak = f.over_time.iter().map(|c| c.1).fold(0.0f64, f64::max);
    let n = f.over_time.len().max(1) as u32;
    let width = (600 / n).max(1);
    let columns = f
        .over_time
        .iter()
        .enumerate()
        .map(|(i, (at, h))| {
            let height = if peak > 0.0 {
                ((h / peak) * 180.0).round() as u32
            } else {
                0
            };
            Column {
                x: i as u32 * width,
                y: 190 - height,
                height,
                width: width.saturating_sub(1).max(1),
                label: format!(
                    "{}: {}",
                    at.to_string().get(..10).unwrap_or_default(),
                    hours(*h)
                ),
            }
        })
        .collect();
    let reviews: BTreeMap<String, &Review> = extras
        .reviews
        .iter()
        .map(|r| (r.grant_id.to_string(), r))
        .collect();
    let break_glass = f
        .break_glass
        .iter()
        .map(|(g, p, e, reason)| {
            let review = match reviews.get(g) {
                Some(r) => match (&r.closed_by, &r.comment) {
                    (Some(by), Some(c)) => format!("reviewed by {by}: {c}"),
                    _ => "review open".to_owned(),
                },
                None => "no review found".to_owned(),
            };
            (g.clone(), p.clone(), e.clone(), reason.clone(), review)
        })
        .collect();
    let count = |rows: &[(String, usize)]| -> Vec<(String, f64)> {
        rows.iter().map(|(k, v)| (k.clone(), *v as f64)).collect()
    };
    let share = |total: usize| {
        move |v: f64| {
            if total == 0 {
                format!("{v:.0}")
            } else {
                format!("{v:.0} ({:.0}%)", v * 100.0 / total as f64)
            }
        }
    };
    let total = f.windows;
    let scope_text = [
        ("person", &scope.principal),
        ("target", &scope.target),
        ("entitlement", &scope.entitlement),
    ]
    .iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}")))
    .collect::<Vec<_>>()
    .join(", ");
    let page = ReportPage {
        from: scope.from.to_string(),
        to: scope.to.to_string(),
        scope: if scope_text.is_empty() {
            "everyone, every target".into()
        } else {
            scope_text
        },
        generated_at: now.to_string(),
        by: extras.by,
        windows: total,
        hours_total: hours(f.hours_total),
        by_person: bars(&f.by_person, hours, 25),
        by_target: bars(&f.by_target, hours, 25),
        columns,
        bucket: if f.bucket_days == 1 { "day" } else { "week" },
        peak: hours(peak),
        peak_zero: peak <= 0.0,
        people_left: f.by_person.len().saturating_sub(25),
        targets_left: f.by_target.len().saturating_sub(25),
        standing: extras.standing,
        lag_count: f.lag_count,
        lag_median: ms(f.lag_median_ms),
        lag_p99: ms(f.lag_p99_ms),
        lag_max: ms(f.lag_max_ms),
        overdue: extras.overdue,
        break_glass,
        via: bars(&count(&f.via), share(total), 10),
        auto_by_policy: bars(&count(&f.auto_by_policy), share(total), 25),
        head_seq: windows.head_seq,
        head_hash: windows.head_hash.clone(),
        command: extras.command,
        manifest: extras.manifest,
        export_sha256: extras.export_sha256,
    };
    page.render().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use hourglass_core::{
        grant::{Grant, GrantState},
        id::{EntitlementId, GrantId, PrincipalId, RequestId, TargetId},
    };

    use super::*;

    const H: i64 = 3_600_000;

    fn window(who: &str, target: &str, from_h: i64, to_h: Option<i64>, lag_ms: i64) -> Window {
        let at = |h: i64| Timestamp::from_unix_millis(h * H);
        let end = to_h.map(at);
        Window {
            grant: Grant {
                id: GrantId::generate(at(from_h)).unwrap(),
                request_id: RequestId::generate(at(from_h)).unwrap(),
                principal: PrincipalId::new(who).unwrap(),
                entitlement: EntitlementId::new(format!("{target}/x")).unwrap(),
                target: TargetId::new(target).unwrap(),
                state: if end.is_some() {
                    GrantState::Revoked
                } else {
                    GrantState::Active
                },
                starts_at: at(from_h),
                expires_at: end.unwrap_or(at(from_h + 1)),
                created_at: at(from_h),
                activated_at: Some(at(from_h)),
                revoke_due_at: end.map(|e| e.plus_millis(-lag_ms)),
                ended_at: end,
                end_reason: None,
                handle: None,
                credential_fingerprint: None,
                public_key: None,
                break_glass: false,
                version: 1,
            },
            request: None,
            approvals: Vec::new(),
        }
    }

    #[test]
    fn hours_are_cut_to_the_period_and_spread_over_the_days_they_cover() {
        // Period: hours 0 to 48 (two days). alice: 20h..28h crosses midnight; bob: -5h..2h
        // starts before the period; carol is still active at "now" (hour 40).
        let w = [
            window("alice", "pg", 20, Some(28), 1_000),
            window("bob", "ssh", -5, Some(2), 3_000),
            window("carol", "pg", 38, None, 0),
        ];
        let f = figures(
            &w,
            Timestamp::from_unix_millis(0),
            Timestamp::from_unix_millis(48 * H),
            Timestamp::from_unix_millis(40 * H),
        );
        assert_eq!(f.bucket_days, 1);
        assert_eq!(f.over_time.len(), 2);
        assert!(
            (f.over_time[0].1 - (4.0 + 2.0)).abs() < 1e-9,
            "{:?}",
            f.over_time
        );
        assert!(
            (f.over_time[1].1 - (4.0 + 2.0)).abs() < 1e-9,
            "{:?}",
            f.over_time
        );
        assert!((f.hours_total - 12.0).abs() < 1e-9);
        assert_eq!(f.by_person[0], ("alice".to_owned(), 8.0));
        assert_eq!(f.by_target[0], ("pg".to_owned(), 10.0));
        assert_eq!(
            (f.lag_count, f.lag_median_ms, f.lag_max_ms),
            (2, Some(1_000), Some(3_000))
        );
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&[7], 0.99), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
