//! Second factors: challenges (count, expire, finish once), the TOTP
//! factor's replay guard, single-use backup codes, and the factor changes
//! that keep `is_mfa_enabled` true exactly when a factor is there.

use regstack_ports::{
    ChallengeAttempt, ChallengeKind, Factors, MfaChallenge, NewSession, NewUser, RevokeReason,
    SessionId, SessionStart, Stores, Timestamp, TokenHash, User, UserId,
};

use crate::fixtures::{self, at, micro, t0};

use super::support::*;
use super::RACERS;

/// A challenge of `user` opened at [`t0`] with a code and a payload, so
/// that every field has something to round-trip.
fn challenge(
    user: &UserId,
    kind: ChallengeKind,
    attempts_left: u32,
    expires_at: Timestamp,
) -> MfaChallenge {
    MfaChallenge {
        id: fixtures::token_hash(),
        user_id: user.clone(),
        kind,
        code_hash: Some(fixtures::token_hash()),
        payload: Some("+14155550100".to_owned()),
        attempts_left,
        credential_epoch: Some(at(-hours(1))),
        created_at: t0(),
        expires_at,
    }
}

async fn open(stores: &Stores, c: &MfaChallenge) {
    stores
        .mfa
        .open_challenge(c.clone())
        .await
        .expect("mfa.open_challenge");
}

async fn attempt(stores: &Stores, id: &TokenHash, now: Timestamp) -> ChallengeAttempt {
    stores
        .mfa
        .attempt_challenge(id, now)
        .await
        .expect("mfa.attempt_challenge")
}

async fn finish(stores: &Stores, id: &TokenHash, now: Timestamp) -> Option<MfaChallenge> {
    stores
        .mfa
        .finish_challenge(id, now)
        .await
        .expect("mfa.finish_challenge")
}

async fn factors(stores: &Stores, user: &UserId) -> Factors {
    stores.mfa.factors(user).await.expect("mfa.factors")
}

/// `c` as an attempt that leaves `left` reports it.
fn counted(c: &MfaChallenge, left: u32) -> ChallengeAttempt {
    ChallengeAttempt::Counted(MfaChallenge {
        attempts_left: left,
        ..c.clone()
    })
}

fn codes(n: usize) -> Vec<TokenHash> {
    (0..n).map(|_| fixtures::token_hash()).collect()
}

/// A new challenge supersedes the user's earlier one of the same kind —
/// live or already dead — and nothing else: the user's challenges of other
/// kinds and other users' challenges stay. Every field round-trips. A
/// challenge for a user who is gone is not stored, and that is no error.
pub async fn open_challenge_supersedes_only_the_users_challenge_of_that_kind(stores: Stores) {
    let user = add_user(&stores, "supersede@example.com").await;
    let other = add_user(&stores, "supersede-other@example.com").await;
    let later = at(minutes(10));

    let first = challenge(&user.id, ChallengeKind::SignIn, 5, later);
    let phone = challenge(&user.id, ChallengeKind::PhoneEnrolment, 5, later);
    let others = challenge(&other.id, ChallengeKind::SignIn, 5, later);
    let dead = challenge(&user.id, ChallengeKind::TotpEnrolment, 5, t0() - minutes(1));
    for c in [&first, &phone, &others, &dead] {
        open(&stores, c).await;
    }
    let second = MfaChallenge {
        code_hash: None,
        payload: None,
        credential_epoch: None,
        ..challenge(&user.id, ChallengeKind::SignIn, 3, later)
    };
    open(&stores, &second).await;
    let totp = challenge(&user.id, ChallengeKind::TotpEnrolment, 5, later);
    open(&stores, &totp).await;

    let now = at(minutes(1));
    assert_eq!(
        attempt(&stores, &first.id, now).await,
        ChallengeAttempt::Unknown,
        "the newer sign-in challenge superseded the older"
    );
    assert_eq!(
        attempt(&stores, &second.id, now).await,
        counted(&second, 2),
        "the newer one is live, every field as opened"
    );
    assert_eq!(
        attempt(&stores, &phone.id, now).await,
        counted(&phone, 4),
        "a challenge of another kind stays"
    );
    assert_eq!(
        attempt(&stores, &others.id, now).await,
        counted(&others, 4),
        "another user's challenge stays"
    );
    assert_eq!(attempt(&stores, &totp.id, now).await, counted(&totp, 4));
    assert_eq!(
        stores
            .mfa
            .purge_expired(now)
            .await
            .expect("mfa.purge_expired"),
        0,
        "the dead challenge of the same kind was superseded too"
    );

    let ghost = challenge(&UserId::generate(), ChallengeKind::SignIn, 5, later);
    open(&stores, &ghost).await;
    assert_eq!(
        attempt(&stores, &ghost.id, now).await,
        ChallengeAttempt::Unknown,
        "a challenge for a user who is gone is not stored"
    );
}

