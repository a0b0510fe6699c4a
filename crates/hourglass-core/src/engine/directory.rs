//! The directory: people and groups as the organisation's identity provider provisions them
//! (SCIM, read and checked by the server). Each change commits with the principals it makes or
//! changes and its audit record:
//!
//! - a user is a human principal (created, or an existing one adopted), managed by the
//!   directory from then on (the configuration file no longer changes it);
//! - a group's members carry its name among their principal's groups, so policy sees it;
//! - a user deactivated or deleted leaves: suspended or offboarded (configurable), and in the
//!   same commit every live grant revoked, every open request cancelled and every key revoked.
//!   Activating them again brings nothing back;
//! - a member who loses a group has their pending requests checked again, and cancelled if
//!   policy no longer permits them. Grants run to their end unless
//!   `revoke_on_eligibility_loss` is set.
//!
//! Nothing here creates, extends or re-creates a grant: the directory says who people are, never
//! what they hold.

use serde_json::Value;
use tracing::{info, warn};

use super::{Engine, retry_on_conflict};
use crate::{
    Error, ErrorCode, Result, Timestamp,
    audit::AuditRecord,
    catalog::{Principal, PrincipalKind, PrincipalStatus},
    directory::{DirectoryEntry, DirectoryKind, Leave},
    event::EventKind,
    grant::GrantState,
    id::PrincipalId,
    identity::{Authority, Identity, Origin, StatusSetBy},
    request::{RequestCommand, RequestState},
    store::{Commit, GrantFilter, RequestFilter},
};

/// A user or group as the SCIM layer read and checked it.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryWrite {
    /// `userName` or `displayName`.
    pub name: String,
    pub external_id: Option<String>,
    /// The resource to keep, without `id` and `meta`.
    pub resource: Value,
    /// Users: whether the person is active.
    pub active: bool,
    /// Groups: the members' directory ids.
    pub members: Vec<String>,
    /// Users: the manager's directory id.
    pub manager: Option<String>,
    /// Users: the department.
    pub department: Option<String>,
}

