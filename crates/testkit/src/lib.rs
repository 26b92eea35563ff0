//! Test support for the hexagon: in-memory fakes of every port, a clock
//! that only moves when told to, and the store contract suite that every
//! storage backend must pass.
//!
//! This crate is a `[dev-dependencies]` entry and nothing else: it must never
//! be a dependency of a non-test build (it is `publish = false`, and its
//! fakes trade speed and inspection for durability — nothing here persists
//! or is meant to face an attacker). It depends on `regstack-ports` only, so
//! `core`, the adapters and the HTTP layer can all use it without cycles.
//!
//! Where to start reading:
//! - [`contract`] and [`store_contract!`]: the one definition of what a
//!   store must do. An adapter's integration test writes
//!   `regstack_testkit::store_contract!(fresh_sqlite_stores);` and gets one
//!   named test per case; the in-memory fakes run the same list
//!   (`tests/contract_memory.rs`).
//! - [`memory`]: [`memory_stores`] returns a fresh, independent
//!   [`Stores`](regstack_ports::Stores) whose every intent-named operation
//!   runs in one critical section, exactly as the port docs demand;
//!   [`memory_stores_with_faults`] adds a [`FaultInjector`] that makes chosen
//!   operations fail with `StoreError::Unavailable`.
//! - [`FixedClock`], [`RecordingMailer`], [`CountingHasher`] and
//!   [`FakeHasher`]: the other ports, made observable. Timing properties are
//!   proven by counting, so the hasher counts and the mailer records
//!   rather than anything measuring wall time (which flakes on a shared
//!   machine).
//! - [`fixtures`]: fixed instants and ready-made rows for tests.
//! - [`forward`]: delegating wrappers for the store ports, so a test that
//!   breaks or observes one method writes only that method.
//! - [`CutoffProxy`]: a TCP proxy in front of a real database that a test
//!   cuts off and restores, the database stopping and starting.
//! - [`calls::every_store_call`]: one call of every store method, the one
//!   list the outage tests of every backend run.
//! - [`range_server`]: a stand-in breached-password range API on
//!   127.0.0.1 that records what it received.
//! - [`oidc`]: a client for the test OpenID Provider
//!   (`scripts/services/oidc.sh`): registers a test app's client and drives
//!   a sign-in as a chosen user, normal or with a chosen failure, up to the
//!   redirect to the app's callback.

pub mod calls;
pub mod clock;
pub mod contract;
pub mod fixtures;
pub mod forward;
pub mod hasher;
pub mod mailer;
pub mod memory;
pub mod oidc;
pub mod proxy;
pub mod range_server;
pub mod sms;
pub mod totp;

pub use clock::FixedClock;
pub use hasher::{CountingHasher, FakeHasher};
pub use mailer::RecordingMailer;
pub use memory::{memory_stores, memory_stores_with_faults, FaultInjector, InjectedFault};
pub use oidc::{OidcProvider, OidcUser};
pub use proxy::CutoffProxy;
pub use sms::RecordingSms;