/// Each attempt counts one down and reports what is left after it; with
/// none left the challenge is deleted (`Exhausted`), and after that it is
/// `Unknown`. A challenge opened with no attempts is exhausted at once.
pub async fn attempt_challenge_counts_down_to_exhaustion(stores: Stores) {
    let user = add_user(&stores, "countdown@example.com").await;
    let c = challenge(&user.id, ChallengeKind::SignIn, 3, at(minutes(10)));
    open(&stores, &c).await;
    for left in [2, 1, 0] {
        assert_eq!(
            attempt(&stores, &c.id, at(minutes(1))).await,
            counted(&c, left)
        );
    }
    assert_eq!(
        finish(&stores, &c.id, at(minutes(1))).await,
        Some(MfaChallenge {
            attempts_left: 0,
            ..c.clone()
        }),
        "an attempt that used the last try may still finish"
    );

    let c = challenge(&user.id, ChallengeKind::SignIn, 1, at(minutes(10)));
    open(&stores, &c).await;
    assert_eq!(attempt(&stores, &c.id, t0()).await, counted(&c, 0));
    assert_eq!(
        attempt(&stores, &c.id, t0()).await,
        ChallengeAttempt::Exhausted
    );
    assert_eq!(
        attempt(&stores, &c.id, t0()).await,
        ChallengeAttempt::Unknown,
        "an exhausted challenge is deleted"
    );
    assert_eq!(finish(&stores, &c.id, t0()).await, None);

    let none = challenge(&user.id, ChallengeKind::PasswordChange, 0, at(minutes(10)));
    open(&stores, &none).await;
    assert_eq!(
        attempt(&stores, &none.id, t0()).await,
        ChallengeAttempt::Exhausted
    );
    assert_eq!(
        attempt(&stores, &fixtures::token_hash(), t0()).await,
        ChallengeAttempt::Unknown
    );
}

/// A challenge is live while `expires_at > now`: one microsecond before
/// it counts and finishes, at it and after it is `Unknown` and finishes
/// nothing — an exhausted one too.
pub async fn a_challenge_is_dead_from_its_expiry_on(stores: Stores) {
    let user = add_user(&stores, "expiry@example.com").await;
    let end = at(minutes(5));
    let c = challenge(&user.id, ChallengeKind::SignIn, 5, end);
    open(&stores, &c).await;
    for now in [end, end + micro(), end + hours(1)] {
        assert_eq!(
            attempt(&stores, &c.id, now).await,
            ChallengeAttempt::Unknown,
            "attempt at {now}"
        );
        assert_eq!(finish(&stores, &c.id, now).await, None, "finish at {now}");
    }
    assert_eq!(
        attempt(&stores, &c.id, end - micro()).await,
        counted(&c, 4),
        "nothing was counted while it was dead"
    );
    assert_eq!(
        finish(&stores, &c.id, end - micro()).await,
        Some(MfaChallenge {
            attempts_left: 4,
            ..c.clone()
        })
    );

    let spent = challenge(&user.id, ChallengeKind::PhoneEnrolment, 0, end);
    open(&stores, &spent).await;
    assert_eq!(
        attempt(&stores, &spent.id, end).await,
        ChallengeAttempt::Unknown,
        "a dead challenge is unknown, not exhausted"
    );
}

