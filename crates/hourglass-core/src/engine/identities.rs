//! Identities: authentication by key, the directory declared from configuration, the inventory,
//! creation (workloads and agents need an owner), suspension, and offboarding (every grant and key
//! of the identity revoked in one commit, idempotent). Keys themselves are in [`super::keys`].
//!
//! Authority: creating an identity takes Administer on every entitlement; suspending,
//! offboarding and managing keys also lets the identity's owner (the owner by name, or a member
//! of the owner group) act. Every change and its audit record commit together.

use tracing::{info, instrument, warn};

use super::{
    Caller, Engine,
    keys::{revoked, same_digest, secret_hash},
    retry_on_conflict,
};
use crate::{
    Error, Result,
    catalog::{Principal, PrincipalKind, PrincipalStatus},
    grant::{Grant, GrantState},
    id::{GrantId, KeyId, PrincipalId, RequestId},
    identity::{
        ApiKey, Authority, Identity, Origin, StatusSetBy, check_owner, check_transition, key_prefix,
    },
    lifecycle::Event,
    request::{RequestCommand, RequestState},
    store::{Commit, GrantFilter, RequestFilter},
};

/// `identity` suspended (`active = false`) or resumed by `actor` with `authority`, decided
/// without the store: `None` when it has that status already. An offboarded identity stays
/// offboarded, and an owner never lifts a suspension an administrator, the configuration or
/// the directory set. A suspension records who set it and as what; a resumption clears it.
fn decide_status(
    identity: &Identity,
    active: bool,
    actor: &PrincipalId,
    authority: Authority,
    reason: Option<&String>,
) -> Result<Option<Identity>> {
    let to = if active {
        PrincipalStatus::Active
    } else {
        PrincipalStatus::Suspended
    };
    check_transition(identity.id(), identity.principal.status, to)?;
    if identity.principal.status == to {
        return Ok(None);
    }
    if active
        && authority == Authority::Owner
        && identity
            .status_set_by
            .as_ref()
            .is_some_and(|by| by.authority != Authority::Owner)
    {
        let by = identity
            .status_set_by
            .as_ref()
            .map_or("", |b| b.actor.as_str());
        return Err(Error::forbidden(
            crate::ErrorCode::IdentityResumeNotAllowed,
            format!(
                "{} was suspended by {by} as an administrator (or by the configuration); only an administrator lifts that",
                identity.id()
            ),
        ));
    }
    let mut changed = identity.clone();
    changed.principal.status = to;
    changed.status_reason = reason.cloned();
    changed.status_set_by = (!active).then(|| StatusSetBy {
        actor: actor.to_string(),
        authority,
    });
    Ok(Some(changed))
}

/// Why a presented API key was refused: for the audit, never for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRefused {
    /// `unknown key`, `wrong secret for a known key`, `key revoked`, `key expired`,
    /// `identity not active`.
    pub reason: &'static str,
    /// The key's public prefix, when the presented text has the shape of a key.
    pub key_prefix: Option<String>,
    /// Whose key it is, when it is a stored key.
    pub identity: Option<String>,
}

/// A new identity, as a client asks for it.
#[derive(Debug, Clone, Default)]
pub struct NewIdentity {
    pub name: String,
    pub kind: String,
    pub owner: Option<String>,
    pub groups: Vec<String>,
}

/// An identity declared in configuration, with the hash of its configured token if any.
#[derive(Debug, Clone)]
pub struct Declared {
    pub principal: Principal,
    /// SHA-256 hex digests of the tokens configured for it.
    pub token_sha256: Vec<String>,
}

/// What offboarding did.
#[derive(Debug, Clone)]
pub struct Offboarded {
    pub identity: Identity,
    /// False when it was already offboarded and nothing changed.
    pub changed: bool,
    pub grants_revoked: Vec<GrantId>,
    pub keys_revoked: Vec<KeyId>,
    pub requests_cancelled: Vec<RequestId>,
}

