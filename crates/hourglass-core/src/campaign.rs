//! Access reviews (campaigns): a list of what people may ask for, hold, or own, put in front of
//! reviewers who keep or remove each item by a deadline.
//!
//! A campaign covers one scope:
//! - **eligibility**: who may ask for what, enumerated from policy over the identities;
//! - **standing**: privilege the connectors' discovery found that no live grant explains;
//! - **identities**: workloads and agents, their owners and keys.
//!
//! Each item has one reviewer, resolved when the campaign starts by the campaign's rule (the
//! person's manager, the identity's owner, a named group, or the administrators when the rule
//! finds nobody). Each decision acts:
//! - removing an **eligibility** writes a ledger entry that refuses the person's next request for
//!   it (nobody edits a policy file);
//! - removing **standing** privilege queues a connector job that takes it away in the target and
//!   checks, by discovery, that it is gone; **converting** does the same and makes the person
//!   eligible for the entitlement instead (a ledger entry that adds a permit, never overrides a
//!   `forbid`);
//! - removing an **identity** suspends it and ends everything it holds, in the decision's commit.
//!
//! At the deadline every undecided item takes the campaign's default action (`keep` or `remove`)
//! and the campaign closes.
//!
//! ```text
//! open ──deadline (undecided items take the default)──▶ closed
//! item: undecided ──keep | remove | convert──▶ decided [──job──▶ done | failed]
//! ```

use serde::{Deserialize, Serialize};

use crate::{
    Error, Result, Timestamp,
    id::{CampaignId, CampaignItemId, PrincipalId},
    policy::{Action, Decision},
};

macro_rules! word_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

word_enum!(
    /// What a campaign reviews.
    CampaignScope {
        /// Who may ask for what (policy over the identities).
        Eligibility = "eligibility",
        /// Privilege held in targets outside any live grant.
        Standing = "standing",
        /// Workloads and agents: their owners and keys.
        Identities = "identities",
    }
);

word_enum!(
    /// What happens to an item nobody decided by the deadline.
    DefaultAction {
        Keep = "keep",
        Remove = "remove",
    }
);

word_enum!(
    CampaignState {
        Open = "open",
        Closed = "closed",
    }
);

word_enum!(
    /// A reviewer's decision on one item.
    ItemDecision {
        /// It stays.
        Keep = "keep",
        /// It goes: eligibility removed, standing privilege taken away, identity suspended.
        Remove = "remove",
        /// Standing privilege becomes just-in-time: taken away, and the person made eligible
        /// for the entitlement it is.
        Convert = "convert",
    }
);

word_enum!(
    /// The target work a decision queued (standing privilege only).
    Work {
        /// Nothing to do in a target.
        None = "none",
        /// Queued or being retried.
        Pending = "pending",
        /// Done, and discovery no longer finds the holding.
        Done = "done",
        /// Given up after the most attempts: take it away by hand.
        Failed = "failed",
    }
);

word_enum!(
    /// Whether a ledger eligibility entry adds or removes.
    Effect {
        /// The person may ask (a permit beside policy; a `forbid` still refuses).
        Added = "added",
        /// The person may not ask, whatever policy permits.
        Removed = "removed",
    }
);

/// Who reviews the items of a campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum ReviewerRule {
    /// The person's manager (from the directory or the configuration).
    Manager,
    /// A workload's or agent's owner; for a person, their manager.
    Owner,
    /// Anyone in the named group.
    Group(String),
    /// Administrators of every entitlement.
    Administrators,
}

impl ReviewerRule {
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                crate::ErrorCode::CampaignInvalid,
                "reviewers",
                format!(
                    "reviewers must be manager, owner, administrators or group:<name>, not {s:?}"
                ),
            )
        };
        match s.trim() {
            "manager" => Ok(ReviewerRule::Manager),
            "owner" => Ok(ReviewerRule::Owner),
            "administrators" => Ok(ReviewerRule::Administrators),
            other => match other.strip_prefix("group:") {
                Some(g) if crate::id::PrincipalId::new(g).is_ok() => {
                    Ok(ReviewerRule::Group(g.to_owned()))
                }
                _ => Err(bad()),
            },
        }
    }
}

impl From<ReviewerRule> for String {
    fn from(r: ReviewerRule) -> String {
        match r {
            ReviewerRule::Manager => "manager".into(),
            ReviewerRule::Owner => "owner".into(),
            ReviewerRule::Administrators => "administrators".into(),
            ReviewerRule::Group(g) => format!("group:{g}"),
        }
    }
}

impl TryFrom<String> for ReviewerRule {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        ReviewerRule::parse(&s)
    }
}

impl std::fmt::Display for ReviewerRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from(self.clone()))
    }
}

/// The reviewer of one item, resolved when the campaign starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Reviewer {
    Person(PrincipalId),
    Group(String),
    Administrators,
}

