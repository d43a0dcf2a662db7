//! Scenarios of the state machine, one per rule, read as a specification. Each drives the engine
//! as the Python facade does: every batch gets fresh, strictly increasing timestamps. The engine
//! itself expires pending transfers up to a batch's first timestamp before it runs.

mod common;

use common::{account, pending, post, transfer, void, NS_PER_S};
use fastledger_core::{
    account_flags, transfer_flags, Account, CreateAccountStatus as A, CreateTransferStatus as T,
    Engine, Transfer, TransferRecord, AMOUNT_MAX, RECORD_SIZE, U128_MAX,
};

/// An engine with a clock that the scenario moves by hand, in nanoseconds.
struct Ledger {
    engine: Engine,
    now_ns: u64,
    last_timestamp: u64,
}

impl Ledger {
    fn new() -> Self {
        Self { engine: Engine::new(), now_ns: 1_000 * NS_PER_S, last_timestamp: 0 }
    }

    /// The timestamp of a batch's last event, as the facade gives it.
    fn batch_timestamp(&mut self, count: usize) -> u64 {
        let timestamp = self.now_ns.max(self.last_timestamp + count as u64);
        self.last_timestamp = timestamp;
        timestamp
    }

    fn create_accounts(&mut self, accounts: &[Account]) -> Vec<A> {
        let timestamp = self.batch_timestamp(accounts.len());
        let results = self.engine.create_accounts(accounts, timestamp);
        results.into_iter().map(|(status, _)| status).collect()
    }

    fn create_transfers(&mut self, transfers: &[Transfer]) -> Vec<T> {
        self.create_transfers_at(transfers).into_iter().map(|(s, _)| s).collect()
    }

    fn create_transfers_at(&mut self, transfers: &[Transfer]) -> Vec<(T, u64)> {
        let timestamp = self.batch_timestamp(transfers.len());
        self.engine.create_transfers(transfers, timestamp)
    }

    fn open(&mut self, accounts: &[Account]) {
        assert!(self.create_accounts(accounts).iter().all(|s| *s == A::Created));
    }

    fn apply(&mut self, transfers: &[Transfer]) {
        let statuses = self.create_transfers(transfers);
        assert!(statuses.iter().all(|s| *s == T::Created), "{statuses:?}");
    }

    fn account(&self, id: u128) -> Account {
        let found = self.engine.lookup_accounts(&[id]);
        assert_eq!(found.len(), 1, "account {id} exists");
        found[0]
    }

