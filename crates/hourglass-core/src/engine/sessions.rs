//! Sign-in sessions: started when a person signs in (through the identity provider, or the
//! demo's sign-in page), looked up on every call that carries the session cookie, ended at
//! sign-out. The id is returned once and only its hash is stored; starting and ending are
//! audited (`session.started`, `session.ended`), use is bookkeeping. A form or call that changes
//! state with a session must carry the session's CSRF token, which is derived from the id, so
//! that only the browser holding the cookie can know it.

use secrecy::{ExposeSecret, SecretString};
use tracing::info;

use super::{
    Caller, Engine,
    keys::{same_digest, secret_hash},
};
use crate::{
    Error, Result,
    audit::AuditRecord,
    catalog::{Principal, PrincipalKind, PrincipalStatus},
    id::PrincipalId,
    identity::{Identity, Origin, TokenUse},
    lifecycle::Event,
    session::Session,
    store::Commit,
};

/// The prefix of session ids (so that a leaked one is recognisable).
const SESSION_PREFIX: &str = "hgs_";

/// The CSRF token of the session `id`: a digest of it under its own label, so that it neither
/// reveals the id nor can be made without it.
pub fn csrf_token(id: &str) -> String {
    secret_hash(&format!("csrf:{id}"))
}

/// Whether `presented` is the CSRF token of the session `id` (compared in constant time).
pub fn is_csrf_token(id: &str, presented: &str) -> bool {
    same_digest(&csrf_token(id), presented.trim())
}

/// A person an identity provider vouched for at sign-in (its ID token verified by the caller).
#[derive(Debug, Clone)]
pub struct SignIn {
    /// The Hourglass name the provider's claims map to.
    pub name: String,
    /// The provider's groups claim (used only when the person is created here).
    pub groups: Vec<String>,
    /// The sign-in used a second factor (by the provider's `amr`/`acr`).
    pub mfa: bool,
    /// How (`oidc`), for the session and the audit.
    pub via: String,
    /// The provider and its subject, for the audit.
    pub issuer: String,
    pub subject: String,
    /// The login (its `state`) and until when it is remembered: used once.
    pub login: TokenUse,
    /// Create a person unknown here instead of refusing them.
    pub create_people: bool,
    /// The session id the browser held before, which this sign-in replaces (it ends).
    pub replaces: Option<String>,
    pub source_ip: Option<String>,
}

/// What came of a sign-in.
#[derive(Debug)]
pub enum SignInOutcome {
    /// A new session: its id (shown once, for the cookie) and what is stored.
    Started(SecretString, Session),
    /// Refused (and audited): a code and a reason to show the person.
    Refused { code: &'static str, reason: String },
}

/// The groups of a provider's claim that are valid Hourglass names, at most
/// [`MAX_GROUPS`](super::identities), and how many were dropped.
fn claim_groups(claimed: &[String]) -> (Vec<String>, usize) {
    let mut groups: Vec<String> = Vec::new();
    for g in claimed {
        if let Ok(g) = PrincipalId::new(g.trim())
            && !groups.iter().any(|k| k == g.as_str())
            && groups.len() < super::identities::MAX_GROUPS
        {
            groups.push(g.to_string());
        }
    }
    let dropped = claimed.len().saturating_sub(groups.len());
    (groups, dropped)
}

/// A verified identity token presented as an API bearer (`Authorization: Bearer`).
#[derive(Debug, Clone)]
pub struct BearerToken {
    /// The principal its issuer's mapping names.
    pub principal: String,
    pub issuer_url: String,
    pub jti: String,
    /// It carries `act`: someone acts through it.
    pub carries_act: bool,
    pub mfa: bool,
}

/// Who tried to sign in, as far as is known, for a refused sign-in's record.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignInAttempt<'a> {
    /// The name the person would have had here.
    pub name: Option<&'a str>,
    pub via: Option<&'a str>,
    pub issuer: Option<&'a str>,
    pub subject: Option<&'a str>,
}