/// One line of the inventory.
#[derive(Debug, Clone)]
pub struct InventoryEntry {
    pub identity: Identity,
    pub keys: Vec<ApiKey>,
    pub live_grants: Vec<Grant>,
    /// Set when the owner is a known identity that is offboarded or suspended.
    pub owner_status: Option<PrincipalStatus>,
}

pub(super) const MAX_GROUPS: usize = 32;

impl Engine {
    /// The principal as stored now, or `None`.
    pub async fn principal(&self, id: &PrincipalId) -> Result<Option<Principal>> {
        Ok(self.store.get_identity(id).await?.map(|i| i.principal))
    }

    /// Looks up an authenticated principal by name; suspended and offboarded ones cannot act.
    pub async fn active_principal(&self, id: &PrincipalId) -> Result<Principal> {
        let p = self.principal(id).await?.ok_or_else(|| {
            Error::forbidden(
                crate::ErrorCode::PrincipalUnknown,
                format!("unknown principal {id}"),
            )
        })?;
        if p.status != PrincipalStatus::Active {
            return Err(Error::forbidden(
                crate::ErrorCode::PrincipalInactive,
                format!("principal {id} is {}", p.status.as_str()),
            ));
        }
        Ok(p)
    }

    /// The principal an API key (or a token declared in configuration) belongs to, if the key
    /// is valid now. Otherwise why not (an unknown, expired or revoked key, a wrong secret for
    /// a known key, or a principal suspended or offboarded), for the audit only: the caller
    /// answers 401 without saying which. Use is recorded (last used, last seen) at most once a
    /// minute.
    pub async fn authenticate_key(
        &self,
        presented: &str,
    ) -> Result<std::result::Result<Principal, KeyRefused>> {
        let presented = presented.trim();
        let hash = secret_hash(presented);
        let prefix = key_prefix(presented);
        let key = match prefix {
            Some(prefix) => self.store.find_key_by_prefix(prefix).await?,
            None => self.store.find_key_by_hash(&hash).await?,
        };
        let refused = |reason: &'static str, key: Option<&ApiKey>| KeyRefused {
            reason,
            key_prefix: prefix.map(str::to_owned),
            identity: key.map(|k| k.principal.to_string()),
        };
        let now = self.clock.now();
        let Some(key) = key else {
            return Ok(Err(refused("unknown key", None)));
        };
        if !same_digest(&key.hash, &hash) {
            return Ok(Err(refused("wrong secret for a known key", Some(&key))));
        }
        if !key.is_valid_at(now) {
            let reason = if key.revoked_at.is_some() {
                "key revoked"
            } else {
                "key expired"
            };
            return Ok(Err(refused(reason, Some(&key))));
        }
        let Some(principal) = self
            .principal(&key.principal)
            .await?
            .filter(|p| p.status == PrincipalStatus::Active)
        else {
            return Ok(Err(refused("identity not active", Some(&key))));
        };
        self.store.touch(&principal.id, Some(&key.id), now).await?;
        Ok(Ok(principal))
    }

    /// Records that `principal` acted now (for callers authenticated without a key).
    pub async fn seen(&self, principal: &PrincipalId) -> Result<()> {
        self.store.touch(principal, None, self.clock.now()).await
    }

    /// Brings the directory in line with `[[identities]]` at start: new ones are added, changed
    /// kinds, owners and groups are updated (status is kept: an offboarded identity stays so),
    /// configured tokens are registered, and tokens or identities removed from configuration are
    /// revoked or suspended. Each change is audited as `system`.
    pub async fn declare_identities(&self, declared: &[Declared]) -> Result<()> {
        retry_on_conflict(|| async {
            let now = self.clock.now();
            let mut commit = Commit::default();
            let stored = self.store.list_identities().await?;
            let keys = self.store.list_keys(None).await?;
            for d in declared {
                let p = &d.principal;
                match stored.iter().find(|i| i.principal.id == p.id) {
                    // The directory manages this person: the file cannot change them.
                    Some(i) if i.origin == Origin::Directory => {
                        warn!(identity = %p.id, "declared in the configuration but managed by the directory (SCIM); the declaration is ignored");
                    }
                    None => {
                        commit.identities.push(Identity {
                            principal: p.clone(),
                            origin: Origin::Config,
                            created_at: now,
                            last_seen_at: None,
                            status_reason: None,
                            status_set_by: None,
                            sign_in_subject: None,
                            version: 0,
                        });
                        commit.audit.push(
                            Event::IdentityDeclared {
                                identity: p.id.clone(),
                                kind: p.kind,
                                owner: p.owner.clone(),
                            }
                            .record(now),
                        );
                    }
                    Some(i)
                        if i.principal.kind != p.kind
                            || i.principal.owner != p.owner
                            || i.principal.groups != p.groups
                            || i.principal.manager != p.manager
                            || i.principal.department != p.department
                            || i.origin != Origin::Config
                            || stricter(p.status, i.principal.status) =>
                    {
                        let mut changed = i.clone();
                        changed.principal.kind = p.kind;
                        changed.principal.owner.clone_from(&p.owner);
                        changed.principal.groups.clone_from(&p.groups);
                        changed.principal.manager.clone_from(&p.manager);
                        changed.principal.department.clone_from(&p.department);
                        changed.origin = Origin::Config;
                        // Configuration may suspend or offboard; it never lifts a status set
                        // through the API (an offboarded identity stays offboarded).
                        if stricter(p.status, i.principal.status) {
                            changed.principal.status = p.status;
                            changed.status_reason = Some("set in configuration".into());
                            changed.status_set_by = Some(by_configuration());
                        }
                        commit.audit.push(
                            Event::IdentityUpdated {
                                identity: p.id.clone(),
                                kind: p.kind,
                                owner: p.owner.clone(),
                                groups: p.groups.clone(),
                                status: changed.principal.status,
                            }
                            .record(now),
                        );
                        commit.identities.push(changed);
                    }
                    Some(_) => {}
                }
                let configured: Vec<String> = d
                    .token_sha256
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect();
                for k in keys.iter().filter(|k| {
                    k.principal == p.id
                        && k.origin == Origin::Config
                        && k.revoked_at.is_none()
                        && !configured.contains(&k.hash)
                }) {
                    commit.keys.push(revoked(k, now));
                    commit.audit.push(
                        Event::KeyRevoked {
                            key: k.id.clone(),
                            actor: "system".into(),
                            identity: p.id.clone(),
                            reason: Some("token removed from configuration".into()),
                        }
                        .record(now),
                    );
                }
                for hash in configured {
                    if keys.iter().any(|k| k.hash == hash) {
                        continue;
                    }
                    let key = ApiKey {
                        id: KeyId::generate(now)?,
                        principal: p.id.clone(),
                        prefix: None,
                        hash,
                        origin: Origin::Config,
                        created_at: now,
                        expires_at: None,
                        revoked_at: None,
                        last_used_at: None,
                        replaced_by: None,
                        version: 0,
                    };
                    commit.audit.push(
                        Event::KeyDeclared {
                            key: key.id.clone(),
                            identity: p.id.clone(),
                        }
                        .record(now),
                    );
                    commit.keys.push(key);
                }
            }
            for i in stored.iter().filter(|i| {
                i.origin == Origin::Config
                    && i.principal.status == PrincipalStatus::Active
                    && !declared.iter().any(|d| d.principal.id == i.principal.id)
            }) {
                let mut gone = i.clone();
                gone.principal.status = PrincipalStatus::Suspended;
                gone.status_reason = Some("removed from configuration".into());
                gone.status_set_by = Some(by_configuration());
                commit.audit.push(
                    Event::IdentitySuspended {
                        identity: i.id().clone(),
                        actor: "system".into(),
                        authority: None,
                        reason: Some("removed from configuration".into()),
                        stripped: None,
                    }
                    .record(now),
                );
                commit.identities.push(gone);
            }
            if !commit.is_empty() {
                info!(
                    changes = commit.audit.len(),
                    "identity directory updated from configuration"
                );
            }
            self.commit(commit).await?;
            Ok(())
        })
        .await
    }

    /// Whether `caller` may manage `target`: an administrator of everything, or its owner.
    async fn may_manage(&self, caller: &Caller, target: &Identity) -> Result<bool> {
        Ok(owns(&caller.principal, target)
            || self
                .require_admin_of_all(caller, crate::ErrorCode::IdentityNotAllowed)
                .is_ok())
    }

    async fn load_identity(&self, name: &str) -> Result<Identity> {
        let not_found = || {
            Error::not_found(
                crate::ErrorCode::IdentityNotFound,
                format!("no identity {name:?}"),
            )
        };
        let id = PrincipalId::new(name.trim()).map_err(|_| not_found())?;
        self.store.get_identity(&id).await?.ok_or_else(not_found)
    }

    pub(super) async fn load_managed(&self, caller: &Caller, name: &str) -> Result<Identity> {
        let identity = self.load_identity(name).await?;
        if !self.may_manage(caller, &identity).await? {
            // Someone who may not manage it learns nothing about it either.
            return Err(Error::not_found(
                crate::ErrorCode::IdentityNotFound,
                format!("no identity {name:?}"),
            ));
        }
        Ok(identity)
    }

    /// Creates a workload, agent or human identity. Non-humans must name an owner, which must
    /// be a known active identity or a group some identity is in.
    #[instrument(skip_all, fields(principal = %caller.principal.id, identity = %new.name))]
    pub async fn create_identity(&self, caller: &Caller, new: NewIdentity) -> Result<Identity> {
        self.require_admin_of_all(caller, crate::ErrorCode::IdentityCreateNotAllowed)?;
        let id = PrincipalId::new(new.name.trim())
            .map_err(|m| Error::invalid(crate::ErrorCode::IdentityNameInvalid, "name", m))?;
        if crate::identity::is_reserved_name(id.as_str()) {
            return Err(Error::invalid(
                crate::ErrorCode::IdentityNameReserved,
                "name",
                format!("{id} is reserved for Hourglass's own audit records; choose another name"),
            ));
        }
        let kind = PrincipalKind::parse(new.kind.trim()).ok_or_else(|| {
            Error::invalid(
                crate::ErrorCode::IdentityKindInvalid,
                "kind",
                format!("kind {:?}: use human, workload or agent", new.kind),
            )
        })?;
        check_owner(kind, new.owner.as_deref())?;
        let owner = new
            .owner
            .as_deref()
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned);
        if new.groups.len() > MAX_GROUPS {
            return Err(Error::invalid(
                crate::ErrorCode::IdentityGroupsInvalid,
                "groups",
                format!("at most {MAX_GROUPS} groups"),
            ));
        }
        let mut groups = Vec::new();
        for g in &new.groups {
            let g = PrincipalId::new(g.trim()).map_err(|m| {
                Error::invalid(crate::ErrorCode::IdentityGroupsInvalid, "groups", m)
            })?;
            if !groups.contains(&g.to_string()) {
                groups.push(g.to_string());
            }
        }
        let stored = self.store.list_identities().await?;
        if let Some(o) = &owner {
            let known_identity = stored.iter().find(|i| i.id().as_str() == o);
            let known_group = stored.iter().any(|i| i.principal.groups.contains(o));
            match known_identity {
                Some(i) if i.principal.status != PrincipalStatus::Active => {
                    return Err(Error::invalid(
                        crate::ErrorCode::IdentityOwnerInactive,
                        "owner",
                        format!("owner {o} is {}", i.principal.status.as_str()),
                    ));
                }
                Some(i) if i.principal.kind != PrincipalKind::Human => {
                    return Err(Error::invalid(
                        crate::ErrorCode::IdentityOwnerNotHuman,
                        "owner",
                        format!(
                            "owner {o} is a {}; a person or a group must answer for it",
                            i.principal.kind.as_str()
                        ),
                    ));
                }
                Some(_) => {}
                None if known_group => {}
                None => {
                    return Err(Error::invalid(
                        crate::ErrorCode::IdentityOwnerUnknown,
                        "owner",
                        format!("owner {o:?} is neither a known identity nor a group"),
                    ));
                }
            }
        }
        let now = self.clock.now();
        let identity = Identity {
            principal: Principal {
                id: id.clone(),
                kind,
                owner: owner.clone(),
                groups: groups.clone(),
                status: PrincipalStatus::Active,
                manager: None,
                department: None,
            },
            origin: Origin::Api,
            created_at: now,
            last_seen_at: None,
            status_reason: None,
            status_set_by: None,
            sign_in_subject: None,
            version: 0,
        };
        let ev = Event::IdentityCreated {
            identity: id.clone(),
            actor: caller.principal.id.to_string(),
            kind,
            owner: owner.clone(),
            groups: groups.clone(),
        }
        .record(now);
        match self
            .commit(Commit {
                identities: vec![identity.clone()],
                audit: vec![ev],
                ..Commit::default()
            })
            .await
        {
            Err(Error::StoreConflict) => Err(Error::conflict(
                crate::ErrorCode::IdentityExists,
                format!("an identity named {id} exists"),
            )),
            Err(e) => Err(e),
            Ok(_) => {
                info!(identity = %id, kind = kind.as_str(), "identity created");
                Ok(Identity {
                    version: 1,
                    ..identity
                })
            }
        }
    }

    /// Suspends (`active = false`) or resumes an identity. A suspended identity cannot
    /// authenticate; its grants run on until they end (offboard to end them now). The
    /// suspension records who decided it and as what: an owner may lift their own suspension,
    /// but only an administrator lifts one that an administrator (or the configuration) set.
    pub async fn set_identity_active(
        &self,
        caller: &Caller,
        name: &str,
        active: bool,
        reason: Option<String>,
    ) -> Result<Identity> {
        let reason = reason
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty());
        if let Some(r) = &reason {
            crate::text::check(r, super::requests::MAX_REASON).map_err(|m| {
                Error::invalid(crate::ErrorCode::IdentityReasonInvalid, "reason", m)
            })?;
        }
        let reason = &reason;
        let authority = if self
            .require_admin_of_all(caller, crate::ErrorCode::IdentityNotAllowed)
            .is_ok()
        {
            Authority::Administrator
        } else {
            Authority::Owner
        };
        // Read, decide (pure: `decide_status`), commit.
        retry_on_conflict(|| async {
            let identity = self.load_managed(caller, name).await?;
            let Some(mut changed) = decide_status(
                &identity,
                active,
                &caller.principal.id,
                authority,
                reason.as_ref(),
            )?
            else {
                return Ok(identity);
            };
            let now = self.clock.now();
            let mut stripped = None;
            let mut commit = Commit::default();
            // An agent suspended stops at once: every grant it holds is revoked and every open
            // request cancelled, in this commit (the kill switch). Its keys stop working while
            // it is suspended, and work again if it is resumed.
            if !active && identity.principal.kind == PrincipalKind::Agent {
                let why = format!(
                    "agent {} suspended by {}",
                    identity.id(),
                    caller.principal.id
                );
                let (grants, requests, _) = self
                    .strip_into(
                        identity.id(),
                        caller.principal.id.as_str(),
                        &why,
                        None,
                        now,
                        &mut commit,
                    )
                    .await?;
                stripped = Some((grants.len(), requests.len()));
            }
            let actor = caller.principal.id.to_string();
            let ev = if active {
                Event::IdentityResumed {
                    identity: identity.id().clone(),
                    actor,
                    authority,
                    reason: reason.clone(),
                }
            } else {
                Event::IdentitySuspended {
                    identity: identity.id().clone(),
                    actor,
                    authority: Some(authority),
                    reason: reason.clone(),
                    stripped,
                }
            };
            commit.identities.push(changed.clone());
            commit.audit.push(ev.record(now));
            let revoked = commit.jobs.len();
            self.commit(commit).await?;
            if revoked > 0 {
                self.wake.jobs_changed();
            }
            changed.version += 1;
            Ok(changed)
        })
        .await
    }

    /// Offboards an identity: it can never act again, every grant it holds is revoked, every key
    /// revoked and every open request cancelled, all in one commit. A second call changes
    /// nothing and says so.
    #[instrument(skip_all, fields(principal = %caller.principal.id, identity = %name))]
    pub async fn offboard(&self, caller: &Caller, name: &str, reason: &str) -> Result<Offboarded> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(Error::invalid(
                crate::ErrorCode::IdentityReasonMissing,
                "reason",
                "say why the identity is offboarded",
            ));
        }
        crate::text::check(reason, super::requests::MAX_REASON)
            .map_err(|m| Error::invalid(crate::ErrorCode::IdentityReasonInvalid, "reason", m))?;
        let out = retry_on_conflict(|| async {
            let identity = self.load_managed(caller, name).await?;
            let id = identity.id().clone();
            let now = self.clock.now();
            let actor = caller.principal.id.as_str();
            let mut commit = Commit::default();
            let mut out = Offboarded {
                identity: identity.clone(),
                changed: false,
                grants_revoked: Vec::new(),
                keys_revoked: Vec::new(),
                requests_cancelled: Vec::new(),
            };
            let why = format!("identity {id} offboarded by {actor}: {reason}");
            let stripped = self
                .strip_into(
                    &id,
                    actor,
                    &why,
                    Some("identity offboarded"),
                    now,
                    &mut commit,
                )
                .await?;
            out.grants_revoked = stripped.0;
            out.requests_cancelled = stripped.1;
            out.keys_revoked = stripped.2;
            if identity.principal.status != PrincipalStatus::Offboarded {
                let mut gone = identity.clone();
                gone.principal.status = PrincipalStatus::Offboarded;
                gone.status_reason = Some(reason.to_owned());
                gone.status_set_by = Some(StatusSetBy {
                    actor: actor.to_owned(),
                    authority: if owns(&caller.principal, &identity)
                        && self
                            .require_admin_of_all(caller, crate::ErrorCode::IdentityNotAllowed)
                            .is_err()
                    {
                        Authority::Owner
                    } else {
                        Authority::Administrator
                    },
                });
                commit.audit.push(
                    Event::IdentityOffboarded {
                        identity: id.clone(),
                        actor: actor.to_owned(),
                        reason: reason.to_owned(),
                        grants_revoked: out.grants_revoked.len(),
                        keys_revoked: out.keys_revoked.len(),
                        requests_cancelled: out.requests_cancelled.len(),
                    }
                    .record(now),
                );
                commit.identities.push(gone.clone());
                out.identity = Identity {
                    version: gone.version + 1,
                    ..gone
                };
            }
            out.changed = !commit.is_empty();
            self.commit(commit).await?;
            Ok(out)
        })
        .await?;
        if !out.grants_revoked.is_empty() {
            self.wake.jobs_changed();
        }
        warn!(identity = %out.identity.id(), grants = out.grants_revoked.len(), keys = out.keys_revoked.len(), changed = out.changed, "identity offboarded");
        Ok(out)
    }

    /// Adds to `commit` the end of everything `id` holds: its live grants revoked, its open
    /// requests cancelled and (with `key_reason`) its keys revoked, each audited (`why` for
    /// grants and requests). Answers what it ended.
    pub(super) async fn strip_into(
        &self,
        id: &PrincipalId,
        actor: &str,
        why: &str,
        key_reason: Option<&str>,
        now: crate::Timestamp,
        commit: &mut Commit,
    ) -> Result<(Vec<GrantId>, Vec<RequestId>, Vec<KeyId>)> {
        let mut grants = Vec::new();
        let mut requests = Vec::new();
        let mut keys = Vec::new();
        for g in self
            .grants_of(id, &[GrantState::Provisioning, GrantState::Active])
            .await?
        {
            Self::revoke_into(&g, actor, why.to_owned(), now, commit)?;
            grants.push(g.id);
        }
        for state in [RequestState::Pending, RequestState::Approved] {
            for r in self
                .store
                .list_requests(&RequestFilter {
                    state: Some(state),
                    requester: Some(id.clone()),
                    before: None,
                    limit: u32::MAX,
                })
                .await?
            {
                let (cancelled, ev) = r.apply(
                    RequestCommand::Cancel {
                        actor: actor.to_owned(),
                        note: Some(why.to_owned()),
                    },
                    now,
                )?;
                requests.push(cancelled.id.clone());
                commit.requests.push(cancelled);
                commit.audit.push(ev.record(now));
            }
        }
        let Some(key_reason) = key_reason else {
            return Ok((grants, requests, keys));
        };
        for k in self.store.list_keys(Some(id)).await? {
            if k.revoked_at.is_none() {
                keys.push(k.id.clone());
                commit.audit.push(
                    Event::KeyRevoked {
                        key: k.id.clone(),
                        actor: actor.to_owned(),
                        identity: id.clone(),
                        reason: Some(key_reason.to_owned()),
                    }
                    .record(now),
                );
                commit.keys.push(revoked(&k, now));
            }
        }
        Ok((grants, requests, keys))
    }

    /// All of a principal's grants in the given states.
    async fn grants_of(&self, id: &PrincipalId, states: &[GrantState]) -> Result<Vec<Grant>> {
        let mut out = Vec::new();
        for state in states {
            let filter = GrantFilter {
                state: Some(*state),
                principal: Some(id.clone()),
                before: None,
                limit: u32::MAX,
            };
            out.extend(self.store.list_grants(&filter).await?);
        }
        Ok(out)
    }

    /// The inventory: every identity the caller may see (all, for an administrator; otherwise
    /// the caller and what they own), with keys, live grants and the owner's standing.
    pub async fn inventory(&self, caller: &Caller) -> Result<Vec<InventoryEntry>> {
        let admin = self
            .require_admin_of_all(caller, crate::ErrorCode::IdentityNotAllowed)
            .is_ok();
        let all = self.store.list_identities().await?;
        let keys = self.store.list_keys(None).await?;
        let mut out = Vec::new();
        for identity in &all {
            let p = &caller.principal;
            let visible = admin || identity.id() == &p.id || owns(p, identity);
            if !visible {
                continue;
            }
            let live = self
                .grants_of(
                    identity.id(),
                    &[
                        GrantState::Provisioning,
                        GrantState::Active,
                        GrantState::Revoking,
                    ],
                )
                .await?;
            let owner_status = identity.principal.owner.as_deref().and_then(|o| {
                all.iter()
                    .find(|i| i.id().as_str() == o)
                    .map(|i| i.principal.status)
                    .filter(|s| *s != PrincipalStatus::Active)
            });
            out.push(InventoryEntry {
                identity: identity.clone(),
                keys: keys
                    .iter()
                    .filter(|k| &k.principal == identity.id())
                    .cloned()
                    .collect(),
                live_grants: live,
                owner_status,
            });
        }
        Ok(out)
    }
}

