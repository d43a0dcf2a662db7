//! Scenarios of the read side: account transfers and history, queries, point-in-time balances.

mod common;

use common::{account, transfer, NS_PER_S};
use fastledger_core::query::account_filter_flags::{CREDITS, DEBITS, REVERSED};
use fastledger_core::{
    account_flags, transfer_flags, AccountFilter, CreateTransferStatus as T, Engine, QueryFilter,
    Transfer, WideSum, AMOUNT_MAX, U128_MAX,
};

const START: u64 = 1_000 * NS_PER_S;

/// Accounts 1 (with history) and 2, then transfers 10, 11, 12 of 1, 2, 3 from 1 to 2, one per
/// batch, at START + 1, + 2 and + 3.
fn engine() -> Engine {
    let mut engine = Engine::new();
    engine.create_accounts(&[account(1, account_flags::HISTORY), account(2, 0)], START);
    for (i, id) in [10, 11, 12].into_iter().enumerate() {
        let results =
            engine.create_transfers(&[transfer(id, 1, 2, i as u128 + 1, 0)], START + 1 + i as u64);
        assert_eq!(results[0].0, T::Created);
    }
    engine
}

fn account_filter(account_id: u128, flags: u32) -> AccountFilter {
    AccountFilter { account_id, limit: 10, flags, ..AccountFilter::default() }
}

#[test]
fn account_transfers_come_by_timestamp_or_reversed_up_to_the_limit() {
    let mut engine = engine();
    let mut ids = |f: &AccountFilter| -> Vec<u128> {
        engine.get_account_transfers(f).iter().map(|t| t.id).collect()
    };
    assert_eq!(ids(&account_filter(1, DEBITS)), [10, 11, 12]);
    assert_eq!(ids(&account_filter(1, CREDITS)), [0u128; 0]);
    assert_eq!(ids(&AccountFilter { limit: 2, ..account_filter(2, CREDITS | REVERSED) }), [12, 11]);
    let window = AccountFilter {
        timestamp_min: START + 2,
        timestamp_max: START + 2,
        ..account_filter(1, DEBITS)
    };
    assert_eq!(ids(&window), [11]);
}

/// Posting links each transfer into its accounts' chains; a query gathers the chain into the
/// account's trail. Rolled-back chains, long ones too, and queries between batches must leave
/// each account with exactly its transfers, oldest first, and balances beside them.
#[test]
fn account_transfers_are_whole_across_batches_and_rolled_back_chains() {
    let mut engine = engine();
    engine.create_accounts(&[account(3, account_flags::HISTORY)], START + 10);
    let ids = |engine: &mut Engine, account_id: u128| -> Vec<u128> {
        let f = AccountFilter { limit: 100, ..account_filter(account_id, DEBITS | CREDITS) };
        engine.get_account_transfers(&f).iter().map(|t| t.id).collect()
    };
    assert_eq!(ids(&mut engine, 2), [10, 11, 12]);
    let linked = transfer_flags::LINKED;
    let mut expected_2 = vec![10, 11, 12];
    let mut expected_3 = vec![];
    let mut timestamp = START + 20;
    for round in 0..20u128 {
        let id = 100 + round * 10;
        let batch = [
            transfer(id, 2, 3, 5, 0),
            transfer(id + 1, 3, 2, 1, linked),
            transfer(id + 2, 3, 2, AMOUNT_MAX, 0), // Overflows 3's debits: breaks the chain.
            transfer(id + 3, 3, 2, 2, 0),
        ];
        timestamp += 10;
        let results = engine.create_transfers(&batch, timestamp);
        let statuses: Vec<T> = results.iter().map(|r| r.0).collect();
        let failed = [T::LinkedEventFailed, T::OverflowsDebitsPosted];
        assert_eq!(statuses, [&[T::Created][..], &failed, &[T::Created]].concat());
        expected_2.extend([id, id + 3]);
        expected_3.extend([id, id + 3]);
        if round % 3 == 0 {
            assert_eq!(ids(&mut engine, 2), expected_2);
        }
    }
    // A long chain, rolled back whole.
    let mut chain: Vec<Transfer> = (0..40).map(|i| transfer(1_000 + i, 2, 3, 1, linked)).collect();
    chain.push(transfer(2_000, 2, 3, AMOUNT_MAX, 0));
    let results = engine.create_transfers(&chain, timestamp + 100);
    assert!(results[..40].iter().all(|r| r.0 == T::LinkedEventFailed));
    assert_eq!(ids(&mut engine, 2), expected_2);
    assert_eq!(ids(&mut engine, 3), expected_3);
    assert_eq!(ids(&mut engine, 1), [10, 11, 12]);
    let f = AccountFilter { limit: 100, ..account_filter(3, DEBITS | CREDITS) };
    let balances = engine.get_account_balances(&f);
    let credits: Vec<u128> = balances.iter().map(|b| b.credits_posted).collect();
    let expected: Vec<u128> = (1..=20).flat_map(|round| [round * 5, round * 5]).collect();
    assert_eq!(credits, expected);
}

