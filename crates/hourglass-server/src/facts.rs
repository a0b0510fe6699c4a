//! Context facts from configuration: the time zone of `context.hour` and `context.weekday`, and
//! who is on call for `context.oncall`: static schedule files and the schedule systems
//! ([`crate::oncall`]). Someone is on call when any source says so.
//!
//! A schedule file (`policy.oncall_file`, or an `[[oncall]]` source of kind `shift`) holds
//! `[[shift]]` tables, each naming a `principal` or a `group` and a half-open window
//! `[from, until)` in RFC 3339. The files are read at start and again with the policies
//! (`SIGHUP`, `POST /v1/admin/policies/reload`); if any does not parse, the old schedule stays,
//! like a policy set that does not validate.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, RwLock},
};

use hourglass_core::{Timestamp, catalog::Catalog, id::PrincipalId, policy::ContextFacts};
use jiff::tz::TimeZone;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    #[serde(default)]
    shift: Vec<ShiftConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShiftConfig {
    #[serde(default)]
    principal: Option<String>,
    #[serde(default)]
    group: Option<String>,
    from: String,
    until: String,
}

/// Who a shift puts on call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OnCall {
    Principal(String),
    Group(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Shift {
    who: OnCall,
    from: Timestamp,
    until: Timestamp,
}

/// Parses a schedule; every problem names the shift and the key.
fn parse_schedule(name: &str, text: &str) -> Result<Vec<Shift>, Vec<String>> {
    let file: ScheduleFile =
        toml::from_str(text).map_err(|e| vec![format!("{name}: {}", e.message())])?;
    let mut problems = Vec::new();
    let mut shifts = Vec::new();
    for (i, s) in file.shift.into_iter().enumerate() {
        let key = format!("{name}: shift[{i}]");
        let who = match (s.principal, s.group) {
            (Some(p), None) => OnCall::Principal(p),
            (None, Some(g)) => OnCall::Group(g),
            _ => {
                problems.push(format!("{key}: name exactly one of principal or group"));
                continue;
            }
        };
        let (Some(from), Some(until)) = (
            Timestamp::parse_rfc3339(&s.from),
            Timestamp::parse_rfc3339(&s.until),
        ) else {
            problems.push(format!(
                "{key}: from and until must be RFC 3339 times (2026-11-23T08:00:00Z)"
            ));
            continue;
        };
        if until <= from {
            problems.push(format!("{key}: until must be after from"));
            continue;
        }
        shifts.push(Shift { who, from, until });
    }
    if problems.is_empty() {
        Ok(shifts)
    } else {
        Err(problems)
    }
}

/// Reads a schedule file.
fn read_schedule(path: &Path) -> Result<Vec<Shift>, Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    parse_schedule(&path.display().to_string(), &text)
}

/// Looks a time zone up by its IANA name.
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|e| format!("unknown time zone {name:?}: {e}"))
}

/// A parsed on-call schedule, ready to be put in force.
#[derive(Debug, Clone)]
pub struct Schedule(Vec<Shift>);

/// The configured facts. The schedule can be replaced at run time.
pub struct ConfiguredFacts {
    tz: TimeZone,
    /// Each principal's groups, to match group shifts.
    groups: BTreeMap<PrincipalId, Vec<String>>,
    shifts: RwLock<Arc<Vec<Shift>>>,
    files: Vec<std::path::PathBuf>,
    board: Arc<crate::oncall::OnCallBoard>,
}

/// Reads every schedule file; the shifts of all, or every problem.
fn read_schedules(files: &[std::path::PathBuf]) -> Result<Vec<Shift>, Vec<String>> {
    let mut shifts = Vec::new();
    let mut problems = Vec::new();
    for f in files {
        match read_schedule(f) {
            Ok(s) => shifts.extend(s),
            Err(e) => problems.extend(e),
        }
    }
    if problems.is_empty() {
        Ok(shifts)
    } else {
        Err(problems)
    }
}

impl ConfiguredFacts {
    /// Builds the facts from the time zone name, the schedule files and the schedule systems.
    pub fn load(
        time_zone_name: &str,
        files: Vec<std::path::PathBuf>,
        board: Arc<crate::oncall::OnCallBoard>,
        catalog: &Catalog,
    ) -> Result<Self, Vec<String>> {
        let tz = time_zone(time_zone_name).map_err(|e| vec![format!("policy.time_zone: {e}")])?;
        let shifts = read_schedules(&files).map_err(|e| {
            e.into_iter()
                .map(|p| format!("on-call schedule: {p}"))
                .collect::<Vec<_>>()
        })?;
        Ok(ConfiguredFacts {
            tz,
            groups: catalog
                .principals()
                .map(|p| (p.id.clone(), p.groups.clone()))
                .collect(),
            shifts: RwLock::new(Arc::new(shifts)),
            files,
            board,
        })
    }

    /// The schedule systems.
    pub fn board(&self) -> &Arc<crate::oncall::OnCallBoard> {
        &self.board
    }

    /// Reads the schedule files again, without putting them in force.
    pub fn read_schedule(&self) -> Result<Schedule, Vec<String>> {
        read_schedules(&self.files).map(Schedule)
    }