/// Expands to one `#[test]` per case of the store contract suite, each
/// calling the same-named function in [`contract`] with a fresh set of
/// stores from `$factory`.
///
/// ```ignore
/// async fn fresh_sqlite_stores() -> regstack_ports::Stores { /* empty, migrated */ }
/// regstack_testkit::store_contract!(fresh_sqlite_stores);
/// ```
///
/// For a backend that may be absent (PostgreSQL, MongoDB), give a factory
/// returning `Option<Stores>` and write
/// `regstack_testkit::store_contract!(optional: fresh_pg_stores);`. A `None`
/// prints a loud `SKIPPED` line per case, and fails the case when the
/// environment says `CI=true`: in CI a missing service is a failure, never
/// a skip (STYLE.md, Tests).
///
/// Each case runs on its own multi-thread runtime with 4 workers — what
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 4)]` builds —
/// so the concurrency cases really race. The runtime is built by this crate,
/// so the calling crate needs no `tokio` dependency of its own.
#[macro_export]
macro_rules! store_contract {
    (optional: $factory:path) => {
        $crate::__store_contract_cases!(optional $factory);
    };
    ($factory:path) => {
        $crate::__store_contract_cases!(required $factory);
    };
}

/// The list of contract cases, written once for both forms of
/// [`store_contract!`]. Every `pub async fn` in [`contract`] that takes
/// `Stores` must appear here, or no backend runs it.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_contract_cases {
    ($mode:ident $factory:path) => {
        $crate::__store_contract_tests!($mode $factory;
            // Users.
            insert_stores_every_field_and_lookups_find_it,
            email_uniqueness_is_enforced_on_insert,
            email_uniqueness_holds_under_20_parallel_inserts,
            timestamps_round_trip_exactly,
            unicode_addresses_round_trip_and_match_every_spelling,
            update_full_name_sets_and_clears,
            upgrade_password_hash_is_conditional,
            change_password_burns_outstanding_tokens_and_revokes_sessions,
            // Pending registrations.
            promote_creates_a_verified_user_and_removes_the_pending_row,
            promote_is_single_use_under_20_parallel_attempts,
            promote_reports_a_taken_address_and_removes_the_pending_row,
            expired_pending_registration_cannot_be_promoted,
            put_never_replaces_a_live_row_but_takes_the_place_of_an_expired_one,
            replace_token_gives_only_a_live_row_a_new_link,
            // One-time tokens.
            complete_password_reset_is_single_use_under_20_parallel_attempts,
            reset_revokes_sessions_and_moves_the_cutoff,
            a_newer_reset_token_supersedes_the_older,
            reset_token_is_not_an_email_change_token,
            expired_token_is_refused,
            confirm_email_change_switches_the_address_once_under_20_parallel_attempts,
            confirm_email_change_revokes_sessions_and_burns_other_tokens,
            confirm_email_change_reports_a_taken_address,
            revert_email_change_applies_once_under_20_parallel_attempts,
            revert_email_change_spares_earlier_links_and_kills_later_ones,
            // Lockout counter.
            admit_never_admits_more_than_the_threshold_under_20_parallel_attempts,
            admit_window_slides,
            locked_retry_at_is_when_the_oldest_attempt_leaves_the_window,
            clear_forgets_attempts,
            admit_on_a_device_bucket_never_admits_more_than_the_threshold_under_20_parallel_attempts,
            device_buckets_count_apart_from_the_address_bucket,
            forgetting_an_address_forgets_its_device_buckets,
            // Sessions.
            sessions_start_and_authenticate_in_one_lookup,
            a_session_starts_only_on_the_credential_epoch_it_checked,
            starts_racing_a_password_change_leave_no_session_of_the_old_credential,
            revoke_is_idempotent_and_reports_liveness,
            revoke_all_touches_only_that_users_live_sessions,
            // Refresh-token families.
            rotate_spends_the_token_and_makes_the_successor_live,
            rotate_with_20_parallel_presentations_yields_one_rotation_and_reports_it_to_the_rest,
            a_spent_token_misses_with_the_same_report_at_any_time,
            an_older_token_is_reported_against_the_family_as_it_now_stands,
            a_reused_family_is_revoked_once_among_20_racers,
            rotation_never_extends_the_absolute_lifetime,
            an_idle_session_cannot_rotate,
            revoked_sessions_refuse_rotation,
            list_shows_only_live_sessions_of_that_user_newest_first,
            revoke_owned_refuses_another_users_session,
            delete_account_removes_refresh_tokens_too,
            refresh_tokens_are_purged_with_their_session,
            // Administration.
            count_users_and_live_pending_registrations,
            list_users_pages_newest_first_in_one_stable_order,
            admin_update_changes_only_what_is_given,
            disabling_revokes_every_session_and_moves_the_epoch,
            disabling_racing_sign_ins_leaves_no_session,
            disabling_with_a_reason_and_an_end_round_trips_and_enabling_clears_them,
            reenable_expired_ends_timed_disablings_at_their_instant_exactly,
            reenable_expired_racing_a_new_disabling_never_overwrites_it,
            promote_email_creates_the_verified_account_once,
            promote_verifies_the_unverified_account_its_row_was_made_for,
            search_users_filters_by_address_part_and_flags,
            search_users_pages_by_cursor_while_accounts_are_added,
            // Account deletion.
            delete_account_removes_every_row_of_the_user,
            deletion_racing_sign_ins_and_link_issues_leaves_nothing,
            // Rate limits.
            rate_limit_hit_never_exceeds_the_limit_under_20_parallel_hits,
            rate_limit_window_slides_and_keys_are_independent,
            // Audit log.
            audit_entries_round_trip_and_append_is_idempotent,
            audit_query_filters_by_user_kind_and_time,
            audit_keyset_pages_neither_repeat_nor_skip_while_appending,
            audit_purge_removes_only_entries_older_than_the_instant,
            // Second factors.
            open_challenge_supersedes_only_the_users_challenge_of_that_kind,
            attempt_challenge_counts_down_to_exhaustion,
            a_challenge_is_dead_from_its_expiry_on,
            attempt_challenge_never_counts_more_than_attempts_left_under_20_parallel_attempts,
            finish_challenge_has_one_winner_among_20_parallel_callers,
            accept_totp_step_refuses_replays_and_earlier_steps,
            accept_totp_step_accepts_one_of_20_parallel_same_step_calls,
            backup_codes_are_single_use_under_20_parallel_spenders_and_per_user,
            factor_changes_keep_is_mfa_enabled_consistent_and_revoke_other_sessions,
            password_change_and_reset_clear_must_change_password,
            delete_account_removes_every_mfa_row,
            purge_expired_removes_only_dead_challenges,
            // OAuth flows and linked identities.
            begin_and_claim_round_trip_every_field_once,
            claim_with_another_provider_is_unknown_and_changes_nothing,
            a_flow_is_dead_from_its_expiry_on_and_claiming_it_deletes_it,
            claim_has_one_winner_among_20_parallel_callbacks,
            complete_needs_a_claimed_uncompleted_flow,
            redeem_hands_a_completed_flow_once_to_the_browser_that_began_it,
            redeem_past_the_completion_window_is_expired_then_unknown,
            redeem_has_one_winner_among_20_parallel_exchanges,
            identities_are_keyed_by_issuer_and_subject,
            link_identity_refuses_what_is_taken,
            create_user_with_identity_writes_both_or_neither,
            create_user_with_identity_has_one_winner_among_20_parallel_first_sign_ins,
            unlink_identity_never_removes_the_last_way_to_sign_in,
            concurrent_unlinks_of_the_last_two_identities_leave_one,
            touch_identity_stamps_last_used_at,
            identities_of_lists_the_oldest_link_first,
            purge_expired_removes_only_dead_oauth_flows,
            delete_account_removes_identities_and_link_flows,
            // Invitations.
            invite_is_single_use_under_20_parallel_redemptions,
            invite_expires_at_its_exact_microsecond,
            invite_bound_to_an_address_admits_only_that_address,
            revoked_invite_admits_nobody,
            released_invite_opens_again_for_one_more_redemption,
            invites_list_newest_first_and_purge_the_expired,
            // Housekeeping.
            purge_expired_removes_only_dead_rows,
            health_ping_and_schema,
            // Many writers at once, across aggregates.
            parallel_sign_ins_of_many_users_never_error,
            parallel_promotes_of_many_tokens_all_succeed,
            parallel_session_starts_for_one_user_all_succeed,
            parallel_email_changes_to_one_address_leave_exactly_one_owner,
            parallel_account_changes_of_one_user_never_fail,
            extreme_instants_round_trip_through_users_and_sessions,
        );
    };
}

/// Emits the test functions. `required` factories return `Stores`;
/// `optional` ones return `Option<Stores>`.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_contract_tests {
    (required $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::contract::run_case(async {
                    let stores: $crate::__private::Stores = $factory().await;
                    $crate::contract::$case(stores).await;
                });
            }
        )*
    };
    (optional $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::contract::run_case(async {
                    let stores: ::core::option::Option<$crate::__private::Stores> = $factory().await;
                    match stores {
                        ::core::option::Option::Some(stores) => $crate::contract::$case(stores).await,
                        ::core::option::Option::None => {
                            $crate::contract::skipped(stringify!($case), stringify!($factory))
                        }
                    }
                });
            }
        )*
    };
}

/// Paths the exported macros use, so they resolve from any crate.
#[doc(hidden)]
pub mod __private {
    pub use regstack_ports::Stores;
}