    /// (debits_pending, debits_posted, credits_pending, credits_posted)
    fn balances(&self, id: u128) -> (u128, u128, u128, u128) {
        let a = self.account(id);
        (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
    }

    fn advance_s(&mut self, seconds: u64) {
        self.now_ns += seconds * NS_PER_S;
    }
}

/// A ledger with accounts 1 and 2 (no limits) and 3 (debits must not exceed credits).
fn ledger() -> Ledger {
    let mut ledger = Ledger::new();
    ledger.open(&[
        account(1, 0),
        account(2, 0),
        account(3, account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS),
    ]);
    ledger
}

#[test]
fn created_moves_the_amount_and_stores_the_transfer() {
    let mut ledger = ledger();
    let results = ledger.create_transfers_at(&[transfer(10, 1, 2, 7, 0)]);
    assert_eq!(results[0].0, T::Created);
    assert_eq!(ledger.balances(1), (0, 7, 0, 0));
    assert_eq!(ledger.balances(2), (0, 0, 0, 7));
    let stored = ledger.engine.lookup_transfers(&[10, 99]);
    assert_eq!(stored.len(), 1, "missing ids are left out");
    assert_eq!(stored[0].timestamp, results[0].1);
}

#[test]
fn exists_returns_the_original_timestamp_and_changes_nothing() {
    let mut ledger = ledger();
    let first = ledger.create_transfers_at(&[transfer(10, 1, 2, 7, 0)]);
    let again = ledger.create_transfers_at(&[transfer(10, 1, 2, 7, 0)]);
    assert_eq!(again, vec![(T::Exists, first[0].1)]);
    let different = ledger.create_transfers(&[transfer(10, 1, 2, 8, 0)]);
    assert_eq!(different, [T::ExistsWithDifferentAmount]);
    assert_eq!(ledger.balances(1), (0, 7, 0, 0));
}

#[test]
fn exists_with_different_flags_precedes_every_other_difference() {
    let mut ledger = ledger();
    ledger.apply(&[transfer(10, 1, 2, 7, 0)]);
    let retry = transfer(10, 2, 1, 8, transfer_flags::PENDING);
    assert_eq!(ledger.create_transfers(&[retry]), [T::ExistsWithDifferentFlags]);
}

#[test]
fn exceeds_credits_then_the_id_has_already_failed() {
    let mut ledger = ledger();
    assert_eq!(ledger.create_transfers(&[transfer(10, 3, 1, 5, 0)]), [T::ExceedsCredits]);
    ledger.apply(&[transfer(11, 1, 3, 5, 0)]);
    // Account 3 could now pay, but the id burned on a transient failure.
    assert_eq!(ledger.create_transfers(&[transfer(10, 3, 1, 5, 0)]), [T::IdAlreadyFailed]);
    ledger.apply(&[transfer(12, 3, 1, 5, 0)]);
    assert_eq!(ledger.balances(3), (0, 5, 0, 5));
}

#[test]
fn debit_account_not_found_burns_the_id_but_a_validation_failure_does_not() {
    let mut ledger = ledger();
    let statuses = ledger.create_transfers(&[transfer(10, 9, 1, 5, 0), transfer(11, 1, 1, 5, 0)]);
    assert_eq!(statuses, [T::DebitAccountNotFound, T::AccountsMustBeDifferent]);
    let retries = ledger.create_transfers(&[transfer(10, 2, 1, 5, 0), transfer(11, 2, 1, 5, 0)]);
    assert_eq!(retries, [T::IdAlreadyFailed, T::Created]);
}

#[test]
fn linked_chain_fails_as_a_whole_and_is_rolled_back() {
    let mut ledger = ledger();
    let linked = transfer_flags::LINKED;
    let statuses = ledger.create_transfers(&[
        transfer(10, 1, 2, 5, linked),
        transfer(11, 2, 1, 3, linked),
        transfer(12, 3, 1, 1, 0),
        transfer(13, 1, 2, 4, 0),
    ]);
    assert_eq!(
        statuses,
        [T::LinkedEventFailed, T::LinkedEventFailed, T::ExceedsCredits, T::Created,]
    );
    assert_eq!(ledger.balances(1), (0, 4, 0, 0), "only the unlinked transfer moved");
    assert!(ledger.engine.lookup_transfers(&[10, 11, 12]).is_empty());
    // Rolled-back ids were never burnt: only the event that failed transiently was.
    let retries = ledger.create_transfers(&[transfer(10, 1, 2, 5, 0), transfer(12, 1, 3, 1, 0)]);
    assert_eq!(retries, [T::Created, T::IdAlreadyFailed]);
}

#[test]
fn linked_event_after_a_broken_link_fails_without_running() {
    let mut ledger = ledger();
    let linked = transfer_flags::LINKED;
    let statuses =
        ledger.create_transfers(&[transfer(10, 1, 1, 5, linked), transfer(11, 9, 1, 5, 0)]);
    assert_eq!(statuses, [T::AccountsMustBeDifferent, T::LinkedEventFailed]);
    // The second event never ran, so account 9 was never looked up and id 11 is not burnt.
    ledger.open(&[account(9, 0)]);
    ledger.apply(&[transfer(11, 9, 1, 5, 0)]);
}

#[test]
fn linked_chain_open_at_the_batch_end_fails_every_event_of_the_chain() {
    let mut ledger = ledger();
    let linked = transfer_flags::LINKED;
    let statuses = ledger.create_transfers(&[
        transfer(10, 1, 2, 5, 0),
        transfer(11, 1, 2, 5, linked),
        transfer(12, 1, 2, 5, linked),
    ]);
    assert_eq!(statuses, [T::Created, T::LinkedEventFailed, T::LinkedEventChainOpen]);
    assert_eq!(ledger.balances(1), (0, 5, 0, 0));
}

#[test]
fn linked_accounts_are_rolled_back_together() {
    let mut ledger = Ledger::new();
    let linked = account_flags::LINKED;
    let statuses =
        ledger.create_accounts(&[account(1, linked), Account { code: 0, ..account(2, 0) }]);
    assert_eq!(statuses, [A::LinkedEventFailed, A::CodeMustNotBeZero]);
    assert!(ledger.engine.lookup_accounts(&[1, 2]).is_empty());
    ledger.open(&[account(1, 0)]);
}

#[test]
fn pending_then_partial_post_releases_the_rest() {
    let mut ledger = ledger();
    ledger.apply(&[pending(10, 1, 2, 10, 0)]);
    assert_eq!(ledger.balances(1), (10, 0, 0, 0));
    ledger.apply(&[post(11, 10, 4)]);
    assert_eq!(ledger.balances(1), (0, 4, 0, 0));
    assert_eq!(ledger.balances(2), (0, 0, 0, 4));
    let stored = ledger.engine.lookup_transfers(&[11])[0];
    assert_eq!((stored.debit_account_id, stored.ledger), (1, 1), "inherited");
    let again = ledger.create_transfers(&[void(12, 10)]);
    assert_eq!(again, [T::PendingTransferAlreadyPosted]);
}

#[test]
fn post_of_amount_max_posts_the_whole_pending_amount() {
    let mut ledger = ledger();
    ledger.apply(&[pending(10, 1, 2, 10, 0), post(11, 10, AMOUNT_MAX)]);
    assert_eq!(ledger.balances(2), (0, 0, 0, 10));
    let over = ledger.create_transfers(&[pending(12, 1, 2, 3, 0), post(13, 12, 4)]);
    assert_eq!(over, [T::Created, T::ExceedsPendingTransferAmount]);
}

#[test]
fn void_releases_the_reservation() {
    let mut ledger = ledger();
    ledger.apply(&[pending(10, 1, 2, 10, 0), void(11, 10)]);
    assert_eq!(ledger.balances(1), (0, 0, 0, 0));
    assert_eq!(ledger.create_transfers(&[post(12, 10, 1)]), [T::PendingTransferAlreadyVoided]);
}

#[test]
fn pending_transfer_expires_after_its_timeout() {
    let mut ledger = ledger();
    let results = ledger.create_transfers_at(&[pending(10, 1, 2, 10, 2), pending(11, 1, 2, 5, 0)]);
    let expires_at = results[0].1 + 2 * NS_PER_S;
    assert_eq!(ledger.engine.expire_pending_transfers(expires_at - 1), 0);
    assert_eq!(ledger.engine.expire_pending_transfers(expires_at), 1);
    ledger.now_ns = expires_at;
    assert_eq!(ledger.balances(1), (5, 0, 0, 0), "a pending transfer without timeout stays");
    assert_eq!(ledger.create_transfers(&[post(12, 10, 1)]), [T::PendingTransferExpired]);
    assert_eq!(ledger.engine.expire_pending_transfers(u64::MAX >> 1), 0, "it expires once");
}

#[test]
fn a_batch_of_transfers_first_releases_what_expired_by_its_first_timestamp() {
    let mut ledger = ledger();
    let results = ledger.create_transfers_at(&[pending(10, 1, 2, 10, 2)]);
    let expires_at = results[0].1 + 2 * NS_PER_S;
    assert!(!ledger.engine.expiry_due(expires_at - 1));
    assert!(ledger.engine.expiry_due(expires_at), "due at its expiry, not after");
    // A batch of two whose first event takes the very time of the expiry.
    ledger.now_ns = expires_at + 1;
    let batch = [transfer(11, 1, 2, 1, 0), post(12, 10, 1)];
    assert_eq!(ledger.create_transfers(&batch), [T::Created, T::PendingTransferExpired]);
    assert!(!ledger.engine.expiry_due(u64::MAX >> 1), "nothing is left to expire");
    assert_eq!(ledger.balances(1), (0, 1, 0, 0));
}

#[test]
fn rolled_back_pending_transfer_never_expires() {
    let mut ledger = ledger();
    let linked = transfer_flags::LINKED;
    let statuses = ledger.create_transfers(&[
        Transfer { flags: transfer_flags::PENDING | linked, ..pending(10, 1, 2, 10, 1) },
        transfer(11, 3, 1, 1, 0),
    ]);
    assert_eq!(statuses, [T::LinkedEventFailed, T::ExceedsCredits]);
    ledger.apply(&[pending(10, 1, 2, 7, 0)]);
    ledger.advance_s(5);
    assert_eq!(ledger.engine.expire_pending_transfers(ledger.now_ns), 0);
    assert_eq!(ledger.balances(1), (7, 0, 0, 0));
}

#[test]
fn balancing_debit_clamps_the_amount_to_the_available_credits() {
    let mut ledger = ledger();
    ledger.apply(&[transfer(10, 1, 3, 10, 0), pending(11, 3, 1, 3, 0)]);
    let balancing = transfer(12, 3, 2, 100, transfer_flags::BALANCING_DEBIT);
    ledger.apply(&[balancing]);
    assert_eq!(ledger.engine.lookup_transfers(&[12])[0].amount, 7);
    assert_eq!(ledger.balances(3), (3, 7, 0, 10));
    // Nothing is left: the clamp gives 0, which is still a created transfer.
    ledger.apply(&[transfer(13, 3, 2, 100, transfer_flags::BALANCING_DEBIT)]);
    assert_eq!(ledger.engine.lookup_transfers(&[13])[0].amount, 0);
    // A retry whose limit still covers the amount moved is the same transfer.
    assert_eq!(ledger.create_transfers(&[balancing]), [T::Exists]);
}

#[test]
fn closing_transfer_closes_and_its_void_reopens() {
    let mut ledger = ledger();
    let closing = pending(10, 1, 2, 0, 0);
    let closing = Transfer { flags: closing.flags | transfer_flags::CLOSING_DEBIT, ..closing };
    ledger.apply(&[closing]);
    assert_ne!(ledger.account(1).flags & account_flags::CLOSED, 0);
    let moved = ledger.create_transfers(&[transfer(11, 1, 2, 1, 0), transfer(12, 2, 1, 1, 0)]);
    assert_eq!(moved, [T::DebitAccountAlreadyClosed, T::CreditAccountAlreadyClosed]);
    ledger.apply(&[void(13, 10)]);
    assert_eq!(ledger.account(1).flags & account_flags::CLOSED, 0);
    ledger.apply(&[transfer(14, 1, 2, 1, 0)]);
}

#[test]
fn closing_transfer_must_be_pending() {
    let mut ledger = ledger();
    let closing = transfer(10, 1, 2, 0, transfer_flags::CLOSING_CREDIT);
    assert_eq!(ledger.create_transfers(&[closing]), [T::ClosingTransferMustBePending]);
}

#[test]
fn imported_transfer_must_not_regress() {
    let mut ledger = ledger();
    let first = ledger.create_transfers_at(&[transfer(10, 1, 2, 1, 0)]);
    let imported =
        |id, timestamp| Transfer { timestamp, ..transfer(id, 1, 2, 1, transfer_flags::IMPORTED) };
    let at = first[0].1;
    let statuses = ledger.create_transfers(&[imported(11, at), imported(12, at + 1)]);
    assert_eq!(statuses, [T::ImportedEventTimestampMustNotRegress, T::Created]);
    let results = ledger.create_transfers_at(&[imported(13, at + 2)]);
    assert_eq!(results, [(T::Created, at + 2)], "an imported event keeps its timestamp");
    let mixed = ledger.create_transfers(&[imported(14, at + 3), transfer(15, 1, 2, 1, 0)]);
    assert_eq!(mixed, [T::Created, T::ImportedEventExpected]);
}

#[test]
fn imported_account_must_not_reuse_a_transfer_timestamp() {
    let mut ledger = ledger();
    let first = ledger.create_transfers_at(&[transfer(10, 1, 2, 1, 0)]);
    let imported = Account { timestamp: first[0].1, ..account(7, account_flags::IMPORTED) };
    assert_eq!(ledger.create_accounts(&[imported]), [A::ImportedEventTimestampMustNotRegress]);
}

#[test]
fn overflows_near_u128_max_are_statuses() {
    let mut ledger = ledger();
    ledger.apply(&[transfer(10, 1, 2, U128_MAX - 1, 0)]);
    let statuses = ledger.create_transfers(&[
        transfer(11, 1, 2, 2, 0),
        pending(12, 1, 2, 1, 0),
        transfer(13, 1, 2, 1, 0),
        pending(14, 2, 1, U128_MAX, 0),
        pending(15, 2, 1, 1, 0),
        transfer(16, 2, 1, 1, 0),
    ]);
    assert_eq!(
        statuses,
        [
            T::OverflowsDebitsPosted,
            T::Created,
            T::OverflowsDebits,
            T::Created,
            T::OverflowsDebitsPending,
            T::OverflowsDebits,
        ]
    );
    assert_eq!(ledger.balances(1), (1, U128_MAX - 1, U128_MAX, 0));
    assert_eq!(ledger.balances(2), (U128_MAX, 0, 1, U128_MAX - 1));
}

#[test]
fn overflows_timeout_past_the_last_timestamp() {
    let mut ledger = ledger();
    ledger.now_ns = (1 << 63) - 2 * NS_PER_S;
    assert_eq!(ledger.create_transfers(&[pending(10, 1, 2, 1, 3)]), [T::OverflowsTimeout]);
    ledger.apply(&[pending(11, 1, 2, 1, 1)]);
}

#[test]
fn account_statuses_follow_precedence() {
    let mut ledger = Ledger::new();
    let both = account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS
        | account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS;
    let statuses = ledger.create_accounts(&[
        Account { reserved: 1, flags: 1 << 15, ..account(0, 0) },
        Account { flags: 1 << 15, ..account(0, 0) },
        account(0, 0),
        Account { ledger: 0, ..account(1, both) },
        account(2, 0),
        Account { code: 2, ..account(2, 0) },
    ]);
    assert_eq!(
        statuses,
        [
            A::ReservedField,
            A::ReservedFlag,
            A::IdMustNotBeZero,
            A::FlagsAreMutuallyExclusive,
            A::Created,
            A::ExistsWithDifferentCode,
        ]
    );
}

#[test]
fn a_rolled_back_pending_transfer_never_expires_its_reimported_id() {
    let mut ledger = ledger();
    let chained = Transfer {
        flags: transfer_flags::PENDING | transfer_flags::LINKED,
        ..pending(5, 1, 2, 7, 1)
    };
    let rolled_back = ledger.create_transfers_at(&[chained, transfer(6, 1, 1, 1, 0)]);
    assert_eq!(rolled_back[0].0, T::LinkedEventFailed);
    ledger.advance_s(1);
    let reimported = Transfer {
        timestamp: rolled_back[0].1,
        ..transfer(5, 1, 2, 7, transfer_flags::PENDING | transfer_flags::IMPORTED)
    };
    ledger.apply(&[reimported]);
    ledger.advance_s(5);
    ledger.create_accounts(&[account(4, 0)]);
    ledger.engine.expire_pending_transfers(ledger.last_timestamp);
    assert_eq!(ledger.balances(1), (7, 0, 0, 0));
}

#[test]
fn a_packed_batch_read_in_place_gives_the_results_and_state_of_the_same_transfers() {
    let linked = transfer_flags::LINKED;
    let batches = [
        vec![
            transfer(10, 1, 2, 5, 0),
            pending(11, 1, 3, 7, 0),
            post(12, 11, AMOUNT_MAX),
            transfer(10, 1, 2, 5, 0),
            transfer(13, 1, 2, 1, linked),
            transfer(14, 3, 1, 1_000, 0),
            transfer(15, 9, 2, 1, 0),
            transfer(0, 1, 2, 1, 0),
        ],
        vec![pending(20, 2, 1, 3, 1), void(21, 11), post(22, 20, 2), transfer(15, 1, 2, 1, 0)],
    ];
    let (mut objects, mut packed) = (ledger(), ledger());
    for batch in &batches {
        let expected = objects.create_transfers_at(batch);
        let bytes: Vec<u8> = batch.iter().flat_map(|t| t.to_bytes()).collect();
        let records = TransferRecord::records_of(&bytes).expect("whole records");
        let timestamp = packed.batch_timestamp(records.len());
        let got = packed.engine.create_transfers_packed(records, timestamp);
        assert_eq!(got, expected);
    }
    assert_eq!(packed.engine.export_state(), objects.engine.export_state());
    assert!(TransferRecord::records_of(&[0; RECORD_SIZE + 1]).is_none());
}

#[test]
fn a_large_batch_finds_its_accounts_ahead_as_single_transfers_find_them() {
    // Past its first events, a batch creates each transfer with the accounts its look-ahead
    // found: missing, on either side, or present. One transfer a batch never looks ahead.
    let accounts: Vec<Account> = (1..=6).map(|id| account(id, 0)).collect();
    let transfers: Vec<Transfer> = (0..64u128)
        .map(|i| match i % 8 {
            0 => transfer(100 + i, 90 + i, 1, 1, 0),
            1 => transfer(100 + i, 2, 90 + i, 1, 0),
            2 => pending(100 + i, 1 + i % 6, 1 + (i + 1) % 6, 5, 0),
            3 => post(100 + i, 100 + i - 1, 2),
            4 => void(100 + i, 100 + i - 2),
            _ => transfer(100 + i, 1 + i % 6, 1 + (i + 3) % 6, i, 0),
        })
        .collect();
    let (mut batched, mut single) = (Ledger::new(), Ledger::new());
    batched.open(&accounts);
    single.open(&accounts);
    let statuses = batched.create_transfers(&transfers);
    let one_by_one: Vec<T> =
        transfers.iter().flat_map(|t| single.create_transfers(&[*t])).collect();
    assert_eq!(statuses, one_by_one);
    for expected in [T::Created, T::DebitAccountNotFound, T::CreditAccountNotFound] {
        assert!(statuses[8..].contains(&expected), "{expected:?} among the looked-ahead");
    }
    for id in 1..=6 {
        assert_eq!(batched.balances(id), single.balances(id), "account {id}");
    }
}