/// 20 attempts at once on a challenge with 5 left: exactly 5 are counted,
/// each with a different remainder (4, 3, 2, 1, 0); one of the rest finds
/// none left and deletes it, the others find nothing.
pub async fn attempt_challenge_never_counts_more_than_attempts_left_under_20_parallel_attempts(
    stores: Stores,
) {
    let user = add_user(&stores, "attempt-race@example.com").await;
    let c = challenge(&user.id, ChallengeKind::SignIn, 5, at(minutes(10)));
    open(&stores, &c).await;
    let outcomes = all_ok(
        "attempt_challenge",
        race(|_| {
            let (stores, id) = (stores.clone(), c.id.clone());
            async move { stores.mfa.attempt_challenge(&id, at(minutes(1))).await }
        })
        .await,
    );
    let mut left: Vec<u32> = Vec::new();
    let (mut exhausted, mut unknown) = (0, 0);
    for outcome in &outcomes {
        match outcome {
            ChallengeAttempt::Counted(got) => {
                assert_eq!(
                    got,
                    &MfaChallenge {
                        attempts_left: got.attempts_left,
                        ..c.clone()
                    }
                );
                left.push(got.attempts_left);
            }
            ChallengeAttempt::Exhausted => exhausted += 1,
            ChallengeAttempt::Unknown => unknown += 1,
        }
    }
    left.sort_unstable();
    assert_eq!(
        left,
        vec![0, 1, 2, 3, 4],
        "exactly 5 attempts counted, each with its own remainder: {outcomes:?}"
    );
    assert_eq!(
        (exhausted, unknown),
        (1, RACERS - 6),
        "one racer deletes the exhausted challenge: {outcomes:?}"
    );
    assert_eq!(
        attempt(&stores, &c.id, at(minutes(1))).await,
        ChallengeAttempt::Unknown
    );
}

/// 20 callers finish one live challenge at once: exactly one gets it.
pub async fn finish_challenge_has_one_winner_among_20_parallel_callers(stores: Stores) {
    let user = add_user(&stores, "finish-race@example.com").await;
    let c = challenge(&user.id, ChallengeKind::SignIn, 5, at(minutes(10)));
    open(&stores, &c).await;
    let outcomes = all_ok(
        "finish_challenge",
        race(|_| {
            let (stores, id) = (stores.clone(), c.id.clone());
            async move { stores.mfa.finish_challenge(&id, at(minutes(1))).await }
        })
        .await,
    );
    let winners: Vec<_> = outcomes.into_iter().flatten().collect();
    assert_eq!(winners, vec![c.clone()], "exactly one caller finishes it");
    assert_eq!(
        attempt(&stores, &c.id, at(minutes(1))).await,
        ChallengeAttempt::Unknown
    );
}

