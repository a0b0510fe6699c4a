//! The identity directory's part of the store contract: identities and keys round-trip and are
//! versioned, keys are found by prefix or hash only, use is recorded without audit, and an
//! exchanged token id is refused while it lives and forgotten after.

use hourglass_core::{
    Error, Timestamp,
    catalog::{Principal, PrincipalKind, PrincipalStatus},
    id::{KeyId, PrincipalId},
    identity::{ApiKey, Identity, Origin, TokenUse},
    store::Commit,
};

use super::{Fresh, audit_len, contract, t};

pub(super) fn identity(name: &str, at: i64) -> Identity {
    Identity {
        principal: Principal {
            id: PrincipalId::new(name).unwrap(),
            kind: PrincipalKind::Workload,
            owner: Some("alice".into()),
            groups: vec!["workloads".into(), "ci".into()],
            status: PrincipalStatus::Active,
            manager: Some("bob".into()),
            department: Some("SRE".into()),
        },
        origin: Origin::Api,
        created_at: t(at),
        last_seen_at: None,
        status_reason: None,
        status_set_by: None,
        sign_in_subject: None,
        version: 0,
    }
}

pub(super) fn key(name: &str, prefix: Option<&str>, hash: &str, at: i64) -> ApiKey {
    ApiKey {
        id: KeyId::generate(t(at)).unwrap(),
        principal: PrincipalId::new(name).unwrap(),
        prefix: prefix.map(Into::into),
        hash: hash.into(),
        origin: Origin::Api,
        created_at: t(at),
        expires_at: Some(t(at + 1_000_000)),
        revoked_at: None,
        last_used_at: None,
        replaced_by: None,
        version: 0,
    }
}

async fn identities_and_keys_round_trip_and_are_versioned(s: &Fresh) {
    let etl = identity("etl", 1_000);
    let k = key("etl", Some("hgk_0123456789ab"), &"a".repeat(64), 1_000);
    let legacy = key("etl", None, &"b".repeat(64), 1_000);
    s.commit(Commit {
        identities: vec![etl.clone()],
        keys: vec![k.clone(), legacy.clone()],
        ..Commit::default()
    })
    .await
    .unwrap();
    let got = s.get_identity(etl.id()).await.unwrap().unwrap();
    assert_eq!(
        got,
        Identity {
            version: 1,
            ..etl.clone()
        }
    );
    assert_eq!(s.list_identities().await.unwrap().len(), 1);
    assert_eq!(
        s.find_key_by_prefix("hgk_0123456789ab")
            .await
            .unwrap()
            .unwrap()
            .id,
        k.id
    );
    assert_eq!(
        s.find_key_by_hash(&"b".repeat(64))
            .await
            .unwrap()
            .unwrap()
            .id,
        legacy.id
    );
    assert!(
        s.find_key_by_prefix("hgk_ffffffffffff")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.get_key(&k.id).await.unwrap().unwrap(),
        ApiKey {
            version: 1,
            ..k.clone()
        }
    );
    assert_eq!(s.list_keys(Some(etl.id())).await.unwrap().len(), 2);

    // A second identity with the same name, or a key with the same hash, fails whole.
    let dup = s
        .commit(Commit {
            identities: vec![identity("other", 2_000)],
            keys: vec![key(
                "other",
                Some("hgk_aaaaaaaaaaaa"),
                &"a".repeat(64),
                2_000,
            )],
            ..Commit::default()
        })
        .await;
    assert_eq!(dup, Err(Error::StoreConflict));
    assert!(
        s.get_identity(&PrincipalId::new("other").unwrap())
            .await
            .unwrap()
            .is_none()
    );

    // Stale versions conflict; fresh ones update.
    let mut suspended = got.clone();
    suspended.principal.status = PrincipalStatus::Offboarded;
    suspended.status_reason = Some("left".into());
    s.commit(Commit {
        identities: vec![suspended.clone()],
        ..Commit::default()
    })
    .await
    .unwrap();
    let stale = s
        .commit(Commit {
            identities: vec![got.clone()],
            ..Commit::default()
        })
        .await;
    assert_eq!(stale, Err(Error::StoreConflict));
    let now = s.get_identity(etl.id()).await.unwrap().unwrap();
    assert_eq!(now.principal.status, PrincipalStatus::Offboarded);
    assert_eq!(now.status_reason.as_deref(), Some("left"));
}

async fn seen(s: &Fresh, id: &PrincipalId, kid: &KeyId) -> (Option<Timestamp>, Option<Timestamp>) {
    (
        s.get_identity(id).await.unwrap().unwrap().last_seen_at,
        s.get_key(kid).await.unwrap().unwrap().last_used_at,
    )
}