/// The members' ids a group resource lists.
pub fn members_of(resource: &Value) -> Vec<String> {
    resource
        .get("members")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|v| v.get("value").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn not_found(kind: DirectoryKind, id: &str) -> Error {
    Error::not_found(
        ErrorCode::DirectoryNotFound,
        format!("no {} {id} in the directory", kind.as_str()),
    )
}

fn check_version(e: &DirectoryEntry, if_version: Option<i64>) -> Result<()> {
    match if_version {
        Some(v) if v != e.version => Err(Error::conflict(
            ErrorCode::DirectoryVersionMismatch,
            format!("{} is at version {}, not {v}", e.id, e.version),
        )),
        _ => Ok(()),
    }
}

impl Engine {
    /// One entry.
    pub async fn directory_entry(&self, kind: DirectoryKind, id: &str) -> Result<DirectoryEntry> {
        self.store
            .get_directory(kind, id)
            .await?
            .ok_or_else(|| not_found(kind, id))
    }

    /// The entry of a kind with this name (without regard to case), if any: an index lookup.
    pub async fn directory_named(
        &self,
        kind: DirectoryKind,
        name: &str,
    ) -> Result<Option<DirectoryEntry>> {
        self.store.find_directory_name(kind, name).await
    }

    /// Every entry of a kind, oldest first.
    pub async fn directory_entries(&self, kind: DirectoryKind) -> Result<Vec<DirectoryEntry>> {
        self.store.list_directory(kind).await
    }

    async fn name_free(&self, kind: DirectoryKind, name: &str, for_id: Option<&str>) -> Result<()> {
        match self.store.find_directory_name(kind, name).await? {
            Some(e) if Some(e.id.as_str()) != for_id => Err(Error::conflict(
                ErrorCode::DirectoryNameTaken,
                format!("{name} is taken (names are unique without regard to case)"),
            )),
            _ => Ok(()),
        }
    }

    /// The principal name of the directory user `manager` (none if there is no such user: a
    /// directory names a manager by the id Hourglass gave them, so they exist first).
    async fn manager_name(&self, manager: Option<&str>) -> Result<Option<String>> {
        let Some(id) = manager else { return Ok(None) };
        Ok(self
            .store
            .get_directory(DirectoryKind::User, id)
            .await?
            .and_then(|m| m.principal)
            .map(|p| p.to_string()))
    }

    /// Sets the manager of `manager_id`'s reports to `name`, into `commit`.
    async fn reports_into(
        &self,
        manager_id: &str,
        name: Option<&str>,
        commit: &mut Commit,
    ) -> Result<()> {
        for r in self.store.directory_reports(manager_id).await? {
            let Some(p) = &r.principal else { continue };
            if commit.identities.iter().any(|i| i.id() == p) {
                continue;
            }
            if let Some(mut i) = self.store.get_identity(p).await?
                && i.principal.manager.as_deref() != name
            {
                i.principal.manager = name.map(str::to_owned);
                commit.identities.push(i);
            }
        }
        Ok(())
    }

    /// The entry a replacement changes: there, at the version given (if one is), and its new
    /// name free.
    async fn to_replace(
        &self,
        kind: DirectoryKind,
        id: &str,
        if_version: Option<i64>,
        name: &str,
    ) -> Result<DirectoryEntry> {
        let old = self.directory_entry(kind, id).await?;
        check_version(&old, if_version)?;
        self.name_free(kind, name, Some(id)).await?;
        Ok(old)
    }

    /// Creates a user, and the human principal it is (or adopts the existing one).
    pub async fn directory_create_user(
        &self,
        actor: &str,
        principal: PrincipalId,
        w: DirectoryWrite,
    ) -> Result<DirectoryEntry> {
        let (entry, stripped) = retry_on_conflict(|| async {
            self.name_free(DirectoryKind::User, &w.name, None).await?;
            if self.store.directory_user_of(&principal).await?.is_some() {
                return Err(Error::conflict(
                    ErrorCode::DirectoryPrincipalTaken,
                    format!("{principal} is already another user of the directory"),
                ));
            }
            let now = self.clock.now();
            let id = crate::id::directory_id(now)?;
            // A fresh id is in no group yet.
            let groups = Vec::new();
            let existing = self.store.get_identity(&principal).await?;
            let mut commit = Commit::default();
            let adopted = existing.is_some();
            let mut identity = match existing {
                Some(i) if i.principal.kind != PrincipalKind::Human => {
                    return Err(Error::conflict(
                        ErrorCode::DirectoryPrincipalTaken,
                        format!("{principal} is a {}, not a person", i.principal.kind.as_str()),
                    ));
                }
                Some(i) if i.principal.status == PrincipalStatus::Offboarded => {
                    return Err(Error::conflict(
                        ErrorCode::DirectoryPrincipalTaken,
                        format!("{principal} was offboarded and never comes back; give the person another userName"),
                    ));
                }
                Some(mut i) => {
                    i.origin = Origin::Directory;
                    i
                }
                None => Identity {
                    principal: Principal {
                        id: principal.clone(),
                        kind: PrincipalKind::Human,
                        owner: None,
                        groups: Vec::new(),
                        status: PrincipalStatus::Active,
                        manager: None,
                        department: None,
                    },
                    origin: Origin::Directory,
                    created_at: now,
                    last_seen_at: None,
                    status_reason: None,
                    status_set_by: None,
                    sign_in_subject: None,
                    version: 0,
                },
            };
            identity.principal.groups = groups;
            identity.principal.manager = self.manager_name(w.manager.as_deref()).await?;
            identity.principal.department.clone_from(&w.department);
            let mut stripped = (0, 0, 0);
            if !w.active && identity.principal.status == PrincipalStatus::Active {
                stripped = self
                    .leave_into(&mut identity, actor, self.settings.directory.on_deactivate, "deactivated", now, &mut commit)
                    .await?;
            }
            let entry = DirectoryEntry {
                kind: DirectoryKind::User,
                id,
                name: w.name.clone(),
                external_id: w.external_id.clone(),
                principal: Some(principal.clone()),
                manager: w.manager.clone(),
                resource: w.resource.clone(),
                created_at: now,
                updated_at: now,
                version: 0,
            };
            commit.audit.push(
                AuditRecord::new(now, actor, EventKind::DirectoryUserCreated, &entry.id)
                    .with("name", &entry.name)
                    .with("principal", &principal)
                    .with("active", w.active)
                    .with("adopted", adopted),
            );
            commit.identities.push(identity);
            commit.directory.push(entry.clone());
            self.commit(commit).await?;
            Ok((DirectoryEntry { version: 1, ..entry }, stripped))
        })
        .await?;
        if stripped.0 > 0 {
            self.wake.jobs_changed();
        }
        info!(user = %entry.id, principal = ?entry.principal, "directory user created");
        Ok(entry)
    }

    /// Ends what `identity` holds and sets its status for `leave`, into `commit`; answers
    /// (grants revoked, requests cancelled, keys revoked).
    async fn leave_into(
        &self,
        identity: &mut Identity,
        actor: &str,
        leave: Leave,
        how: &str,
        now: Timestamp,
        commit: &mut Commit,
    ) -> Result<(usize, usize, usize)> {
        let id = identity.id().clone();
        let why = format!("{id} {how} in the directory by {actor}");
        let (grants, requests, keys) = self
            .strip_into(
                &id,
                actor,
                &why,
                Some(&format!("{how} in the directory")),
                now,
                commit,
            )
            .await?;
        identity.principal.status = match leave {
            Leave::Suspend => PrincipalStatus::Suspended,
            Leave::Offboard => PrincipalStatus::Offboarded,
        };
        identity.status_reason = Some(format!("{how} in the directory"));
        identity.status_set_by = Some(StatusSetBy {
            actor: actor.to_owned(),
            authority: Authority::Directory,
        });
        Ok((grants.len(), requests.len(), keys.len()))
    }

    /// Replaces a user (PUT, and PATCH once applied): its attributes, its name, whether it is
    /// active. Deactivation is a leave (see the module); activation lifts only a suspension the
    /// directory set.
    pub async fn directory_update_user(
        &self,
        actor: &str,
        id: &str,
        if_version: Option<i64>,
        w: DirectoryWrite,
    ) -> Result<DirectoryEntry> {
        let (entry, stripped) = retry_on_conflict(|| async {
            let old = self
                .to_replace(DirectoryKind::User, id, if_version, &w.name)
                .await?;
            let principal = old
                .principal
                .clone()
                .ok_or_else(|| Error::internal(format!("directory user {id} has no principal")))?;
            let now = self.clock.now();
            let mut commit = Commit::default();
            let mut stripped = (0, 0, 0);
            if let Some(mut identity) = self.store.get_identity(&principal).await? {
                let before = identity.clone();
                identity.principal.manager = self.manager_name(w.manager.as_deref()).await?;
                identity.principal.department.clone_from(&w.department);
                let status = identity.principal.status;
                if !w.active && status == PrincipalStatus::Active {
                    let leave = self.settings.directory.on_deactivate;
                    stripped = self
                        .leave_into(&mut identity, actor, leave, "deactivated", now, &mut commit)
                        .await?;
                    commit.audit.push(
                        AuditRecord::new(now, actor, EventKind::DirectoryUserDeactivated, id)
                            .with("principal", &principal)
                            .with("leave", leave.as_str())
                            .with("grants_revoked", stripped.0)
                            .with("requests_cancelled", stripped.1)
                            .with("keys_revoked", stripped.2),
                    );
                } else if w.active
                    && status == PrincipalStatus::Suspended
                    && identity
                        .status_set_by
                        .as_ref()
                        .is_some_and(|b| b.authority == Authority::Directory)
                {
                    identity.principal.status = PrincipalStatus::Active;
                    identity.status_reason = None;
                    identity.status_set_by = None;
                    commit.audit.push(
                        AuditRecord::new(now, actor, EventKind::DirectoryUserReactivated, id)
                            .with("principal", &principal)
                            .with("status", "active"),
                    );
                }
                // An offboarded person stays offboarded whatever `active` says: nothing to
                // record but the update below.
                if identity != before {
                    commit.identities.push(identity);
                }
            }
            let mut ev = AuditRecord::new(now, actor, EventKind::DirectoryUserUpdated, id)
                .with("name", &w.name)
                .with("principal", &principal);
            if old.name != w.name {
                ev = ev.with("renamed_from", &old.name);
            }
            commit.audit.push(ev);
            let entry = DirectoryEntry {
                name: w.name.clone(),
                external_id: w.external_id.clone(),
                manager: w.manager.clone(),
                resource: w.resource.clone(),
                updated_at: now,
                ..old
            };
            commit.directory.push(entry.clone());
            self.commit(commit).await?;
            Ok((
                DirectoryEntry {
                    version: entry.version + 1,
                    ..entry
                },
                stripped,
            ))
        })
        .await?;
        if stripped.0 > 0 {
            self.wake.jobs_changed();
        }
        Ok(entry)
    }

    /// Deletes a user: the person leaves (`on_delete`), and every group drops them.
    pub async fn directory_delete_user(
        &self,
        actor: &str,
        id: &str,
        if_version: Option<i64>,
    ) -> Result<()> {
        let revoked = retry_on_conflict(|| async {
            let old = self.directory_entry(DirectoryKind::User, id).await?;
            check_version(&old, if_version)?;
            let now = self.clock.now();
            let mut commit = Commit::default();
            let leave = self.settings.directory.on_delete;
            let mut ev = AuditRecord::new(now, actor, EventKind::DirectoryUserDeleted, id)
                .with("name", &old.name)
                .with("leave", leave.as_str());
            let mut revoked = 0;
            if let Some(p) = &old.principal {
                ev = ev.with("principal", p);
                if let Some(mut identity) = self.store.get_identity(p).await? {
                    let status = identity.principal.status;
                    let already_left = status == PrincipalStatus::Offboarded
                        || (leave == Leave::Suspend && status == PrincipalStatus::Suspended);
                    if !already_left {
                        let (g, r, k) = self
                            .leave_into(&mut identity, actor, leave, "deleted", now, &mut commit)
                            .await?;
                        revoked = g;
                        ev = ev
                            .with("grants_revoked", g)
                            .with("requests_cancelled", r)
                            .with("keys_revoked", k);
                    }
                    identity.principal.groups.clear();
                    commit.identities.push(identity);
                }
            }
            for mut g in self.store.list_directory(DirectoryKind::Group).await? {
                if let Some(Value::Array(members)) = g.resource.get_mut("members") {
                    let before = members.len();
                    members.retain(|m| m.get("value").and_then(Value::as_str) != Some(id));
                    if members.len() != before {
                        g.updated_at = now;
                        commit.directory.push(g);
                    }
                }
            }
            // Their reports have no manager in Hourglass until the directory names another.
            self.reports_into(id, None, &mut commit).await?;
            commit.audit.push(ev);
            commit
                .directory_removed
                .push((DirectoryKind::User, id.to_owned(), old.version));
            self.commit(commit).await?;
            Ok(revoked)
        })
        .await?;
        if revoked > 0 {
            self.wake.jobs_changed();
        }
        Ok(())
    }

    /// Checks that every member is a user of the directory; answers each with its principal.
    async fn check_members(&self, members: &[String]) -> Result<Vec<(String, PrincipalId)>> {
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            let Some(u) = self.store.get_directory(DirectoryKind::User, m).await? else {
                return Err(Error::invalid(
                    ErrorCode::DirectoryMemberUnknown,
                    "members",
                    format!("member {m} is no user of the directory"),
                ));
            };
            if let Some(p) = u.principal {
                out.push((m.clone(), p));
            }
        }
        Ok(out)
    }

    /// The principals of the directory users `ids` that still exist (a member deleted
    /// meanwhile is skipped); a store error is an error.
    async fn principals_of(&self, ids: &[String]) -> Result<Vec<(String, PrincipalId)>> {
        let mut out = Vec::with_capacity(ids.len());
        for m in ids {
            if let Some(p) = self
                .store
                .get_directory(DirectoryKind::User, m)
                .await?
                .and_then(|u| u.principal)
            {
                out.push((m.clone(), p));
            }
        }
        Ok(out)
    }

    /// Refuses to remove or rename a group that owns workloads or agents: they would be left
    /// with no owner. Their owner must change first.
    async fn check_not_an_owner(&self, group: &str, what: &str) -> Result<()> {
        let owned: Vec<String> = self
            .store
            .list_identities()
            .await?
            .into_iter()
            .filter(|i| {
                i.principal.kind != PrincipalKind::Human
                    && i.principal.status != PrincipalStatus::Offboarded
                    && i.principal.owner.as_deref() == Some(group)
            })
            .map(|i| i.principal.id.to_string())
            .collect();
        if owned.is_empty() {
            return Ok(());
        }
        Err(Error::conflict(
            ErrorCode::DirectoryOwnerGroup,
            format!(
                "group {group} owns {}: {what} it would leave them with no owner; give them another owner first",
                owned.join(", ")
            ),
        ))
    }

    /// Takes group `remove` from, and gives group `add` to, each principal in `users`, into
    /// `commit`.
    async fn regroup_into(
        &self,
        users: &[(String, PrincipalId)],
        remove: Option<&str>,
        add: Option<&str>,
        commit: &mut Commit,
    ) -> Result<()> {
        for (_, principal) in users {
            let taken = commit.identities.iter().position(|i| i.id() == principal);
            let mut identity = match taken {
                Some(at) => commit.identities.remove(at),
                None => match self.store.get_identity(principal).await? {
                    Some(i) => i,
                    None => continue,
                },
            };
            let before = identity.principal.groups.clone();
            let groups = &mut identity.principal.groups;
            if let Some(r) = remove {
                groups.retain(|g| g != r);
            }
            if let Some(a) = add
                && !groups.iter().any(|g| g == a)
            {
                groups.push(a.to_owned());
            }
            groups.sort();
            if taken.is_some() || *groups != before {
                commit.identities.push(identity);
            }
        }
        Ok(())
    }

    /// Creates a group; its members gain it.
    pub async fn directory_create_group(
        &self,
        actor: &str,
        w: DirectoryWrite,
    ) -> Result<DirectoryEntry> {
        retry_on_conflict(|| async {
            self.name_free(DirectoryKind::Group, &w.name, None).await?;
            let members = self.check_members(&w.members).await?;
            let now = self.clock.now();
            let entry = DirectoryEntry {
                kind: DirectoryKind::Group,
                id: crate::id::directory_id(now)?,
                name: w.name.clone(),
                external_id: w.external_id.clone(),
                principal: None,
                manager: None,
                resource: w.resource.clone(),
                created_at: now,
                updated_at: now,
                version: 0,
            };
            let mut commit = Commit::default();
            self.regroup_into(&members, None, Some(&entry.name), &mut commit)
                .await?;
            commit.audit.push(
                AuditRecord::new(now, actor, EventKind::DirectoryGroupCreated, &entry.id)
                    .with("name", &entry.name)
                    .with("members", members.len()),
            );
            commit.directory.push(entry.clone());
            self.commit(commit).await?;
            Ok(DirectoryEntry {
                version: 1,
                ..entry
            })
        })
        .await
    }

    /// Replaces a group (PUT, and PATCH once applied): members added gain it, members removed
    /// lose it (and their pending requests are checked again).
    pub async fn directory_update_group(
        &self,
        actor: &str,
        id: &str,
        if_version: Option<i64>,
        w: DirectoryWrite,
    ) -> Result<DirectoryEntry> {
        let (entry, lost) = retry_on_conflict(|| async {
            let old = self
                .to_replace(DirectoryKind::Group, id, if_version, &w.name)
                .await?;
            if old.name != w.name {
                self.check_not_an_owner(&old.name, "renaming").await?;
            }
            // Only who came and went is read (and who came is checked): a PATCH adding one
            // member costs one lookup, however large the group.
            let old_ids = members_of(&old.resource);
            let came: Vec<String> = w
                .members
                .iter()
                .filter(|m| !old_ids.contains(m))
                .cloned()
                .collect();
            let went: Vec<String> = old_ids
                .iter()
                .filter(|m| !w.members.contains(m))
                .cloned()
                .collect();
            let added = self.check_members(&came).await?;
            let removed = self.principals_of(&went).await?;
            let now = self.clock.now();
            let entry = DirectoryEntry {
                name: w.name.clone(),
                external_id: w.external_id.clone(),
                resource: w.resource.clone(),
                updated_at: now,
                ..old.clone()
            };
            let mut commit = Commit::default();
            self.regroup_into(&removed, Some(&old.name), None, &mut commit)
                .await?;
            self.regroup_into(&added, Some(&old.name), Some(&w.name), &mut commit)
                .await?;
            let mut lost: Vec<PrincipalId> = removed.iter().map(|(_, p)| p.clone()).collect();
            if old.name != w.name {
                // A rename reaches everyone who stays, and each loses the old name.
                let stayed: Vec<String> = w
                    .members
                    .iter()
                    .filter(|m| old_ids.contains(m))
                    .cloned()
                    .collect();
                let stayed = self.principals_of(&stayed).await?;
                self.regroup_into(&stayed, Some(&old.name), Some(&w.name), &mut commit)
                    .await?;
                lost.extend(stayed.into_iter().map(|(_, p)| p));
            }
            let mut ev = AuditRecord::new(now, actor, EventKind::DirectoryGroupUpdated, id)
                .with("name", &w.name)
                .with("added", added.len())
                .with("removed", removed.len());
            if old.name != w.name {
                ev = ev.with("renamed_from", &old.name);
            }
            commit.audit.push(ev);
            commit.directory.push(entry.clone());
            self.commit(commit).await?;
            Ok((
                DirectoryEntry {
                    version: entry.version + 1,
                    ..entry
                },
                lost,
            ))
        })
        .await?;
        self.eligibility_lost(actor, &lost, &entry.name).await;
        Ok(entry)
    }

    /// Deletes a group; its members lose it.
    pub async fn directory_delete_group(
        &self,
        actor: &str,
        id: &str,
        if_version: Option<i64>,
    ) -> Result<()> {
        let (lost, name) = retry_on_conflict(|| async {
            let old = self.directory_entry(DirectoryKind::Group, id).await?;
            check_version(&old, if_version)?;
            self.check_not_an_owner(&old.name, "deleting").await?;
            let members = self.principals_of(&members_of(&old.resource)).await?;
            let now = self.clock.now();
            let mut commit = Commit::default();
            self.regroup_into(&members, Some(&old.name), None, &mut commit)
                .await?;
            commit.audit.push(
                AuditRecord::new(now, actor, EventKind::DirectoryGroupDeleted, id)
                    .with("name", &old.name)
                    .with("members", members.len()),
            );
            commit
                .directory_removed
                .push((DirectoryKind::Group, id.to_owned(), old.version));
            self.commit(commit).await?;
            Ok((
                members.into_iter().map(|(_, p)| p).collect::<Vec<_>>(),
                old.name,
            ))
        })
        .await?;
        self.eligibility_lost(actor, &lost, &name).await;
        Ok(())
    }

    /// People who lost group `group`: their pending requests that policy no longer permits are
    /// cancelled; with `revoke_on_eligibility_loss`, so are live grants it no longer permits.
    async fn eligibility_lost(&self, actor: &str, people: &[PrincipalId], group: &str) {
        for p in people {
            // The directory's change stands; a check that fails here is logged, and the next
            // reload or re-check of these requests catches it.
            if let Err(e) = self.person_lost_group(actor, p, group).await {
                warn!(principal = %p, %group, error = %e, "requests not checked again after a group loss");
            }
        }
    }

    async fn person_lost_group(&self, actor: &str, p: &PrincipalId, group: &str) -> Result<()> {
        {
            let pending = self
                .store
                .list_requests(&RequestFilter {
                    state: Some(RequestState::Pending),
                    requester: Some(p.clone()),
                    before: None,
                    limit: u32::MAX,
                })
                .await?;
            for stale in pending {
                retry_on_conflict(|| async {
                    let Some(req) = self.store.get_request(&stale.id).await? else {
                        return Ok(());
                    };
                    let now = self.clock.now();
                    if req.state != RequestState::Pending || self.still_permitted(&req, now).await? {
                        return Ok(());
                    }
                    let (cancelled, ev) = req.apply(
                        RequestCommand::Cancel {
                            actor: actor.to_owned(),
                            note: Some(format!("{p} left group {group} in the directory; policy no longer permits this request")),
                        },
                        now,
                    )?;
                    self.commit(Commit {
                        requests: vec![cancelled],
                        audit: vec![ev.record(now)],
                        ..Commit::default()
                    })
                    .await
                    .map(drop)
                })
                .await?;
            }
            if self.settings.directory.revoke_on_eligibility_loss {
                self.revoke_unpermitted(actor, p, group).await?;
            }
        }
        Ok(())
    }

    /// Revokes `p`'s live grants that policy would no longer let them ask for.
    async fn revoke_unpermitted(&self, actor: &str, p: &PrincipalId, group: &str) -> Result<()> {
        let grants = self
            .store
            .list_grants(&GrantFilter {
                state: Some(GrantState::Active),
                principal: Some(p.clone()),
                before: None,
                limit: u32::MAX,
            })
            .await?;
        let mut any = false;
        for g in grants {
            let Some(req) = self.store.get_request(&g.request_id).await? else {
                continue;
            };
            let now = self.clock.now();
            if self.still_permitted(&req, now).await? {
                continue;
            }
            let why = format!(
                "{p} left group {group} in the directory; policy no longer permits this grant"
            );
            let done = retry_on_conflict(|| async {
                let Some(current) = self.store.get_grant(&g.id).await? else {
                    return Ok(false);
                };
                if current.state != GrantState::Active {
                    return Ok(false);
                }
                let mut commit = Commit::default();
                Self::revoke_into(&current, actor, why.clone(), now, &mut commit)?;
                self.commit(commit).await?;
                Ok(true)
            })
            .await?;
            any |= done;
        }
        if any {
            self.wake.jobs_changed();
            warn!(principal = %p, %group, "grants revoked on loss of eligibility");
        }
        Ok(())
    }
}