/// Whether `p` answers for `target`: a person named as its owner, or in its owner group. Only
/// people own: a workload in the same group as another must not manage (or mint keys for) it.
fn owns(p: &Principal, target: &Identity) -> bool {
    p.kind == PrincipalKind::Human
        && p.status == PrincipalStatus::Active
        && target
            .principal
            .owner
            .as_deref()
            .is_some_and(|o| o == p.id.as_str() || p.groups.iter().any(|g| g == o))
}

/// A status set by `[[identities]]`.
fn by_configuration() -> StatusSetBy {
    StatusSetBy {
        actor: "system".into(),
        authority: Authority::Configuration,
    }
}

/// Whether status `a` restricts more than `b` (active < suspended < offboarded).
fn stricter(a: PrincipalStatus, b: PrincipalStatus) -> bool {
    let rank = |s| match s {
        PrincipalStatus::Active => 0,
        PrincipalStatus::Suspended => 1,
        PrincipalStatus::Offboarded => 2,
    };
    rank(a) > rank(b)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::catalog::Principal;

    const STATUSES: [PrincipalStatus; 3] = [
        PrincipalStatus::Active,
        PrincipalStatus::Suspended,
        PrincipalStatus::Offboarded,
    ];
    const AUTHORITIES: [Authority; 4] = [
        Authority::Administrator,
        Authority::Owner,
        Authority::Configuration,
        Authority::Directory,
    ];

    fn agent(status: PrincipalStatus, set_by: Option<Authority>) -> Identity {
        Identity {
            principal: Principal {
                id: PrincipalId::new("support-bot").unwrap(),
                kind: PrincipalKind::Agent,
                owner: Some("bob".into()),
                groups: vec!["agents".into()],
                status,
                manager: None,
                department: None,
            },
            origin: Origin::Api,
            created_at: crate::Timestamp::from_unix_millis(1_000),
            last_seen_at: None,
            status_reason: set_by.map(|_| "earlier".into()),
            status_set_by: set_by.map(|authority| StatusSetBy {
                actor: "someone".into(),
                authority,
            }),
            sign_in_subject: None,
            version: 7,
        }
    }

    proptest! {
        /// Whoever asks, an offboarded identity stays offboarded, asking for the status it has
        /// changes nothing, an owner never lifts a suspension it did not set, and a change sets
        /// exactly the status, the reason and who set it (cleared on resumption).
        #[test]
        fn a_status_change_never_undoes_a_stronger_decision(
            from in 0usize..3,
            set_by in proptest::option::of(0usize..4),
            active in any::<bool>(),
            by_admin in any::<bool>(),
            reason in proptest::option::of("[a-z ]{1,20}"),
        ) {
            let identity = agent(STATUSES[from], set_by.map(|i| AUTHORITIES[i]));
            let authority = if by_admin { Authority::Administrator } else { Authority::Owner };
            let actor = PrincipalId::new("bob").unwrap();
            let to = if active { PrincipalStatus::Active } else { PrincipalStatus::Suspended };
            let decided = decide_status(&identity, active, &actor, authority, reason.as_ref());
            let set_by_stronger = identity
                .status_set_by
                .as_ref()
                .is_some_and(|b| b.authority != Authority::Owner);
            match decided {
                Err(e) if identity.principal.status == PrincipalStatus::Offboarded => {
                    prop_assert_eq!(e.code(), crate::ErrorCode::IdentityOffboarded);
                }
                Err(e) => {
                    prop_assert_eq!(e.code(), crate::ErrorCode::IdentityResumeNotAllowed);
                    prop_assert!(active && !by_admin && set_by_stronger);
                    prop_assert_eq!(identity.principal.status, PrincipalStatus::Suspended);
                }
                Ok(None) => prop_assert_eq!(identity.principal.status, to),
                Ok(Some(changed)) => {
                    prop_assert_ne!(identity.principal.status, PrincipalStatus::Offboarded);
                    prop_assert_ne!(identity.principal.status, to);
                    prop_assert!(!(active && !by_admin && set_by_stronger));
                    prop_assert_eq!(changed.principal.status, to);
                    prop_assert_eq!(changed.status_reason.as_ref(), reason.as_ref());
                    let expected = (!active).then(|| StatusSetBy {
                        actor: "bob".into(),
                        authority,
                    });
                    prop_assert_eq!(changed.status_set_by.as_ref(), expected.as_ref());
                    // Nothing else about it changes.
                    let mut back = changed.clone();
                    back.principal.status = identity.principal.status;
                    back.status_reason.clone_from(&identity.status_reason);
                    back.status_set_by.clone_from(&identity.status_set_by);
                    prop_assert_eq!(back, identity);
                }
            }
        }
    }
}
