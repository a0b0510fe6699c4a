//! The identity hygiene report: what an access review of machine identities looks for.
//! Non-humans with no owner or an owner who left, keys past the rotation rule or that never
//! expire, and identities that have not acted for a while. Read-only.

use super::{Caller, Engine};
use crate::{
    Result,
    catalog::{PrincipalKind, PrincipalStatus},
    identity::Origin,
};

/// One thing the report flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub identity: String,
    pub finding: &'static str,
    pub detail: String,
}

const DAY_MS: i64 = 86_400_000;

impl Engine {
    /// Flags hygiene problems; takes Administer on every entitlement. `unused_days`: an
    /// identity that has not authenticated for this long (or never, this long after it was
    /// created) is flagged.
    pub async fn identity_report(&self, caller: &Caller, unused_days: u64) -> Result<Vec<Finding>> {
        self.require_admin_of_all(caller, crate::ErrorCode::ReportNotAllowed)?;
        let now = self.clock.now();
        let identities = self.store.list_identities().await?;
        let keys = self.store.list_keys(None).await?;
        let rotate_after = self.settings.keys.rotate_after;
        let unused_ms = i64::try_from(unused_days).unwrap_or(i64::MAX / DAY_MS) * DAY_MS;
        let mut out = Vec::new();
        let mut flag = |who: &str, finding, detail: String| {
            out.push(Finding {
                identity: who.to_owned(),
                finding,
                detail,
            });
        };
        for i in &identities {
            let p = &i.principal;
            let who = p.id.as_str();
            if p.status == PrincipalStatus::Offboarded {
                continue;
            }
            if p.kind != PrincipalKind::Human {
                match p.owner.as_deref() {
                    None => flag(
                        who,
                        "owner_missing",
                        format!("a {} with no owner", p.kind.as_str()),
                    ),
                    Some(o) => match identities.iter().find(|x| x.id().as_str() == o) {
                        Some(x) if x.principal.status == PrincipalStatus::Offboarded => flag(
                            who,
                            "owner_offboarded",
                            format!(
                                "its owner {o} is offboarded; give it a new owner or offboard it"
                            ),
                        ),
                        Some(x) if x.principal.status == PrincipalStatus::Suspended => {
                            flag(
                                who,
                                "owner_suspended",
                                format!("its owner {o} is suspended"),
                            );
                        }
                        Some(_) => {}
                        None if identities
                            .iter()
                            .any(|x| x.principal.groups.iter().any(|g| g == o)) => {}
                        None => flag(
                            who,
                            "owner_unknown",
                            format!(
                                "its owner {o:?} is neither an identity nor a group anyone is in"
                            ),
                        ),
                    },
                }
                let last = i.last_seen_at.unwrap_or(i.created_at);
                if now.millis_since(last) >= unused_ms {
                    let (finding, detail) = match i.last_seen_at {
                        Some(t) => (
                            "unused",
                            format!("last authenticated {t}, over {unused_days} days ago"),
                        ),
                        None => (
                            "never_used",
                            format!("never authenticated since it was created {}", i.created_at),
                        ),
                    };
                    flag(who, finding, detail);
                }
            }
            if p.status != PrincipalStatus::Active {
                continue;
            }
            for k in keys
                .iter()
                .filter(|k| &k.principal == i.id() && k.is_valid_at(now))
            {
                let age_days = now.millis_since(k.created_at) / DAY_MS;
                if k.origin == Origin::Config {
                    flag(
                        who,
                        "config_token",
                        format!(
                            "key {} is a token from configuration: it never expires ({age_days} days old); issue an expiring key instead",
                            k.id
                        ),
                    );
                } else if now.millis_since(k.created_at) >= rotate_after.as_millis()
                    && k.replaced_by.is_none()
                {
                    flag(
                        who,
                        "key_needs_rotation",
                        format!(
                            "key {} ({}) is {age_days} days old; the rule is to rotate after {rotate_after}",
                            k.id,
                            k.prefix.as_deref().unwrap_or("")
                        ),
                    );
                }
            }
        }
        Ok(out)
    }
}