#[test]
fn invalid_account_filter_matches_nothing() {
    let mut engine = engine();
    for f in [
        account_filter(1, 0),
        account_filter(1, DEBITS | 1 << 3),
        AccountFilter { limit: 0, ..account_filter(1, DEBITS) },
        AccountFilter {
            timestamp_min: START + 3,
            timestamp_max: START + 2,
            ..account_filter(1, DEBITS)
        },
        account_filter(U128_MAX, DEBITS),
    ] {
        assert!(engine.get_account_transfers(&f).is_empty(), "{f:?}");
    }
}

#[test]
fn history_holds_the_balances_after_each_transfer_and_a_broken_chain_leaves_none() {
    let mut engine = engine();
    let linked = transfer(13, 1, 2, 4, transfer_flags::LINKED);
    let results = engine.create_transfers(&[linked, transfer(14, 1, 1, 1, 0)], START + 10);
    assert_eq!(results[0].0, T::LinkedEventFailed);
    let history = engine.get_account_balances(&account_filter(1, DEBITS));
    let posted: Vec<(u128, u64)> = history.iter().map(|b| (b.debits_posted, b.timestamp)).collect();
    assert_eq!(posted, [(1, START + 1), (3, START + 2), (6, START + 3)]);
    assert!(engine.get_account_balances(&account_filter(2, CREDITS)).is_empty(), "no HISTORY");
}

#[test]
fn queries_filter_by_secondary_fields() {
    let engine = engine();
    let f = QueryFilter { ledger: 1, limit: 2, flags: 1, ..QueryFilter::default() };
    let ids: Vec<u128> = engine.query_transfers(&f).iter().map(|t| t.id).collect();
    assert_eq!(ids, [12, 11]);
    let f = QueryFilter { code: 2, limit: 10, ..QueryFilter::default() };
    assert!(engine.query_accounts(&f).is_empty());
}

#[test]
fn balances_at_replays_the_log_up_to_a_timestamp() {
    let mut engine = engine();
    let pending = Transfer { timeout: 1, ..transfer(20, 2, 1, 5, transfer_flags::PENDING) };
    engine.create_transfers(&[pending], START + 20);
    let at = engine.balances_at(START + 2, None, 0);
    assert_eq!(at.account_ids, [1, 2]);
    assert_eq!(at.debits_posted, [3, 0]);
    let during = engine.balances_at(START + 20, Some(&[2]), 0);
    assert_eq!(
        (during.account_ids.as_slice(), during.debits_pending.as_slice()),
        (&[2][..], &[5][..])
    );
    let expired = engine.balances_at(START + 20 + NS_PER_S, Some(&[2]), 0);
    assert_eq!(expired.debits_pending, [0]);
    assert_eq!(expired.totals[3], WideSum { low: 6, high: 0 });
    assert!(engine.balances_at(START, None, 2).account_ids.is_empty(), "no account of ledger 2");
}

#[test]
fn balances_at_sums_past_u128() {
    let mut engine = Engine::new();
    engine.create_accounts(&[account(1, 0), account(2, 0), account(3, 0)], START);
    engine.create_transfers(
        &[transfer(10, 1, 2, U128_MAX, 0), transfer(11, 3, 1, U128_MAX, 0)],
        START + 2,
    );
    let at = engine.balances_at(START + 2, None, 0);
    assert_eq!(at.totals[1], WideSum { low: U128_MAX - 1, high: 1 });
}