    /// Puts a schedule read by [`Self::read_schedule`] in force.
    pub fn set_schedule(&self, schedule: Schedule) {
        *self
            .shifts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(schedule.0);
    }

    /// Reads the schedule file again; on any problem the old schedule stays.
    pub fn reload_schedule(&self) -> Result<usize, Vec<String>> {
        let schedule = self.read_schedule()?;
        let n = schedule.0.len();
        self.set_schedule(schedule);
        Ok(n)
    }
}

impl ContextFacts for ConfiguredFacts {
    fn local_time(&self, at: Timestamp) -> (u8, String) {
        let Ok(ts) = jiff::Timestamp::from_millisecond(at.unix_millis()) else {
            return at.hour_and_weekday();
        };
        let zoned = ts.to_zoned(self.tz.clone());
        let weekday = match zoned.weekday() {
            jiff::civil::Weekday::Monday => "Monday",
            jiff::civil::Weekday::Tuesday => "Tuesday",
            jiff::civil::Weekday::Wednesday => "Wednesday",
            jiff::civil::Weekday::Thursday => "Thursday",
            jiff::civil::Weekday::Friday => "Friday",
            jiff::civil::Weekday::Saturday => "Saturday",
            jiff::civil::Weekday::Sunday => "Sunday",
        };
        (u8::try_from(zoned.hour()).unwrap_or(0), weekday.to_owned())
    }

    fn on_call(&self, who: &PrincipalId, at: Timestamp) -> bool {
        let shifts = Arc::clone(
            &self
                .shifts
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let groups = self.groups.get(who);
        shifts.iter().any(|s| {
            s.from <= at
                && at < s.until
                && match &s.who {
                    OnCall::Principal(p) => p == who.as_str(),
                    OnCall::Group(g) => groups.is_some_and(|gs| gs.contains(g)),
                }
        }) || self.board.on_call(who, at)
    }
}

#[cfg(test)]
mod tests {
    use hourglass_core::catalog::{Principal, PrincipalKind, PrincipalStatus};

    use super::*;

    fn catalog() -> Catalog {
        let p = |name: &str, groups: &[&str]| Principal {
            id: PrincipalId::new(name).unwrap(),
            kind: PrincipalKind::Human,
            owner: None,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            status: PrincipalStatus::Active,
            manager: None,
            department: None,
        };
        Catalog::new(
            vec![p("alice", &[]), p("bob", &["sre"])],
            vec![],
            vec![],
            vec![],
        )
        .unwrap()
    }

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn local_time_follows_the_zone_and_its_daylight_saving() {
        let f =
            ConfiguredFacts::load("Europe/Berlin", Vec::new(), Arc::default(), &catalog()).unwrap();
        // Winter: UTC+1. 23:30 UTC on Sunday is 00:30 on Monday in Berlin.
        assert_eq!(
            f.local_time(at("2026-11-22T23:30:00Z")),
            (0, "Monday".into())
        );
        // Summer: UTC+2.
        assert_eq!(
            f.local_time(at("2026-07-01T10:00:00Z")),
            (12, "Wednesday".into())
        );
        let utc = ConfiguredFacts::load("UTC", Vec::new(), Arc::default(), &catalog()).unwrap();
        assert_eq!(
            utc.local_time(at("2026-11-22T23:30:00Z")),
            (23, "Sunday".into())
        );
        assert!(
            ConfiguredFacts::load("Mars/Olympus", Vec::new(), Arc::default(), &catalog()).is_err()
        );
    }

    #[test]
    fn shifts_cover_principals_and_groups_in_half_open_windows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oncall.toml");
        std::fs::write(
            &path,
            r#"
[[shift]]
principal = "alice"
from = "2026-11-23T08:00:00Z"
until = "2026-11-23T20:00:00Z"

[[shift]]
group = "sre"
from = "2026-11-23T20:00:00Z"
until = "2026-11-24T08:00:00Z"
"#,
        )
        .unwrap();
        let f =
            ConfiguredFacts::load("UTC", vec![path.clone()], Arc::default(), &catalog()).unwrap();
        let alice = PrincipalId::new("alice").unwrap();
        let bob = PrincipalId::new("bob").unwrap();
        assert!(!f.on_call(&alice, at("2026-11-23T07:59:59Z")));
        assert!(f.on_call(&alice, at("2026-11-23T08:00:00Z")));
        assert!(!f.on_call(&alice, at("2026-11-23T20:00:00Z")));
        assert!(f.on_call(&bob, at("2026-11-23T20:00:00Z")));
        assert!(!f.on_call(&bob, at("2026-11-23T12:00:00Z")));

        // A broken file keeps the old schedule.
        std::fs::write(
            &path,
            "[[shift]]\nprincipal = \"bob\"\nfrom = \"x\"\nuntil = \"y\"\n",
        )
        .unwrap();
        let e = f.reload_schedule().unwrap_err();
        assert!(
            e[0].contains("shift[0]: from and until must be RFC 3339"),
            "{e:?}"
        );
        assert!(f.on_call(&alice, at("2026-11-23T08:00:00Z")));
    }
}