impl Engine {
    /// The caller an identity token stands for as an API session: only an active person, never
    /// a token that carries `act`, never one already exchanged. The inner `Err` is a refusal
    /// (a code and a reason, for a `401`); the outer one, a store that did not answer.
    pub async fn bearer_caller(
        &self,
        t: &BearerToken,
        source_ip: Option<String>,
    ) -> Result<std::result::Result<Caller, (crate::ErrorCode, &'static str)>> {
        if t.carries_act {
            return Ok(Err((
                crate::ErrorCode::AuthDelegatedToken,
                "a token that carries act is a delegation, not a session of its subject",
            )));
        }
        let principal = match PrincipalId::new(t.principal.clone()) {
            Ok(id) => self.principal(&id).await?,
            Err(_) => None,
        };
        let Some(principal) = principal.filter(|p| p.status == PrincipalStatus::Active) else {
            return Ok(Err((
                crate::ErrorCode::AuthInvalid,
                "the token is not valid",
            )));
        };
        if principal.kind != PrincipalKind::Human {
            return Ok(Err((
                crate::ErrorCode::AuthNotAPerson,
                "only people sign in with an identity token; workloads and agents exchange theirs at /v1/token",
            )));
        }
        let now = self.clock.now();
        if self.store.is_token_used(&t.issuer_url, &t.jti, now).await? {
            return Ok(Err((
                crate::ErrorCode::AuthTokenUsed,
                "this token was already exchanged; it is not a session",
            )));
        }
        self.store.touch(&principal.id, None, now).await?;
        Ok(Ok(Caller {
            principal,
            mfa: t.mfa,
            source_ip,
            on_behalf_of: None,
        }))
    }

    /// The people who may sign in now (active humans), by name: the demo's sign-in page.
    pub async fn people(&self) -> Result<Vec<PrincipalId>> {
        Ok(self
            .store
            .list_identities()
            .await?
            .into_iter()
            .filter(|i| {
                i.principal.kind == PrincipalKind::Human
                    && i.principal.status == PrincipalStatus::Active
            })
            .map(|i| i.principal.id)
            .collect())
    }

    /// Starts a session for the person `principal`, signed in by `via` (`demo`, `oidc`), with
    /// `mfa` if the sign-in had a second factor. Returns the new session id, shown once.
    pub async fn start_session(
        &self,
        principal: &PrincipalId,
        mfa: bool,
        via: &str,
        source_ip: Option<&str>,
    ) -> Result<(SecretString, Session)> {
        let p = self
            .principal(principal)
            .await?
            .filter(|p| p.status == PrincipalStatus::Active)
            .ok_or_else(|| {
                Error::forbidden(
                    crate::ErrorCode::SessionPrincipalInactive,
                    format!("{principal} is not an active identity here"),
                )
            })?;
        if p.kind != PrincipalKind::Human {
            return Err(Error::forbidden(
                crate::ErrorCode::SessionNotAPerson,
                "only people sign in; workloads and agents use keys or token exchange",
            ));
        }
        let (id, session, ev) = self.new_session(&p.id, mfa, via, source_ip, None)?;
        self.commit(Commit {
            sessions: vec![session.clone()],
            audit: vec![ev],
            ..Commit::default()
        })
        .await?;
        info!(principal = %p.id, session = %session.handle(), via, "signed in");
        Ok((id, session))
    }

    /// Unbinds a person from the identity-provider account they first signed in with (an
    /// administrator's decision, when the account really changed): their next sign-in binds
    /// again. Audited as `identity.sign_in_unbound`.
    pub async fn unbind_sign_in(&self, caller: &Caller, name: &str) -> Result<Identity> {
        self.require_admin_of_all(caller, crate::ErrorCode::IdentityUnbindNotAllowed)?;
        let pid = PrincipalId::new(name.trim())
            .map_err(|m| Error::invalid(crate::ErrorCode::IdentityNameInvalid, "name", m))?;
        let identity = self.store.get_identity(&pid).await?.ok_or_else(|| {
            Error::not_found(
                crate::ErrorCode::IdentityNotFound,
                format!("no identity {pid}"),
            )
        })?;
        let Some(was) = identity.sign_in_subject.clone() else {
            return Err(Error::conflict(
                crate::ErrorCode::IdentityNotBound,
                format!("{pid} is not bound to an identity-provider account"),
            ));
        };
        let now = self.clock.now();
        let unbound = Identity {
            sign_in_subject: None,
            ..identity
        };
        self.commit(Commit {
            identities: vec![unbound.clone()],
            audit: vec![
                Event::IdentitySignInUnbound {
                    identity: pid.clone(),
                    actor: caller.principal.id.to_string(),
                    was,
                }
                .record(now),
            ],
            ..Commit::default()
        })
        .await?;
        Ok(Identity {
            version: unbound.version + 1,
            ..unbound
        })
    }

    /// Whether the login `login` was already finished (its callback is a replay).
    pub async fn is_login_used(&self, login: &TokenUse) -> Result<bool> {
        self.store
            .is_token_used(&login.issuer, &login.jti, self.clock.now())
            .await
    }

