//! Placements: creating them, the planner's scan and the residency report.

use domicile_catalog::{
    Catalog, Error, Fence, PlacementRow, PlacementState, PlacementSummary, ResidencyRow, Rewrap,
    TokenRange,
};

use crate::{
    assert_chain, commit, entry, fence, get_placement, ledger_len, object, placement, read_ledger,
    setup, strings, subject,
};

/// ensure_placement creates once (epoch 1, active, zero counts) and is idempotent.
pub async fn ensure_placement(cat: &dyn Catalog) {
    setup(cat, "tok-p", "IN", &[]).await;
    let n0 = ledger_len(cat).await;

    let mut asked = placement("tok-p", "profile", &["r2", "r1"]);
    asked.epoch = 7;
    asked.objects = 5;
    asked.bytes = 500;
    asked.state = PlacementState::Moving {
        to: strings(&["r9"]),
        lease_until: 1,
    };
    let created = cat
        .ensure_placement(&asked, 0, entry("placement", Some("tok-p"), 3_000))
        .await
        .unwrap();
    let expected = PlacementRow {
        epoch: 1,
        state: PlacementState::Active,
        objects: 0,
        bytes: 0,
        ..placement("tok-p", "profile", &["r2", "r1"])
    };
    assert_eq!(
        created, expected,
        "regions keep their order; epoch 1, active, zero counts"
    );
    assert_eq!(get_placement(cat, "tok-p", "profile").await, expected);
    let entries = read_ledger(cat).await;
    assert_eq!(entries.len(), n0 + 1);
    assert_eq!(entries[n0].kind, "placement");
    assert_eq!(entries[n0].subject.as_deref(), Some("tok-p"));

    let mut other = placement("tok-p", "profile", &["r3"]);
    other.custodian = "kms-b".into();
    other.wrapped_key = b"other".to_vec();
    let again = cat
        .ensure_placement(&other, 0, entry("placement", Some("tok-p"), 3_100))
        .await
        .unwrap();
    assert_eq!(
        again, expected,
        "an existing placement must come back unchanged"
    );
    assert_eq!(get_placement(cat, "tok-p", "profile").await, expected);
    assert_eq!(
        ledger_len(cat).await,
        n0 + 1,
        "an existing placement was recorded again"
    );

    cat.ensure_placement(
        &placement("tok-p", "media", &["r1"]),
        0,
        entry("placement", Some("tok-p"), 3_200),
    )
    .await
    .unwrap();
    let all = cat.placements_of("tok-p").await.unwrap();
    let keys: Vec<(&str, Vec<String>)> = all
        .iter()
        .map(|p| (p.category.as_str(), p.regions.clone()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("media", strings(&["r1"])),
            ("profile", strings(&["r2", "r1"]))
        ]
    );

    let err = cat
        .ensure_placement(
            &placement("tok-unknown", "profile", &["r1"]),
            0,
            entry("placement", Some("tok-unknown"), 3_300),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound { .. }),
        "unknown subject: {err}"
    );

    let err = cat
        .ensure_placement(
            &placement("tok-p", "payment", &["r1", "r1"]),
            0,
            entry("placement", Some("tok-p"), 3_400),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { .. }),
        "duplicate region: {err}"
    );
    assert_eq!(cat.get_placement("tok-p", "payment").await.unwrap(), None);
    assert_eq!(
        ledger_len(cat).await,
        n0 + 2,
        "a refused placement was recorded"
    );

    // Several at once: in the order asked, regions in their order, `None`
    // where there is none, a pair asked twice answered twice.
    let key = |t: &str, c: &str| (t.to_string(), c.to_string());
    let asked = [
        key("tok-p", "profile"),
        key("tok-p", "payment"),
        key("nobody", "profile"),
        key("tok-p", "media"),
        key("tok-p", "profile"),
    ];
    let mut one_by_one = Vec::new();
    for (t, c) in &asked {
        one_by_one.push(cat.get_placement(t, c).await.unwrap());
    }
    let many = cat.get_placements(&asked).await.unwrap();
    assert_eq!(many, one_by_one);
    assert_eq!(
        many[0].as_ref().map(|p| p.regions.clone()),
        Some(strings(&["r2", "r1"]))
    );
    assert!(many[1].is_none() && many[2].is_none());
    assert!(cat.get_placements(&[]).await.unwrap().is_empty());
    // More pairs than one statement takes (501 different ones).
    let lots: Vec<(String, String)> = (0..1_000)
        .map(|i| {
            if i % 2 == 0 {
                key("tok-p", "media")
            } else {
                key("tok-p", &format!("none-{i}"))
            }
        })
        .collect();
    let got = cat.get_placements(&lots).await.unwrap();
    assert_eq!(got.len(), 1_000);
    assert!(
        got.iter()
            .step_by(2)
            .all(|p| p.as_ref().map(|p| p.regions.clone()) == Some(strings(&["r1"])))
    );
    assert!(got.iter().skip(1).step_by(2).all(Option::is_none));
    assert_chain(cat).await;
}