/// A TOTP step is accepted only when it is later than the last accepted
/// one: never twice, never an earlier one after a later, never without a
/// factor. Enabling anew forgets the last step; another user's factor is
/// untouched.
pub async fn accept_totp_step_refuses_replays_and_earlier_steps(stores: Stores) {
    let user = add_user(&stores, "totp-steps@example.com").await;
    let other = add_user(&stores, "totp-steps-other@example.com").await;
    let accept = |id: UserId, step: u64| {
        let stores = stores.clone();
        async move {
            stores
                .mfa
                .accept_totp_step(&id, step)
                .await
                .expect("mfa.accept_totp_step")
        }
    };
    assert!(!accept(user.id.clone(), 100).await, "no factor, no step");
    for who in [&user, &other] {
        assert!(stores
            .mfa
            .enable_totp(&who.id, "sealed-secret", &codes(2), None, t0())
            .await
            .expect("mfa.enable_totp"));
    }
    assert_eq!(
        factors(&stores, &user.id).await.totp.map(|t| t.last_step),
        Some(None)
    );
    assert!(accept(user.id.clone(), 100).await);
    assert!(!accept(user.id.clone(), 100).await, "the same step twice");
    assert!(!accept(user.id.clone(), 99).await, "an earlier step");
    assert!(accept(user.id.clone(), 101).await);
    assert!(!accept(user.id.clone(), 0).await);
    let totp = factors(&stores, &user.id).await.totp.expect("a factor");
    assert_eq!(
        (totp.sealed_secret.as_str(), totp.last_step, totp.created_at),
        ("sealed-secret", Some(101), t0())
    );
    assert!(
        accept(other.id.clone(), 100).await,
        "another user's steps are its own"
    );

    assert!(stores
        .mfa
        .enable_totp(&user.id, "new-secret", &codes(2), None, at(minutes(1)))
        .await
        .expect("mfa.enable_totp"));
    let totp = factors(&stores, &user.id).await.totp.expect("a factor");
    assert_eq!(
        (totp.sealed_secret.as_str(), totp.last_step, totp.created_at),
        ("new-secret", None, at(minutes(1))),
        "a new secret starts with no accepted step"
    );
    assert!(accept(user.id.clone(), 50).await);
    // The largest step a store can be asked about still compares.
    assert!(accept(user.id.clone(), i64::MAX as u64).await);
    assert!(!accept(user.id.clone(), i64::MAX as u64).await);
}

/// 20 calls with the same step at once: exactly one is accepted.
pub async fn accept_totp_step_accepts_one_of_20_parallel_same_step_calls(stores: Stores) {
    let user = add_user(&stores, "totp-race@example.com").await;
    assert!(stores
        .mfa
        .enable_totp(&user.id, "sealed", &codes(1), None, t0())
        .await
        .expect("mfa.enable_totp"));
    for step in [59_000_000_u64, 59_000_001] {
        let accepted = all_ok(
            "accept_totp_step",
            race(|_| {
                let (stores, id) = (stores.clone(), user.id.clone());
                async move { stores.mfa.accept_totp_step(&id, step).await }
            })
            .await,
        );
        assert_eq!(
            accepted.iter().filter(|a| **a).count(),
            1,
            "step {step}: {accepted:?}"
        );
    }
}

/// A backup code works once, for its own user only: 20 spenders at once,
/// one wins; another user's code is refused and stays; replacing the codes
/// kills the old ones at once.
pub async fn backup_codes_are_single_use_under_20_parallel_spenders_and_per_user(stores: Stores) {
    let user = add_user(&stores, "backup@example.com").await;
    let other = add_user(&stores, "backup-other@example.com").await;
    let mine = codes(3);
    let theirs = codes(1);
    let spend = |id: UserId, code: TokenHash| {
        let stores = stores.clone();
        async move {
            stores
                .mfa
                .spend_backup_code(&id, &code)
                .await
                .expect("mfa.spend_backup_code")
        }
    };
    assert!(
        !spend(user.id.clone(), mine[0].clone()).await,
        "no codes yet"
    );
    assert!(stores
        .mfa
        .enable_totp(&user.id, "sealed", &mine, None, t0())
        .await
        .expect("mfa.enable_totp"));
    assert!(stores
        .mfa
        .enable_totp(&other.id, "sealed", &theirs, None, t0())
        .await
        .expect("mfa.enable_totp"));
    assert_eq!(factors(&stores, &user.id).await.backup_codes_left, 3);

    assert!(
        !spend(user.id.clone(), theirs[0].clone()).await,
        "another user's code"
    );
    assert!(
        !spend(other.id.clone(), mine[0].clone()).await,
        "and the other way round"
    );
    assert_eq!(factors(&stores, &other.id).await.backup_codes_left, 1);

    let spent = all_ok(
        "spend_backup_code",
        race(|_| {
            let (stores, id, code) = (stores.clone(), user.id.clone(), mine[0].clone());
            async move { stores.mfa.spend_backup_code(&id, &code).await }
        })
        .await,
    );
    assert_eq!(spent.iter().filter(|s| **s).count(), 1, "{spent:?}");
    assert!(!spend(user.id.clone(), mine[0].clone()).await, "spent");
    assert_eq!(factors(&stores, &user.id).await.backup_codes_left, 2);

    let fresh = codes(4);
    assert!(stores
        .mfa
        .replace_backup_codes(&user.id, &fresh, at(minutes(1)))
        .await
        .expect("mfa.replace_backup_codes"));
    assert_eq!(factors(&stores, &user.id).await.backup_codes_left, 4);
    assert!(
        !spend(user.id.clone(), mine[1].clone()).await,
        "an old code died with the replacement"
    );
    assert!(spend(user.id.clone(), fresh[3].clone()).await);
    assert_eq!(get_user(&stores, &user.id).await.updated_at, at(minutes(1)));
    assert!(spend(other.id.clone(), theirs[0].clone()).await);
    assert!(!stores
        .mfa
        .replace_backup_codes(&UserId::generate(), &codes(1), t0())
        .await
        .expect("mfa.replace_backup_codes"));
}

