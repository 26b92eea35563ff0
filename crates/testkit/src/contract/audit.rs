//! The audit log: append-only, idempotent by id, filtered and paged by a
//! keyset cursor in a fixed order, purged only by age.

use regstack_ports::{AuditCursor, AuditEntry, AuditQuery, Stores, Timestamp, UserId};

use crate::fixtures::{at, email, micro, t0};

use super::support::*;

fn entry(id: u32, at: Timestamp, kind: &str, user: Option<&UserId>) -> AuditEntry {
    AuditEntry {
        id: format!("{id:032x}"),
        at,
        kind: kind.to_owned(),
        user_id: user.cloned(),
        actor_id: None,
        email: Some(email("someone@example.com")),
        ip: Some("203.0.113.7".to_owned()),
        detail: r#"{"reason":"wrong_password"}"#.to_owned(),
    }
}

async fn page(stores: &Stores, q: AuditQuery) -> Vec<AuditEntry> {
    stores.audit.query(&q).await.expect("audit query")
}

fn ids(entries: &[AuditEntry]) -> Vec<String> {
    entries.iter().map(|e| e.id.clone()).collect()
}

/// Every field comes back as written, to the microsecond; appending the
/// same id again (a retried batch) adds nothing and changes nothing.
pub async fn audit_entries_round_trip_and_append_is_idempotent(stores: Stores) {
    let user = UserId::generate();
    let mut first = entry(1, t0(), "login_failed", Some(&user));
    first.actor_id = Some(UserId::generate());
    let bare = AuditEntry {
        email: None,
        ip: None,
        user_id: None,
        detail: "{}".to_owned(),
        ..entry(2, at(micro()), "user_registered", None)
    };
    stores
        .audit
        .append(&[first.clone(), bare.clone()])
        .await
        .expect("append");
    let mut changed = first.clone();
    changed.kind = "something_else".to_owned();
    stores
        .audit
        .append(&[changed, bare.clone()])
        .await
        .expect("a retried batch is not an error");
    let all = page(
        &stores,
        AuditQuery {
            newest_first: false,
            ..AuditQuery::default()
        },
    )
    .await;
    assert_eq!(all, vec![first, bare], "each id once, as first written");
}

/// Filters by account (as subject or as acting administrator), kind and
/// a half-open time range.
pub async fn audit_query_filters_by_user_kind_and_time(stores: Stores) {
    let alice = UserId::generate();
    let admin = UserId::generate();
    let mut acted = entry(3, at(minutes(2)), "admin_user_updated", None);
    acted.actor_id = Some(admin.clone());
    acted.user_id = Some(UserId::generate());
    let rows = vec![
        entry(1, t0(), "login_failed", Some(&alice)),
        entry(2, at(minutes(1)), "user_logged_in", Some(&alice)),
        acted,
        entry(4, at(minutes(3)), "login_failed", None),
    ];
    stores.audit.append(&rows).await.expect("append");
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            newest_first: false,
            ..AuditQuery::default()
        };
        f(&mut q);
        q
    };
    let of_alice = AuditQuery {
        user_id: Some(alice.clone()),
        newest_first: false,
        ..AuditQuery::default()
    };
    assert_eq!(ids(&page(&stores, of_alice).await), ids(&rows[0..2]));
    let by_admin = AuditQuery {
        user_id: Some(admin),
        ..AuditQuery::default()
    };
    assert_eq!(
        ids(&page(&stores, by_admin).await),
        ids(&rows[2..3]),
        "an administrator's own actions are found by their id"
    );
    let failed = page(&stores, q(|q| q.kind = Some("login_failed".to_owned()))).await;
    assert_eq!(ids(&failed), vec![rows[0].id.clone(), rows[3].id.clone()]);
    let mut elsewhere = entry(5, at(minutes(4)), "login_failed", None);
    elsewhere.email = Some(email("other@example.com"));
    stores
        .audit
        .append(&[elsewhere.clone()])
        .await
        .expect("append");
    let by_address = page(&stores, q(|q| q.email = Some(email("other@example.com")))).await;
    assert_eq!(ids(&by_address), vec![elsewhere.id.clone()]);
    let window = page(
        &stores,
        q(|q| {
            q.since = Some(at(minutes(1)));
            q.until = Some(at(minutes(3)));
        }),
    )
    .await;
    assert_eq!(
        ids(&window),
        ids(&rows[1..3]),
        "since is inclusive, until exclusive"
    );
}

/// Pages in (`at`, `id`) order in both directions; entries of one instant
/// are ordered by id; an entry appended between pages — newer than every
/// listed one — neither repeats nor shifts the pages after the cursor.
pub async fn audit_keyset_pages_neither_repeat_nor_skip_while_appending(stores: Stores) {
    // Five entries, two of them at the same instant.
    let rows: Vec<_> = (0..5u32)
        .map(|i| {
            let when = at(minutes(i64::from(i.min(3))));
            entry(10 + i, when, "user_logged_in", None)
        })
        .collect();
    stores.audit.append(&rows).await.expect("append");
    let mut seen = Vec::new();
    let mut after: Option<AuditCursor> = None;
    for round in 0.. {
        let got = page(
            &stores,
            AuditQuery {
                after: after.clone(),
                limit: 2,
                ..AuditQuery::default()
            },
        )
        .await;
        if got.is_empty() {
            break;
        }
        if round == 0 {
            // Newer than everything: sorts before the cursor, never after.
            stores
                .audit
                .append(&[entry(99, at(hours(1)), "user_logged_in", None)])
                .await
                .expect("append between pages");
        }
        let last = got.last().expect("non-empty");
        after = Some(AuditCursor {
            at: last.at,
            id: last.id.clone(),
        });
        seen.extend(ids(&got));
    }
    let mut expected = ids(&rows);
    expected.reverse();
    assert_eq!(seen, expected, "newest first, by time then id");

    // Oldest first from a cursor in the middle of the tie.
    let tail = page(
        &stores,
        AuditQuery {
            after: Some(AuditCursor {
                at: rows[3].at,
                id: rows[3].id.clone(),
            }),
            newest_first: false,
            ..AuditQuery::default()
        },
    )
    .await;
    assert_eq!(
        ids(&tail),
        vec![rows[4].id.clone(), format!("{:032x}", 99)],
        "oldest first continues past the cursor, including what came later"
    );
}

/// Purging removes exactly the entries older than the instant.
pub async fn audit_purge_removes_only_entries_older_than_the_instant(stores: Stores) {
    let rows = vec![
        entry(1, t0(), "login_failed", None),
        entry(2, at(days(1)) - micro(), "login_failed", None),
        entry(3, at(days(1)), "login_failed", None),
    ];
    stores.audit.append(&rows).await.expect("append");
    let removed = stores.audit.purge_before(at(days(1))).await.expect("purge");
    assert_eq!(removed, 2);
    let left = page(&stores, AuditQuery::default()).await;
    assert_eq!(ids(&left), ids(&rows[2..]), "an entry at the instant stays");
}