impl Reviewer {
    pub fn parse(s: &str) -> Option<Self> {
        if s == "administrators" {
            return Some(Reviewer::Administrators);
        }
        if let Some(p) = s.strip_prefix("person:") {
            return PrincipalId::new(p).ok().map(Reviewer::Person);
        }
        s.strip_prefix("group:")
            .filter(|g| !g.is_empty())
            .map(|g| Reviewer::Group(g.to_owned()))
    }
}

impl From<Reviewer> for String {
    fn from(r: Reviewer) -> String {
        match r {
            Reviewer::Person(p) => format!("person:{p}"),
            Reviewer::Group(g) => format!("group:{g}"),
            Reviewer::Administrators => "administrators".into(),
        }
    }
}

impl TryFrom<String> for Reviewer {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        Reviewer::parse(&s).ok_or_else(|| format!("not a reviewer: {s}"))
    }
}

impl std::fmt::Display for Reviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from(self.clone()))
    }
}

/// An access review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: CampaignId,
    pub name: String,
    pub scope: CampaignScope,
    pub reviewers: ReviewerRule,
    pub default_action: DefaultAction,
    pub state: CampaignState,
    pub created_by: String,
    pub created_at: Timestamp,
    pub deadline: Timestamp,
    /// When reviewers with undecided items are reminded (once), if before the deadline.
    pub remind_at: Option<Timestamp>,
    pub reminded: bool,
    pub closed_at: Option<Timestamp>,
    /// How many items it has.
    pub items: u32,
    pub version: i64,
}

/// One thing to keep or remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignItem {
    pub id: CampaignItemId,
    pub campaign: CampaignId,
    pub kind: CampaignScope,
    /// Who may ask (eligibility), who holds (standing, where the target maps the holder to a
    /// principal), or the identity itself (identities).
    pub principal: Option<PrincipalId>,
    /// The entitlement or profile (eligibility), or the entitlement the standing privilege is.
    pub access: Option<String>,
    /// Standing privilege: where, who in the target's terms, and what.
    pub target: Option<String>,
    pub holder: Option<String>,
    pub privilege: Option<String>,
    pub reviewer: Reviewer,
    pub decision: Option<ItemDecision>,
    /// A principal, or `deadline` for the default action.
    pub decided_by: Option<String>,
    pub decided_at: Option<Timestamp>,
    pub note: Option<String>,
    pub work: Work,
    pub run_at: Option<Timestamp>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub version: i64,
}

impl CampaignItem {
    /// The decisions this item can take.
    pub fn allows(&self, d: ItemDecision) -> bool {
        match d {
            ItemDecision::Keep | ItemDecision::Remove => true,
            ItemDecision::Convert => {
                self.kind == CampaignScope::Standing
                    && self.principal.is_some()
                    && self.access.is_some()
            }
        }
    }
}

/// How far a campaign has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub total: u64,
    pub decided: u64,
    pub keep: u64,
    pub remove: u64,
    pub convert: u64,
    /// Decided by the deadline's default action.
    pub by_default: u64,
    /// Target work queued or being retried.
    pub work_pending: u64,
    pub work_failed: u64,
}

/// What a review decided about one person's eligibility, kept in the ledger and consulted at
/// every `Request` decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EligibilityEntry {
    pub principal: PrincipalId,
    /// An entitlement or profile name.
    pub access: String,
    pub effect: Effect,
    /// The campaign item that decided it.
    pub item: CampaignItemId,
    pub at: Timestamp,
}

/// The policy id a review's entry is named by in decisions and the audit.
pub fn policy_id(item: &CampaignItemId) -> String {
    format!("hourglass:review:{item}")
}

/// One person's reviewed eligibility.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reviewed {
    pub entries: Vec<EligibilityEntry>,
}

impl Reviewed {
    fn find(&self, who: &PrincipalId, access: &str, effect: Effect) -> Option<&EligibilityEntry> {
        self.entries
            .iter()
            .find(|e| e.principal == *who && e.access == access && e.effect == effect)
    }