/// Starts a session of `user` that, unlike [`start_session`], reports
/// what the store answered.
async fn try_start(stores: &Stores, user: &User) -> (SessionId, SessionStart) {
    let new = NewSession {
        credential_epoch: user.tokens_invalidated_after,
        ..fixtures::new_session(&user.id, t0(), at(days(1)))
    };
    let id = new.id.clone();
    (
        id,
        stores.sessions.start(new).await.expect("sessions.start"),
    )
}

/// The factor changes keep `is_mfa_enabled` = "has a TOTP factor or a
/// phone", revoke every other live session of the user with
/// `FactorChanged` but keep `keep` (and another user's), move the
/// credential epoch forward (a sign-in that read the old one gets no
/// session), and keep the backup codes while a factor remains. Each
/// answers `false` when there is nothing to change.
pub async fn factor_changes_keep_is_mfa_enabled_consistent_and_revoke_other_sessions(
    stores: Stores,
) {
    let user = add_user(&stores, "factors@example.com").await;
    let other = add_user(&stores, "factors-other@example.com").await;
    let far = at(days(1));
    let check = |stores: Stores, id: UserId, mfa: bool, totp: bool, phone: bool, left: u32| async move {
        let u = get_user(&stores, &id).await;
        let f = factors(&stores, &id).await;
        assert_eq!(
            (
                u.is_mfa_enabled,
                f.totp.is_some(),
                f.phone_number.is_some(),
                f.backup_codes_left
            ),
            (mfa, totp, phone, left),
            "(is_mfa_enabled, totp, phone, backup codes)"
        );
        assert_eq!(u.phone_number, f.phone_number);
        u
    };

    // Each change, from the state the previous one left:
    // (what, keep?, expected (mfa, totp, phone, codes)).
    let mut before = get_user(&stores, &user.id).await;
    let other_session = start_session(&stores, &other.id, t0(), far).await;
    for (n, step) in [
        "enable_totp",
        "set_phone",
        "disable_totp",
        "clear_phone",
        "set_phone",
        "enable_totp",
        "clear_phone",
    ]
    .into_iter()
    .enumerate()
    {
        let now = at(minutes(n as i64 + 1));
        let keep = start_session(&stores, &user.id, t0(), far).await;
        let gone = start_session(&stores, &user.id, t0(), far).await;
        let keep_arg = (n % 2 == 0).then_some(&keep);
        let done = match step {
            "enable_totp" => {
                stores
                    .mfa
                    .enable_totp(&user.id, "sealed", &codes(3), keep_arg, now)
                    .await
            }
            "set_phone" => {
                stores
                    .mfa
                    .set_phone(&user.id, "+14155550100", keep_arg, now)
                    .await
            }
            "disable_totp" => stores.mfa.disable_totp(&user.id, keep_arg, now).await,
            _ => stores.mfa.clear_phone(&user.id, keep_arg, now).await,
        };
        assert!(done.expect(step), "{step} changed something");
        let expected = match n {
            0 => (true, true, false, 3),
            1 => (true, true, true, 3),
            2 => (true, false, true, 3),
            3 => (false, false, false, 0),
            4 => (true, false, true, 0),
            5 => (true, true, true, 3),
            _ => (true, true, false, 3),
        };
        let after = check(
            stores.clone(),
            user.id.clone(),
            expected.0,
            expected.1,
            expected.2,
            expected.3,
        )
        .await;
        assert_eq!(after.updated_at, now, "{step}: updated_at");
        assert!(
            after.tokens_invalidated_after > before.tokens_invalidated_after,
            "{step}: the credential epoch moved forward"
        );
        assert_eq!(
            try_start(&stores, &before).await.1,
            SessionStart::Stale,
            "{step}: a sign-in that read the epoch before the change gets no session"
        );
        assert_revoked(
            &session(&stores, &gone).await,
            now,
            RevokeReason::FactorChanged,
            step,
        );
        let kept = session(&stores, &keep).await;
        if keep_arg.is_some() {
            assert_live(&kept, &format!("{step}: the kept session"));
        } else {
            assert_revoked(&kept, now, RevokeReason::FactorChanged, step);
        }
        before = after;
    }
    assert_live(
        &session(&stores, &other_session).await,
        "another user's session survives every change",
    );
    assert!(!get_user(&stores, &other.id).await.is_mfa_enabled);

    // Nothing to change: nothing changes.
    let now = at(hours(1));
    let live = start_session(&stores, &user.id, t0(), far).await;
    assert!(!stores
        .mfa
        .clear_phone(&user.id, None, now)
        .await
        .expect("clear_phone"));
    assert!(stores
        .mfa
        .disable_totp(&user.id, Some(&live), now)
        .await
        .expect("disable_totp"));
    assert!(!stores
        .mfa
        .disable_totp(&user.id, None, now)
        .await
        .expect("disable_totp"));
    check(stores.clone(), user.id.clone(), false, false, false, 0).await;
    assert_live(&session(&stores, &live).await, "refusals revoke nothing");
    let ghost = UserId::generate();
    assert!(!stores
        .mfa
        .enable_totp(&ghost, "s", &codes(1), None, now)
        .await
        .expect("enable_totp"));
    assert!(!stores
        .mfa
        .set_phone(&ghost, "+14155550100", None, now)
        .await
        .expect("set_phone"));
    assert_eq!(factors(&stores, &ghost).await, Factors::default());
}