#[test]
fn exported_state_imports_to_the_same_engine() {
    let mut engine = engine();
    let pending = Transfer { timeout: 1, ..transfer(20, 2, 1, 5, transfer_flags::PENDING) };
    engine.create_transfers(&[pending, transfer(21, 9, 1, 1, 0)], START + 20);
    let state = engine.export_state();
    let mut imported = Engine::import_state(&state).expect("a state that export_state made");
    assert_eq!(imported.export_state(), state);
    let history = imported.get_account_balances(&account_filter(1, DEBITS | CREDITS));
    assert_eq!(history.len(), 4);
    assert_eq!(imported.expire_pending_transfers(START + 20 + NS_PER_S), 1, "the heap is rebuilt");
    let retry = imported.create_transfers(&[transfer(21, 2, 1, 1, 0)], START + 30);
    assert_eq!(retry[0].0, T::IdAlreadyFailed);
}

#[test]
fn a_state_that_does_not_hang_together_is_refused() {
    let state = engine().export_state();
    let message = |bytes: &[u8]| Engine::import_state(bytes).map(|_| ()).unwrap_err().0;
    assert_eq!(message(&state[..10]), "the engine state is shorter than its header");
    assert!(message(&state[..state.len() - 1]).starts_with("the engine state holds"));
    let mut wrong = state.clone();
    wrong[0] = b'X';
    assert_eq!(message(&wrong), "not an engine state of format 1");
}

#[test]
fn balances_at_answers_each_account_once_in_the_order_first_asked() {
    let at = engine().balances_at(START + 3, Some(&[2, 1, 2, 1]), 0);
    assert_eq!(at.account_ids, [2, 1]);
    assert_eq!(at.debits_posted, [0, 6]);
    assert_eq!(at.credits_posted, [6, 0]);
}

#[test]
fn a_pending_status_outside_1_to_4_is_refused() {
    let mut engine = engine();
    let pending = Transfer { timeout: 1, ..transfer(20, 2, 1, 5, transfer_flags::PENDING) };
    engine.create_transfers(&[pending], START + 20);
    let mut state = engine.export_state();
    // The status follows the header, two accounts and four transfers.
    let at = 64 + 6 * 128;
    assert_eq!(state[at], 1);
    state[at] = 5;
    let message = Engine::import_state(&state).map(|_| ()).unwrap_err().0;
    assert_eq!(message, "pending transfer 20 has status 5");
}

#[test]
fn balances_at_takes_back_a_pending_amount_once_it_is_resolved_or_expired() {
    let mut engine = Engine::new();
    engine.create_accounts(&[account(1, 0), account(2, 0)], START);
    let pending =
        |id, amount| Transfer { timeout: 1, ..transfer(id, 1, 2, amount, transfer_flags::PENDING) };
    // AMOUNT_MAX posts the whole pending amount; a void of 0 voids it all.
    let resolve = |id, pending_id, flags| {
        let amount = if flags == transfer_flags::POST_PENDING_TRANSFER { AMOUNT_MAX } else { 0 };
        Transfer { id, pending_id, amount, flags, ..Transfer::default() }
    };
    engine.create_transfers(&[pending(10, 5), pending(11, 7), pending(12, 11)], START + 3);
    let post = transfer_flags::POST_PENDING_TRANSFER;
    let void = transfer_flags::VOID_PENDING_TRANSFER;
    engine.create_transfers(&[resolve(20, 10, post), resolve(21, 11, void)], START + 5);
    let debits = |at: u64| {
        let b = engine.balances_at(at, Some(&[1]), 0);
        (b.debits_pending[0], b.debits_posted[0])
    };
    assert_eq!(debits(START + 3), (23, 0), "all three pending");
    assert_eq!(debits(START + 4), (18, 5), "10 posted");
    assert_eq!(debits(START + 5), (11, 5), "11 voided");
    assert_eq!(debits(START + 3 + NS_PER_S), (0, 5), "12 expired, 10 posted before");
}
