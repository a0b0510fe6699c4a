//! The directory's part of the store contract: entries round-trip and are versioned, names are
//! unique per kind without regard to case, a principal has at most one user entry, and a
//! deletion happens only at the version read.

use hourglass_core::{
    Error,
    directory::{DirectoryEntry, DirectoryKind},
    id::PrincipalId,
    store::Commit,
};
use serde_json::json;

use super::{Fresh, contract, t};

fn entry(kind: DirectoryKind, id: &str, name: &str, principal: Option<&str>) -> DirectoryEntry {
    DirectoryEntry {
        kind,
        id: id.into(),
        name: name.into(),
        external_id: Some(format!("ext-{id}")),
        principal: principal.map(|p| PrincipalId::new(p).unwrap()),
        manager: principal.map(|_| "boss-1".into()),
        resource: json!({"userName": name, "name": {"givenName": "Ålice"}, "active": true}),
        created_at: t(1_000),
        updated_at: t(1_000),
        version: 0,
    }
}

async fn put(s: &Fresh, e: &DirectoryEntry) -> Result<(), Error> {
    s.commit(Commit {
        directory: vec![e.clone()],
        ..Commit::default()
    })
    .await
    .map(drop)
}

async fn directory_entries_round_trip_are_versioned_and_unique_by_name(s: &Fresh) {
    use DirectoryKind::{Group, User};
    let alice = entry(User, "u-1", "Alice@Example.com", Some("alice"));
    put(s, &alice).await.unwrap();
    let got = s.get_directory(User, "u-1").await.unwrap().unwrap();
    assert_eq!(
        got,
        DirectoryEntry {
            version: 1,
            ..alice.clone()
        }
    );
    assert_eq!(
        s.find_directory_name(User, "alice@example.COM")
            .await
            .unwrap()
            .map(|e| e.id),
        Some("u-1".into())
    );
    assert_eq!(
        s.directory_user_of(&PrincipalId::new("alice").unwrap())
            .await
            .unwrap()
            .map(|e| e.id),
        Some("u-1".into())
    );
    assert!(
        s.get_directory(Group, "u-1").await.unwrap().is_none(),
        "kinds apart"
    );

    // The same name in another case, or the same principal: refused, nothing written.
    let twin = entry(User, "u-2", "ALICE@example.com", Some("alice2"));
    assert!(matches!(put(s, &twin).await, Err(Error::StoreConflict)));
    let same_person = entry(User, "u-3", "other@example.com", Some("alice"));
    assert!(matches!(
        put(s, &same_person).await,
        Err(Error::StoreConflict)
    ));
    assert_eq!(s.list_directory(User).await.unwrap().len(), 1);
    // A group may carry a user's name.
    put(s, &entry(Group, "g-1", "alice@example.com", None))
        .await
        .unwrap();

    // Updated only at the version read.
    let mut renamed = got.clone();
    renamed.name = "alice.jensen@example.com".into();
    renamed.updated_at = t(2_000);
    put(s, &renamed).await.unwrap();
    assert!(matches!(put(s, &renamed).await, Err(Error::StoreConflict)));
    let now = s.get_directory(User, "u-1").await.unwrap().unwrap();
    assert_eq!((now.version, now.updated_at), (2, t(2_000)));
    assert!(
        s.find_directory_name(User, "Alice@Example.com")
            .await
            .unwrap()
            .is_none()
    );

    // Deleted only at the version read.
    let stale = s.commit(Commit {
        directory_removed: vec![(User, "u-1".into(), 1)],
        ..Commit::default()
    });
    assert!(matches!(stale.await, Err(Error::StoreConflict)));
    s.commit(Commit {
        directory_removed: vec![(User, "u-1".into(), 2)],
        ..Commit::default()
    })
    .await
    .unwrap();
    assert!(s.get_directory(User, "u-1").await.unwrap().is_none());
    assert_eq!(
        s.list_directory(Group)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>(),
        ["g-1"]
    );
}

contract! {
    directory_entries_round_trip_are_versioned_and_unique_by_name,
}