/// `must_change_password` is set and cleared on request, and cleared by a
/// password change and by a reset, in the same step as the new hash.
pub async fn password_change_and_reset_clear_must_change_password(stores: Stores) {
    let user = add_user(&stores, "must-change@example.com").await;
    assert!(!user.must_change_password, "a new user need not");
    let set = |value: bool, now: Timestamp| {
        let (stores, id) = (stores.clone(), user.id.clone());
        async move {
            stores
                .mfa
                .set_must_change_password(&id, value, now)
                .await
                .expect("mfa.set_must_change_password")
        }
    };
    assert!(set(true, at(minutes(1))).await);
    let u = get_user(&stores, &user.id).await;
    assert_eq!(
        (u.must_change_password, u.updated_at),
        (true, at(minutes(1)))
    );
    assert!(set(false, at(minutes(2))).await);
    assert!(!get_user(&stores, &user.id).await.must_change_password);

    assert!(set(true, at(minutes(3))).await);
    let changed = stores
        .users
        .change_password(
            &user.id,
            &fixtures::hash_of("a new password"),
            RevokeReason::PasswordChanged,
            at(minutes(4)),
        )
        .await
        .expect("change_password")
        .expect("the user exists");
    assert!(!changed.must_change_password, "the answer has it cleared");
    assert!(!get_user(&stores, &user.id).await.must_change_password);

    assert!(set(true, at(minutes(5))).await);
    let reset = issue(&stores, fixtures::reset_token(&user.id, at(hours(1)))).await;
    let done = stores
        .users
        .complete_password_reset(
            &reset.hash,
            &fixtures::hash_of("another one"),
            at(minutes(6)),
        )
        .await
        .expect("complete_password_reset")
        .expect("the token was live");
    assert!(!done.must_change_password);
    assert!(!get_user(&stores, &user.id).await.must_change_password);

    assert!(!stores
        .mfa
        .set_must_change_password(&UserId::generate(), true, t0())
        .await
        .expect("mfa.set_must_change_password"));
}