    /// A decision of `action` for `who` with the reviews applied. `names` is the resource's
    /// name first, then, for a profile, its entitlements'. A removal of any of them refuses
    /// asking, breaking glass and extending, whatever policy said; an addition of the resource
    /// itself permits asking (only) where policy had no permit (a default deny: no determining
    /// policy, no error), never where a `forbid` refused.
    pub fn apply(
        &self,
        action: Action,
        who: &PrincipalId,
        names: &[&str],
        d: Decision,
    ) -> Decision {
        if !matches!(
            action,
            Action::Request | Action::BreakGlass | Action::Extend
        ) {
            return d;
        }
        if let Some(e) = names
            .iter()
            .find_map(|n| self.find(who, n, Effect::Removed))
        {
            return Decision {
                allowed: false,
                policy_ids: vec![policy_id(&e.item)],
                policy_hash: d.policy_hash,
                errors: Vec::new(),
            };
        }
        if action == Action::Request
            && !d.allowed
            && d.policy_ids.is_empty()
            && d.errors.is_empty()
            && let Some(e) = names.first().and_then(|n| self.find(who, n, Effect::Added))
        {
            return Decision {
                allowed: true,
                policy_ids: vec![policy_id(&e.item)],
                policy_hash: d.policy_hash,
                errors: Vec::new(),
            };
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(access: &str, effect: Effect) -> EligibilityEntry {
        EligibilityEntry {
            principal: PrincipalId::new("alice").unwrap(),
            access: access.into(),
            effect,
            item: CampaignItemId::parse("itm_0000000000000000000000000000000a").unwrap(),
            at: Timestamp::from_unix_millis(0),
        }
    }

    fn decision(allowed: bool, ids: &[&str]) -> Decision {
        Decision {
            allowed,
            policy_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            policy_hash: "sha256:x".into(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn a_removal_refuses_whatever_policy_permits_and_names_the_item() {
        let r = Reviewed {
            entries: vec![entry("pg/read", Effect::Removed)],
        };
        let alice = PrincipalId::new("alice").unwrap();
        let d = r.apply(
            Action::Request,
            &alice,
            &["pg/read"],
            decision(true, &["requesters"]),
        );
        assert!(!d.allowed);
        assert_eq!(
            d.policy_ids,
            ["hourglass:review:itm_0000000000000000000000000000000a"]
        );
        // A profile holding a removed entitlement is refused too.
        assert!(
            !r.apply(
                Action::Request,
                &alice,
                &["ops/bundle", "pg/read"],
                decision(true, &["p"])
            )
            .allowed
        );
        assert!(
            r.apply(
                Action::Request,
                &alice,
                &["pg/write"],
                decision(true, &["p"])
            )
            .allowed
        );
        // Breaking glass and extending are refused too; approving is not the person's.
        for action in [Action::BreakGlass, Action::Extend] {
            assert!(
                !r.apply(action, &alice, &["pg/read"], decision(true, &["p"]))
                    .allowed
            );
        }
        assert!(
            r.apply(
                Action::Approve,
                &alice,
                &["pg/read"],
                decision(true, &["p"])
            )
            .allowed
        );
        // Someone else's entry is not alice's.
        let bob = PrincipalId::new("bob").unwrap();
        assert!(
            r.apply(Action::Request, &bob, &["pg/read"], decision(true, &["p"]))
                .allowed
        );
    }

    #[test]
    fn an_addition_permits_only_where_no_policy_forbade() {
        let r = Reviewed {
            entries: vec![entry("pg/read", Effect::Added)],
        };
        let alice = PrincipalId::new("alice").unwrap();
        let ask = |names: &[&str], d| r.apply(Action::Request, &alice, names, d);
        assert!(ask(&["pg/read"], decision(false, &[])).allowed);
        assert!(
            !r.apply(
                Action::BreakGlass,
                &alice,
                &["pg/read"],
                decision(false, &[])
            )
            .allowed,
            "an addition is asking only"
        );
        assert!(
            !r.apply(
                Action::Request,
                &PrincipalId::new("bob").unwrap(),
                &["pg/read"],
                decision(false, &[])
            )
            .allowed
        );
        let forbidden = ask(&["pg/read"], decision(false, &["freeze"]));
        assert!(!forbidden.allowed, "a forbid still refuses");
        assert_eq!(forbidden.policy_ids, ["freeze"]);
        let mut broken = decision(false, &[]);
        broken.errors.push("evaluation error".into());
        assert!(!ask(&["pg/read"], broken).allowed);
        assert!(!ask(&["pg/write"], decision(false, &[])).allowed);
        // Policy's own permit stays named as it was.
        assert_eq!(
            ask(&["pg/read"], decision(true, &["requesters"])).policy_ids,
            ["requesters"]
        );
    }

    #[test]
    fn rules_and_reviewers_read_back_what_they_write() {
        for s in ["manager", "owner", "administrators", "group:sre"] {
            assert_eq!(String::from(ReviewerRule::parse(s).unwrap()), s);
        }
        for s in ["", "boss", "group:", "group:a b"] {
            assert!(ReviewerRule::parse(s).is_err(), "{s}");
        }
        for s in ["person:alice", "group:sre", "administrators"] {
            assert_eq!(String::from(Reviewer::parse(s).unwrap()), s);
        }
        assert!(Reviewer::parse("alice").is_none());
        for d in ItemDecision::ALL {
            assert_eq!(ItemDecision::parse(d.as_str()), Some(*d));
        }
    }
}