    /// Audits a refused sign-in (`session.refused`, within the refusal budget) with `code`, the
    /// `reason` shown to the person, and who tried as far as is known (never a secret).
    pub async fn refuse_sign_in(
        &self,
        code: &str,
        reason: &str,
        who: SignInAttempt<'_>,
        source_ip: Option<&str>,
    ) -> Result<()> {
        let own = |s: Option<&str>| s.map(str::to_owned);
        let ev = Event::SessionRefused {
            name: own(who.name),
            code: code.to_owned(),
            reason: reason.to_owned(),
            via: own(who.via),
            issuer: own(who.issuer),
            subject: own(who.subject),
        }
        .record(self.clock.now());
        self.record_refusal(ev, source_ip).await?;
        Ok(())
    }

    /// A fresh session for `principal` and its `session.started` record (not yet committed);
    /// `provider`: the identity provider's issuer and subject, for a single sign-on.
    fn new_session(
        &self,
        principal: &PrincipalId,
        mfa: bool,
        via: &str,
        source_ip: Option<&str>,
        provider: Option<(&str, &str)>,
    ) -> Result<(SecretString, Session, AuditRecord)> {
        let now = self.clock.now();
        let id = format!("{SESSION_PREFIX}{}", crate::id::random_hex::<32>()?);
        let session = Session {
            id_hash: secret_hash(&id),
            principal: principal.clone(),
            mfa,
            via: via.to_owned(),
            created_at: now,
            last_seen_at: now,
            expires_at: now.plus(self.settings.sessions.absolute),
        };
        let ev = Event::SessionStarted {
            principal: principal.clone(),
            handle: session.handle(),
            via: via.to_owned(),
            mfa,
            expires_at: session.expires_at,
            source_ip: source_ip.map(str::to_owned),
            issuer: provider.map(|(i, _)| i.to_owned()),
            subject: provider.map(|(_, s)| s.to_owned()),
        }
        .record(now);
        Ok((SecretString::from(id), session, ev))
    }