/// placements_page streams every placement in (token, category) order,
/// across pages, with homes and regions.
pub async fn placements_page(cat: &dyn Catalog) {
    let categories = ["profile", "payment", "media"];
    let mut expected: Vec<PlacementSummary> = Vec::new();
    for i in [4, 0, 6, 2, 5, 1, 3] {
        let token = format!("tok-{i:02}");
        let home = if i % 2 == 0 { "IN" } else { "CN" };
        setup(cat, &token, home, &[]).await;
        for (j, category) in categories.iter().enumerate() {
            let r1 = format!("r{}", (i + j) % 3);
            let r2 = format!("r{}", (i + j + 1) % 3);
            let regions: Vec<&str> = if j == 1 { vec![&r1, &r2] } else { vec![&r1] };
            cat.ensure_placement(
                &placement(&token, category, &regions),
                0,
                entry("placement", Some(&token), 2_000),
            )
            .await
            .unwrap();
            let objects = (i + j) as i64 % 3;
            for k in 0..objects {
                let blob = format!("blob-{token}-{category}-{k}");
                commit(cat, 1, &object(&token, category, &blob, &blob, 10 + k)).await;
            }
            expected.push(PlacementSummary {
                token: token.clone(),
                home: home.into(),
                category: category.to_string(),
                regions: strings(&regions),
                custodian: "kms-a".into(),
                epoch: 1,
                objects,
                bytes: (0..objects).map(|k| 10 + k).sum(),
            });
        }
    }
    expected.sort_by(|a, b| (&a.token, &a.category).cmp(&(&b.token, &b.category)));
    assert_eq!(expected.len(), 21);

    for limit in [1_u32, 4, 21, 100] {
        let mut got: Vec<PlacementSummary> = Vec::new();
        let mut pages = 0;
        loop {
            let after = got.last().map(|p| (p.token.clone(), p.category.clone()));
            let page = cat
                .placements_page(after.as_ref().map(|(t, c)| (t.as_str(), c.as_str())), limit)
                .await
                .unwrap();
            assert!(page.len() <= limit as usize, "page larger than its limit");
            if page.is_empty() {
                break;
            }
            pages += 1;
            assert!(pages <= 100, "placements_page does not advance");
            got.extend(page);
        }
        assert_eq!(got, expected, "placements_page with limit {limit}");
    }

    // A key between two rows starts at the next one.
    let page = cat.placements_page(Some(("tok-03", "n")), 2).await.unwrap();
    let keys: Vec<(&str, &str)> = page
        .iter()
        .map(|p| (p.token.as_str(), p.category.as_str()))
        .collect();
    assert_eq!(keys, vec![("tok-03", "payment"), ("tok-03", "profile")]);
    let page = cat
        .placements_page(Some(("tok-06", "profile")), 10)
        .await
        .unwrap();
    assert!(page.is_empty(), "rows after the last key");
    assert!(cat.placements_page(None, 0).await.unwrap().is_empty());
    assert_chain(cat).await;
}