async fn use_is_recorded_at_most_once_a_minute_and_never_audited(s: &Fresh) {
    let etl = identity("etl", 0);
    let k = key("etl", Some("hgk_0123456789ab"), &"a".repeat(64), 0);
    s.commit(Commit {
        identities: vec![etl.clone()],
        keys: vec![k.clone()],
        ..Commit::default()
    })
    .await
    .unwrap();
    let before = audit_len(s).await;
    s.touch(etl.id(), Some(&k.id), t(100_000)).await.unwrap();
    s.touch(etl.id(), Some(&k.id), t(130_000)).await.unwrap();
    assert_eq!(
        seen(s, etl.id(), &k.id).await,
        (Some(t(100_000)), Some(t(100_000))),
        "the second touch, within a minute, wrote nothing"
    );
    s.touch(etl.id(), None, t(200_000)).await.unwrap();
    assert_eq!(
        seen(s, etl.id(), &k.id).await,
        (Some(t(200_000)), Some(t(100_000)))
    );
    assert_eq!(audit_len(s).await, before);
    // A commit carrying an older read of the row does not move last seen back.
    let stale = s.get_identity(etl.id()).await.unwrap().unwrap();
    s.touch(etl.id(), None, t(400_000)).await.unwrap();
    let mut changed = stale.clone();
    changed.principal.groups.push("x".into());
    s.commit(Commit {
        identities: vec![changed],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert_eq!(seen(s, etl.id(), &k.id).await.0, Some(t(400_000)));
}

async fn a_token_id_is_refused_while_it_lives_and_forgotten_after(s: &Fresh) {
    let use_ = |jti: &str, exp: i64| TokenUse {
        issuer: "https://iss".into(),
        jti: jti.into(),
        expires_at: Timestamp::from_unix_millis(exp),
    };
    s.commit(Commit {
        token_uses: vec![(use_("j1", 10_000), t(1_000))],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert!(
        s.is_token_used("https://iss", "j1", t(5_000))
            .await
            .unwrap()
    );
    assert!(
        !s.is_token_used("https://other", "j1", t(5_000))
            .await
            .unwrap()
    );
    assert!(
        !s.is_token_used("https://iss", "j1", t(10_000))
            .await
            .unwrap(),
        "expired ids no longer count"
    );
    // The same id again while it lives: the whole commit fails (a racing replay).
    let again = s
        .commit(Commit {
            identities: vec![identity("etl", 2_000)],
            token_uses: vec![(use_("j1", 20_000), t(2_000))],
            ..Commit::default()
        })
        .await;
    assert_eq!(again, Err(Error::StoreConflict));
    assert!(
        s.get_identity(&PrincipalId::new("etl").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    // After it expired it is forgotten, and may be recorded again.
    s.commit(Commit {
        token_uses: vec![(use_("j1", 30_000), t(10_001))],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert!(
        s.is_token_used("https://iss", "j1", t(20_000))
            .await
            .unwrap()
    );
}

async fn sessions_round_trip_are_touched_and_end_with_their_commit(s: &Fresh) {
    let who = identity("alice-web", 1);
    let session = |hash: &str, at: i64, until: i64| hourglass_core::session::Session {
        id_hash: hash.into(),
        principal: who.principal.id.clone(),
        mfa: true,
        via: "demo".into(),
        created_at: t(at),
        last_seen_at: t(at),
        expires_at: t(until),
    };
    let old = session("old", 1_000, 5_000);
    s.commit(Commit {
        identities: vec![who.clone()],
        sessions: vec![old.clone()],
        audit: vec![super::ev("signed in")],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert_eq!(s.get_session("old").await.unwrap(), Some(old));
    // Use is recorded at most once a minute.
    s.touch_session("old", t(30_000)).await.unwrap();
    assert_eq!(
        s.get_session("old").await.unwrap().unwrap().last_seen_at,
        t(1_000)
    );
    s.touch_session("old", t(70_000)).await.unwrap();
    assert_eq!(
        s.get_session("old").await.unwrap().unwrap().last_seen_at,
        t(70_000)
    );
    // A new session forgets those past their absolute end; an ended one is gone.
    let new = session("new", 100_000, 200_000);
    s.commit(Commit {
        sessions: vec![new.clone()],
        audit: vec![super::ev("signed in again")],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert_eq!(s.get_session("old").await.unwrap(), None);
    s.commit(Commit {
        ended_sessions: vec!["new".into(), "never-was".into()],
        audit: vec![super::ev("signed out")],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert_eq!(s.get_session("new").await.unwrap(), None);
    assert_eq!(audit_len(s).await, 3);
}

contract! {
    identities_and_keys_round_trip_and_are_versioned,
    use_is_recorded_at_most_once_a_minute_and_never_audited,
    a_token_id_is_refused_while_it_lives_and_forgotten_after,
    sessions_round_trip_are_touched_and_end_with_their_commit,
}