/// `delete_account` takes the user's challenges, TOTP factor and backup
/// codes along — gone from the tables, not merely orphaned: a user created
/// afterwards with the same id finds none of them — and leaves another
/// user's.
pub async fn delete_account_removes_every_mfa_row(stores: Stores) {
    let user = add_user(&stores, "mfa-deleted@example.com").await;
    let other = add_user(&stores, "mfa-kept@example.com").await;
    let later = at(minutes(10));
    let mine = codes(2);
    let theirs = codes(2);
    let mut opened = Vec::new();
    for (who, backup) in [(&user, &mine), (&other, &theirs)] {
        assert!(stores
            .mfa
            .enable_totp(&who.id, "sealed", backup, None, t0())
            .await
            .expect("mfa.enable_totp"));
        assert!(stores
            .mfa
            .set_phone(&who.id, "+14155550100", None, t0())
            .await
            .expect("mfa.set_phone"));
        for kind in [ChallengeKind::SignIn, ChallengeKind::PasswordChange] {
            let c = challenge(&who.id, kind, 5, later);
            open(&stores, &c).await;
            opened.push(c);
        }
    }
    stores
        .users
        .delete_account(&user.id)
        .await
        .expect("delete_account")
        .expect("the user existed");

    let reborn = stores
        .users
        .insert(NewUser {
            id: user.id.clone(),
            ..fixtures::new_user("mfa-deleted@example.com")
        })
        .await
        .expect("a new user with the old id");
    assert!(!reborn.is_mfa_enabled);
    assert_eq!(factors(&stores, &user.id).await, Factors::default());
    assert!(!stores
        .mfa
        .spend_backup_code(&user.id, &mine[0])
        .await
        .expect("mfa.spend_backup_code"));
    assert!(!stores
        .mfa
        .accept_totp_step(&user.id, 1)
        .await
        .expect("mfa.accept_totp_step"));
    let now = at(minutes(1));
    for c in &opened {
        let expected = if c.user_id == user.id {
            ChallengeAttempt::Unknown
        } else {
            counted(c, 4)
        };
        assert_eq!(attempt(&stores, &c.id, now).await, expected, "{:?}", c.kind);
    }
    let kept = factors(&stores, &other.id).await;
    assert_eq!(
        (
            kept.totp.is_some(),
            kept.phone_number.is_some(),
            kept.backup_codes_left
        ),
        (true, true, 2),
        "another user keeps its factors"
    );
}

/// `purge_expired` deletes the challenges at or past their expiry, reports
/// how many, and leaves live ones working.
pub async fn purge_expired_removes_only_dead_challenges(stores: Stores) {
    let now = at(hours(1));
    let mut dead = Vec::new();
    for (n, expires_at) in [now - minutes(30), now].into_iter().enumerate() {
        let user = add_user(&stores, &format!("purge-dead{n}@example.com")).await;
        let c = challenge(&user.id, ChallengeKind::SignIn, 5, expires_at);
        open(&stores, &c).await;
        dead.push(c);
    }
    let user = add_user(&stores, "purge-live@example.com").await;
    let live = challenge(&user.id, ChallengeKind::SignIn, 5, now + micro());
    open(&stores, &live).await;
    assert_eq!(
        stores
            .mfa
            .purge_expired(now)
            .await
            .expect("mfa.purge_expired"),
        2
    );
    assert_eq!(
        stores
            .mfa
            .purge_expired(now)
            .await
            .expect("mfa.purge_expired"),
        0,
        "idempotent"
    );
    assert_eq!(attempt(&stores, &live.id, now).await, counted(&live, 4));
    for c in &dead {
        assert_eq!(
            attempt(&stores, &c.id, c.expires_at - micro()).await,
            ChallengeAttempt::Unknown,
            "a purged challenge is gone, even asked about before its expiry"
        );
    }
}