/// placements_range_page streams the placements of the tokens in a range,
/// in (token, category) order across pages; ranges that meet end to end
/// (at hex boundaries, as a scan in parallel splits tokens) see every
/// placement once, whatever the tokens look like.
pub async fn placements_range_page(cat: &dyn Catalog) {
    let tokens = [
        "00aa", "07ff", "08", "0800", "7fff", "80", "80aa", "a0", "fe", "ff", "ff00", "tok-1",
    ];
    for (i, token) in tokens.iter().enumerate() {
        let regions: &[&str] = if i % 2 == 0 { &["r1"] } else { &["r1", "r2"] };
        setup(
            cat,
            token,
            "IN",
            &[("profile", regions), ("payment", &["r3"])],
        )
        .await;
    }
    let all = cat.placements_page(None, 100).await.unwrap();
    assert_eq!(all.len(), 2 * tokens.len());

    let scan = |range: TokenRange<'static>, limit: u32| async move {
        let mut got: Vec<PlacementSummary> = Vec::new();
        loop {
            let after = got.last().map(|p| (p.token.clone(), p.category.clone()));
            let page = cat
                .placements_range_page(
                    range,
                    after.as_ref().map(|(t, c)| (t.as_str(), c.as_str())),
                    limit,
                )
                .await
                .unwrap();
            assert!(page.len() <= limit as usize, "page larger than its limit");
            if page.is_empty() {
                return got;
            }
            got.extend(page);
            assert!(got.len() <= 100, "placements_range_page does not advance");
        }
    };
    for bounds in [
        &[][..],
        &["08"][..],
        &["08", "80", "ff"][..],
        &["0", "1", "7", "8", "9", "a", "f"][..],
        &["00", "00aa", "07ff", "80aa", "zz"][..],
    ] {
        for limit in [1_u32, 3, 100] {
            let mut got = Vec::new();
            let mut from = None;
            for until in bounds.iter().copied().map(Some).chain([None]) {
                let part = scan(TokenRange { from, until }, limit).await;
                assert!(
                    part.iter()
                        .all(|p| from.is_none_or(|f| p.token.as_str() >= f)
                            && until.is_none_or(|u| p.token.as_str() < u)),
                    "a row outside [{from:?}, {until:?})"
                );
                got.extend(part);
                from = until;
            }
            assert_eq!(got, all, "ranges split at {bounds:?}, limit {limit}");
        }
    }
    // One range alone, and ranges that hold nothing.
    let part = scan(
        TokenRange {
            from: Some("08"),
            until: Some("80"),
        },
        2,
    )
    .await;
    let keys: Vec<&str> = part.iter().map(|p| p.token.as_str()).collect();
    assert_eq!(keys, ["08", "08", "0800", "0800", "7fff", "7fff"]);
    assert!(
        scan(
            TokenRange {
                from: Some("81"),
                until: Some("a0")
            },
            5
        )
        .await
        .is_empty()
    );
    assert!(
        scan(
            TokenRange {
                from: Some("80"),
                until: Some("80")
            },
            5
        )
        .await
        .is_empty()
    );
    let after = cat
        .placements_range_page(
            TokenRange {
                from: Some("08"),
                until: Some("80"),
            },
            Some(("7fff", "profile")),
            5,
        )
        .await
        .unwrap();
    assert!(after.is_empty(), "rows after the range's last key");
    assert!(
        cat.placements_range_page(TokenRange::default(), None, 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_chain(cat).await;
}

/// residency aggregates subjects, objects and bytes per (home, category, region).
pub async fn residency(cat: &dyn Catalog) {
    setup(cat, "s1", "IN", &[("profile", &["r1", "r2"])]).await;
    setup(cat, "s2", "IN", &[("profile", &["r1"]), ("media", &["r3"])]).await;
    setup(cat, "s3", "CN", &[("profile", &["r2"])]).await;
    setup(cat, "s4", "CN", &[]).await;
    commit(cat, 1, &object("s1", "profile", "a", "b-s1a", 10)).await;
    commit(cat, 1, &object("s1", "profile", "b", "b-s1b", 20)).await;
    commit(cat, 1, &object("s2", "profile", "a", "b-s2a", 5)).await;
    commit(cat, 1, &object("s3", "profile", "a", "b-s3a", 7)).await;

    let row = |home: &str, category: &str, region: &str, s: i64, o: i64, b: i64| ResidencyRow {
        home: home.into(),
        category: category.into(),
        region: region.into(),
        subjects: s,
        objects: o,
        bytes: b,
    };
    assert_eq!(
        cat.residency().await.unwrap(),
        vec![
            row("CN", "profile", "r2", 1, 1, 7),
            row("IN", "media", "r3", 1, 0, 0),
            row("IN", "profile", "r1", 2, 3, 35),
            row("IN", "profile", "r2", 1, 2, 30),
        ]
    );

    cat.set_home("s3", "IN", entry("rehome", Some("s3"), 9_000))
        .await
        .unwrap();
    commit(cat, 1, &object("s1", "profile", "a", "b-s1a2", 12)).await;
    assert_eq!(
        cat.residency().await.unwrap(),
        vec![
            row("IN", "media", "r3", 1, 0, 0),
            row("IN", "profile", "r1", 2, 3, 37),
            row("IN", "profile", "r2", 2, 3, 39),
        ]
    );
    assert_chain(cat).await;
}

/// The planner's scan (`placements_page`) sees re-homing and moves at once,
/// and sealed ids come back for known tokens only.
pub async fn scan_follows_changes(cat: &dyn Catalog) {
    let a = subject("tok-a", "IN");
    cat.add_subject(&a, entry("subject", Some("tok-a"), 1))
        .await
        .unwrap();
    cat.ensure_placement(
        &placement("tok-a", "media", &["r1", "r2"]),
        0,
        entry("placement", Some("tok-a"), 2),
    )
    .await
    .unwrap();
    let page = cat.placements_page(None, 10).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(
        (page[0].home.as_str(), page[0].regions.clone()),
        ("IN", strings(&["r1", "r2"]))
    );

    cat.set_home("tok-a", "CN", entry("rehome", Some("tok-a"), 3))
        .await
        .unwrap();
    assert!(
        cat.begin_move("tok-a", "media", 1, &strings(&["r3"]), 100, 4)
            .await
            .unwrap()
    );
    let fence = Fence {
        token: "tok-a".into(),
        category: "media".into(),
        epoch: 1,
        policy: 0,
    };
    cat.commit_move(
        &fence,
        &strings(&["r3"]),
        "kms-b",
        b"k2",
        entry("move", Some("tok-a"), 5),
    )
    .await
    .unwrap();
    let page = cat.placements_page(None, 10).await.unwrap();
    assert_eq!(page[0].home, "CN", "the scan missed a re-homing");
    assert_eq!(page[0].regions, strings(&["r3"]), "the scan missed a move");
    assert_eq!(page[0].custodian, "kms-b");
    assert_eq!(page[0].epoch, 2);

    let seals = cat
        .subject_seals(&strings(&["tok-a", "tok-missing"]))
        .await
        .unwrap();
    assert_eq!(
        seals,
        vec![("tok-a".to_string(), a.id_enc.clone().unwrap())]
    );
    assert_chain(cat).await;
}

/// A custodian's placements come in pages, and a rewrap is a compare-and-set
/// on (epoch, custodian, old key): a placement moved, erased or rewrapped in
/// the meantime is left alone, and nothing else of a placement changes.
pub async fn rewrap_placements(cat: &dyn Catalog) {
    for (token, categories) in [
        ("tok-c", &["profile", "payment"][..]),
        ("tok-a", &["profile"][..]),
        ("tok-b", &["profile", "media"][..]),
    ] {
        setup(cat, token, "IN", &[]).await;
        for category in categories {
            cat.ensure_placement(
                &placement(token, category, &["r1"]),
                0,
                entry("placement", Some(token), 2_000),
            )
            .await
            .unwrap();
        }
    }
    // tok-d/media belongs to another custodian.
    let mut other = placement("tok-d", "media", &["r1"]);
    other.custodian = "kms-b".into();
    setup(cat, "tok-d", "IN", &[]).await;
    cat.ensure_placement(&other, 0, entry("placement", Some("tok-d"), 2_000))
        .await
        .unwrap();
    commit(cat, 1, &object("tok-a", "profile", "l1", "b1", 10)).await;

    let expected: Vec<(String, String)> = [
        ("tok-a", "profile"),
        ("tok-b", "media"),
        ("tok-b", "profile"),
        ("tok-c", "payment"),
        ("tok-c", "profile"),
    ]
    .iter()
    .map(|(t, c)| (t.to_string(), c.to_string()))
    .collect();
    for limit in [1_u32, 2, 100] {
        let mut got: Vec<PlacementRow> = Vec::new();
        loop {
            let after = got.last().map(|p| (p.token.clone(), p.category.clone()));
            let page = cat
                .custodian_placements_page(
                    "kms-a",
                    after.as_ref().map(|(t, c)| (t.as_str(), c.as_str())),
                    limit,
                )
                .await
                .unwrap();
            assert!(page.len() <= limit as usize, "a page exceeds its limit");
            if page.is_empty() {
                break;
            }
            got.extend(page);
        }
        let keys: Vec<(String, String)> = got
            .iter()
            .map(|p| (p.token.clone(), p.category.clone()))
            .collect();
        assert_eq!(
            keys, expected,
            "limit {limit}: kms-a's placements, ordered, once each"
        );
        assert_eq!(got[0], get_placement(cat, "tok-a", "profile").await);
    }
    assert!(
        cat.custodian_placements_page("kms-z", None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let n0 = ledger_len(cat).await;
    let before = get_placement(cat, "tok-a", "profile").await;
    let rewrap = |token: &str, category: &str, epoch: i64, old: &[u8], new: &[u8]| Rewrap {
        token: token.into(),
        category: category.into(),
        epoch,
        custodian: "kms-a".into(),
        old_key: old.to_vec(),
        new_key: new.to_vec(),
    };
    let old_a = before.wrapped_key.clone();
    let old_c = get_placement(cat, "tok-c", "profile").await.wrapped_key;
    // Made as if kms-a wrapped tok-d's key: kms-b does.
    let wrong_custodian = rewrap("tok-d", "media", 1, &other.wrapped_key, b"x");
    let done = cat
        .rewrap_placements(&[
            rewrap("tok-a", "profile", 1, &old_a, b"new-a"),
            rewrap("tok-c", "profile", 1, b"not-the-key", b"new-c"),
            rewrap("tok-c", "payment", 2, &old_c, b"new-c"),
            wrong_custodian,
            rewrap("tok-z", "profile", 1, b"k", b"new-z"),
        ])
        .await
        .unwrap();
    assert_eq!(
        done,
        vec![true, false, false, false, false],
        "only the rewrap made from the placement as it stands applies"
    );
    assert_eq!(
        get_placement(cat, "tok-a", "profile").await,
        PlacementRow {
            wrapped_key: b"new-a".to_vec(),
            ..before.clone()
        },
        "a rewrap changes the wrapped key and nothing else (epoch, counts, since)"
    );
    assert_eq!(
        get_placement(cat, "tok-c", "profile").await.wrapped_key,
        old_c
    );
    assert_eq!(get_placement(cat, "tok-d", "media").await, other);
    // Applied once: the same rewrap again finds another key and is skipped.
    assert_eq!(
        cat.rewrap_placements(&[rewrap("tok-a", "profile", 1, &old_a, b"newer")])
            .await
            .unwrap(),
        vec![false]
    );
    // Writes fenced by the placement's epoch still commit after a rewrap.
    commit(cat, 1, &object("tok-a", "profile", "l2", "b2", 10)).await;
    // A moving placement is rewrapped too: the move's commit brings its own
    // key and bumps the epoch, which fences any rewrap made before it.
    assert!(
        cat.begin_move("tok-b", "profile", 1, &strings(&["r2"]), i64::MAX, 0)
            .await
            .unwrap()
    );
    let old_b = get_placement(cat, "tok-b", "profile").await.wrapped_key;
    assert_eq!(
        cat.rewrap_placements(&[rewrap("tok-b", "profile", 1, &old_b, b"new-b")])
            .await
            .unwrap(),
        vec![true]
    );
    cat.commit_move(
        &fence("tok-b", "profile", 1),
        &strings(&["r2"]),
        "kms-a",
        b"moved-b",
        entry("move", Some("tok-b"), 3_000),
    )
    .await
    .unwrap();
    assert_eq!(
        cat.rewrap_placements(&[rewrap("tok-b", "profile", 1, b"new-b", b"stale")])
            .await
            .unwrap(),
        vec![false],
        "a rewrap planned before a move's commit must not undo its key"
    );
    assert_eq!(
        get_placement(cat, "tok-b", "profile").await.wrapped_key,
        b"moved-b"
    );
    // An erased subject's placement is gone: nothing to rewrap.
    cat.erase_subject("tok-c", entry("erasure", Some("tok-c"), 4_000))
        .await
        .unwrap();
    assert_eq!(
        cat.rewrap_placements(&[rewrap("tok-c", "profile", 1, &old_c, b"new-c")])
            .await
            .unwrap(),
        vec![false]
    );
    assert!(
        cat.get_placement("tok-c", "profile")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        cat.rewrap_placements(&[]).await.unwrap(),
        Vec::<bool>::new()
    );
    // Rewraps append nothing to the ledger (the move and the erasure did).
    assert_eq!(ledger_len(cat).await, n0 + 2);
    assert_chain(cat).await;
}
