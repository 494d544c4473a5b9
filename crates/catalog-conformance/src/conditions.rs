//! Conditional commits and deletes: the condition is decided in the
//! change's own transaction, so racing writers never both pass it.

use std::sync::Arc;

use domicile_catalog::{Catalog, CommitOutcome, Error, Expect};

use crate::REPLACED_DUE;
use crate::{commit, fence, fenced, get_placement, object, setup};

fn refused<T: std::fmt::Debug>(r: domicile_catalog::Result<T>) -> bool {
    matches!(r, Err(Error::PreconditionFailed { .. }))
}

/// commit_object_if and delete_object_if: each expectation, held and not.
pub async fn conditional_commits(cat: &dyn Catalog) {
    setup(cat, "tok-c", "IN", &[("profile", &["r1"])]).await;
    let f = fence("tok-c", "profile", 1);

    // Absent: holds for a new name, then no more.
    let a1 = object("tok-c", "profile", "a", "blob-1", 10);
    let out = cat
        .commit_object_if(&f, &a1, REPLACED_DUE, &Expect::Absent)
        .await
        .unwrap();
    assert!(matches!(out, CommitOutcome::Committed { version: 1, .. }));
    let a2 = object("tok-c", "profile", "a", "blob-2", 20);
    assert!(refused(
        cat.commit_object_if(&f, &a2, REPLACED_DUE, &Expect::Absent)
            .await
    ));
    // A refused commit changed nothing.
    assert_eq!(
        cat.get_object("tok-c", "a").await.unwrap().unwrap().blob_id,
        "blob-1"
    );
    assert_eq!(get_placement(cat, "tok-c", "profile").await.bytes, 10);

    // Blob: holds only for the blob currently indexed.
    assert!(refused(
        cat.commit_object_if(&f, &a2, REPLACED_DUE, &Expect::Blob("blob-0".into()))
            .await
    ));
    let out = cat
        .commit_object_if(&f, &a2, REPLACED_DUE, &Expect::Blob("blob-1".into()))
        .await
        .unwrap();
    assert_eq!(
        out,
        CommitOutcome::Committed {
            version: 2,
            replaced: Some("blob-1".into())
        }
    );
    let b = object("tok-c", "profile", "b", "blob-b", 5);
    assert!(
        refused(
            cat.commit_object_if(&f, &b, REPLACED_DUE, &Expect::Blob("blob-2".into()))
                .await
        ),
        "a name with no object holds no blob"
    );
    assert!(cat.get_object("tok-c", "b").await.unwrap().is_none());

    // The fence is checked first: a fenced commit is Fenced, not refused.
    let out = cat
        .commit_object_if(
            &fence("tok-c", "profile", 2),
            &b,
            REPLACED_DUE,
            &Expect::Blob("nope".into()),
        )
        .await
        .unwrap();
    assert_eq!(out, fenced(Some(1), false));

    // Deletes: refused unless the blob is the indexed one.
    assert!(refused(
        cat.delete_object_if(&f, "a", REPLACED_DUE, &Expect::Blob("blob-1".into()))
            .await
    ));
    assert!(cat.get_object("tok-c", "a").await.unwrap().is_some());
    assert!(refused(
        cat.delete_object_if(&f, "a", REPLACED_DUE, &Expect::Absent)
            .await
    ));
    assert!(refused(
        cat.delete_object_if(&f, "never", REPLACED_DUE, &Expect::Blob("x".into()))
            .await
    ));
    let out = cat
        .delete_object_if(&f, "a", REPLACED_DUE, &Expect::Blob("blob-2".into()))
        .await
        .unwrap();
    assert!(matches!(out, Some(CommitOutcome::Committed { .. })));
    assert!(cat.get_object("tok-c", "a").await.unwrap().is_none());
    // Absent holds again once deleted.
    let a3 = object("tok-c", "profile", "a", "blob-3", 30);
    assert_eq!(commit(cat, 1, &a3).await.0, 1);
}

/// Many writers commit one new name with `Expect::Absent` at once:
/// exactly one commits, every other is refused.
pub async fn concurrent_conditional_commits(cat: Arc<dyn Catalog>) {
    const WRITERS: usize = 12;
    setup(&*cat, "tok-race", "IN", &[("profile", &["r1"])]).await;
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let cat = cat.clone();
        handles.push(tokio::spawn(async move {
            let row = object("tok-race", "profile", "k", &format!("blob-{w}"), 10);
            cat.commit_object_if(
                &fence("tok-race", "profile", 1),
                &row,
                REPLACED_DUE,
                &Expect::Absent,
            )
            .await
        }));
    }
    let (mut won, mut lost) = (Vec::new(), 0);
    for (w, h) in handles.into_iter().enumerate() {
        match h.await.unwrap() {
            Ok(CommitOutcome::Committed { .. }) => won.push(w),
            Err(Error::PreconditionFailed { .. }) => lost += 1,
            other => panic!("writer {w}: {other:?}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one writer commits: {won:?}");
    assert_eq!(lost, WRITERS - 1);
    let row = cat.get_object("tok-race", "k").await.unwrap().unwrap();
    assert_eq!(row.blob_id, format!("blob-{}", won[0]));
    let p = get_placement(&*cat, "tok-race", "profile").await;
    assert_eq!((p.objects, p.bytes), (1, 10), "counted once");
}