    /// Signs in a person whom an identity provider vouched for (the ID token already verified
    /// by the caller): the login is used once, the person must be a known active human (or is
    /// created, with the provider's groups, when `create_people` says so), and the session
    /// starts in the same commit as both. A refusal is audited (`session.refused`, within the
    /// refusal budget) and changes nothing else.
    pub async fn sign_in(&self, sign_in: SignIn) -> Result<SignInOutcome> {
        let s = &sign_in;
        let now = self.clock.now();
        let refuse = |code: &'static str, reason: String| async move {
            self.refuse_sign_in(
                code,
                &reason,
                SignInAttempt {
                    name: Some(s.name.as_str()),
                    via: Some(s.via.as_str()),
                    issuer: Some(s.issuer.as_str()),
                    subject: Some(s.subject.as_str()),
                },
                s.source_ip.as_deref(),
            )
            .await?;
            Ok::<_, Error>(SignInOutcome::Refused { code, reason })
        };
        if self
            .store
            .is_token_used(&s.login.issuer, &s.login.jti, now)
            .await?
        {
            return refuse(
                "session.login_replayed",
                "this sign-in was already completed; start again".into(),
            )
            .await;
        }
        let Ok(pid) = PrincipalId::new(s.name.trim()) else {
            return refuse(
                "session.name_invalid",
                format!(
                    "the identity provider's name for you ({:?}) is not a valid Hourglass name",
                    s.name
                ),
            )
            .await;
        };
        let mut commit = Commit {
            // (The second field is now: uses already expired then are forgotten, none other.)
            token_uses: vec![(s.login.clone(), now)],
            // The session the browser had before (a step-up, or a sign-in over another) ends.
            ended_sessions: s.replaces.iter().map(|old| secret_hash(old)).collect(),
            ..Commit::default()
        };
        let account = format!("{}#{}", s.issuer, s.subject);
        match self
            .store
            .get_identity(&pid)
            .await?
            .map(|i| (i.principal.clone(), i))
        {
            Some((p, _)) if p.status != PrincipalStatus::Active => {
                return refuse(
                    "session.principal_inactive",
                    format!("{pid} is {} here", p.status.as_str()),
                )
                .await;
            }
            Some((p, _)) if p.kind != PrincipalKind::Human => {
                return refuse(
                    "session.not_a_person",
                    format!("{pid} is a {} here; only people sign in", p.kind.as_str()),
                )
                .await;
            }
            // Bound to another account at the provider: the name was taken over there.
            Some((_, i)) if i.sign_in_subject.as_ref().is_some_and(|b| *b != account) => {
                return refuse(
                    "session.account_mismatch",
                    format!(
                        "{pid} signs in with another account at the identity provider; an administrator can unbind it if the account really changed"
                    ),
                )
                .await;
            }
            Some((_, i)) if i.sign_in_subject.is_some() => {}
            // The first sign-in binds the person to this account.
            Some((_, i)) => {
                commit.audit.push(
                    Event::IdentitySignInBound {
                        identity: pid.clone(),
                        issuer: s.issuer.clone(),
                        subject: s.subject.clone(),
                    }
                    .record(now),
                );
                commit.identities.push(Identity {
                    sign_in_subject: Some(account.clone()),
                    ..i
                });
            }
            None if !s.create_people || crate::identity::is_reserved_name(pid.as_str()) => {
                return refuse(
                    "session.unknown_person",
                    format!(
                        "{pid} is not a person Hourglass knows; an administrator must add you first"
                    ),
                )
                .await;
            }
            None => {
                let (groups, dropped) = claim_groups(&s.groups);
                let identity = Identity {
                    principal: Principal {
                        id: pid.clone(),
                        kind: PrincipalKind::Human,
                        owner: None,
                        groups: groups.clone(),
                        status: PrincipalStatus::Active,
                        manager: None,
                        department: None,
                    },
                    origin: Origin::SignIn,
                    created_at: now,
                    last_seen_at: None,
                    status_reason: None,
                    status_set_by: None,
                    sign_in_subject: Some(account.clone()),
                    version: 0,
                };
                commit.identities.push(identity);
                commit.audit.push(
                    Event::IdentityCreatedAtSignIn {
                        identity: pid.clone(),
                        groups: groups.clone(),
                        groups_dropped: dropped,
                        via: s.via.clone(),
                        issuer: s.issuer.clone(),
                        subject: s.subject.clone(),
                    }
                    .record(now),
                );
            }
        }
        let (id, session, ev) = self.new_session(
            &pid,
            s.mfa,
            &s.via,
            s.source_ip.as_deref(),
            Some((s.issuer.as_str(), s.subject.as_str())),
        )?;
        commit.sessions.push(session.clone());
        commit.audit.push(ev);
        match self.commit(commit).await {
            // The same login completed on another replica between our check and our commit;
            // else the person changed under us (ask again).
            Err(Error::StoreConflict) => {
                if self.is_login_used(&s.login).await? {
                    refuse(
                        "session.login_replayed",
                        "this sign-in was already completed; start again".into(),
                    )
                    .await
                } else {
                    Err(Error::conflict(
                        crate::ErrorCode::SessionIdentityChanged,
                        "your identity changed while you signed in; sign in again",
                    ))
                }
            }
            Err(e) => Err(e),
            Ok(_) => {
                info!(principal = %pid, session = %session.handle(), via = %s.via, "signed in");
                Ok(SignInOutcome::Started(id, session))
            }
        }
    }

    /// The caller a session id stands for, if the session is live and its person still active;
    /// its use is recorded (at most once a minute).
    pub async fn session_caller(
        &self,
        id: &str,
        source_ip: Option<String>,
    ) -> Result<Option<(Caller, Session)>> {
        if !id.starts_with(SESSION_PREFIX) {
            return Ok(None);
        }
        let hash = secret_hash(id);
        let now = self.clock.now();
        let Some(session) = self.store.get_session(&hash).await?.filter(|s| {
            same_digest(&s.id_hash, &hash) && s.is_live(now, self.settings.sessions.idle)
        }) else {
            return Ok(None);
        };
        let Some(principal) = self
            .principal(&session.principal)
            .await?
            .filter(|p| p.status == PrincipalStatus::Active)
        else {
            return Ok(None);
        };
        self.store.touch_session(&hash, now).await?;
        self.store.touch(&principal.id, None, now).await?;
        Ok(Some((
            Caller {
                principal,
                mfa: session.mfa,
                source_ip,
                on_behalf_of: None,
            },
            session,
        )))
    }

    /// Ends the session `id` (sign-out): every replica refuses it from now on. Whether there
    /// was a session to end.
    pub async fn end_session(&self, id: &SecretString) -> Result<bool> {
        let hash = secret_hash(id.expose_secret());
        let Some(session) = self.store.get_session(&hash).await? else {
            return Ok(false);
        };
        let now = self.clock.now();
        self.commit(Commit {
            ended_sessions: vec![hash],
            audit: vec![
                Event::SessionEnded {
                    principal: session.principal.clone(),
                    handle: session.handle(),
                    reason: "signed out".into(),
                }
                .record(now),
            ],
            ..Commit::default()
        })
        .await?;
        info!(principal = %session.principal, session = %session.handle(), "signed out");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_token_belongs_to_one_session_and_reveals_nothing_of_it() {
        let id = "hgs_0123";
        let t = csrf_token(id);
        assert!(is_csrf_token(id, &t));
        assert!(!is_csrf_token("hgs_0124", &t));
        assert!(!is_csrf_token(id, ""));
        assert!(!t.contains("0123"));
    }
}
