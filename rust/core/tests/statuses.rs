//! Executable precedence, in TigerBeetle's style, the twin of `tests/test_precedence.py`: one
//! row per status, in the order of its enum, with the smallest change of a valid event that
//! earns it; and for each two adjacent statuses, an event with both changes, which must earn
//! the earlier one. Every row runs on a fresh copy of one world (`open_world`).

mod common;

use common::{account, transfer};
use fastledger_core::{
    account_flags as af, transfer_flags as tf, Account, CreateAccountStatus as A,
    CreateTransferStatus as T, Engine, Transfer, U128_MAX,
};

/// The world is made early on; each row's batch is stamped late enough for a timeout of
/// `u32::MAX` seconds to overflow the last timestamp (`OverflowsTimeout`).
const WORLD_NS: u64 = 1_000_000_000_000;
const EVENT_NS: u64 = 5_000_000_000_000_000_000;
const LATE_ACCOUNT_NS: u64 = WORLD_NS + 1_000;
/// The id of the event under test, which the world does not hold.
const NEW: u128 = 1000;
const HALF: u128 = 1 << 127;

/// An engine holding what the rows refer to: accounts 1 and 2 (plain), 3 (debits must not
/// exceed credits), 4 (credits must not exceed debits), 5 (ledger 2), 6 and 13 (closed), 7 to 12
/// (balances on the brink of overflow), then 14 and 15, made after every transfer; transfers
/// 100 (pending), 101 (pending, posted by 111), 102 (pending, voided by 112 before its timeout
/// passed), 103 (pending, expired by the rows' time), 104 (not pending) and 200 (the valid
/// transfer but for its id); transfer id 300, spent by a transient failure.
fn open_world() -> Engine {
    let mut engine = Engine::new();
    let mut accounts: Vec<Account> = [1, 2, 7, 8, 9, 10, 11, 12].map(|id| account(id, 0)).into();
    accounts.extend([
        account(3, af::DEBITS_MUST_NOT_EXCEED_CREDITS),
        account(4, af::CREDITS_MUST_NOT_EXCEED_DEBITS),
        Account { ledger: 2, ..account(5, 0) },
        account(6, af::CLOSED),
        account(13, af::CLOSED),
    ]);
    engine.create_accounts(&accounts, WORLD_NS);
    let pending = |id, timeout| Transfer { timeout, ..transfer(id, 1, 2, 10, tf::PENDING) };
    let first = [
        pending(100, 0),
        pending(101, 0),
        pending(102, 1),
        pending(103, 1),
        transfer(104, 1, 2, 10, 0),
        transfer(200, 1, 2, 1, 0),
        transfer(300, 99, 2, 1, 0),
        transfer(105, 7, 8, U128_MAX, tf::PENDING),
        transfer(106, 9, 10, U128_MAX, 0),
        transfer(107, 11, 12, HALF, tf::PENDING),
        transfer(108, 11, 12, HALF - 1, 0),
    ];
    let resolve = |id, pending_id, flags| Transfer { id, pending_id, flags, ..Transfer::default() };
    let then = [
        resolve(111, 101, tf::POST_PENDING_TRANSFER),
        resolve(112, 102, tf::VOID_PENDING_TRANSFER),
    ];
    engine.create_transfers(&first, WORLD_NS + 100);
    engine.create_transfers(&then, WORLD_NS + 200);
    engine.create_accounts(&[account(14, 0), account(15, 0)], LATE_ACCOUNT_NS);
    engine
}

/// A field of an event that a row sets; flags are OR-ed into the event's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Id,
    DebitAccountId,
    CreditAccountId,
    Amount,
    PendingId,
    UserData128,
    UserData64,
    UserData32,
    Timeout,
    Reserved,
    Ledger,
    Code,
    Flags,
    Timestamp,
    DebitsPending,
    DebitsPosted,
    CreditsPending,
    CreditsPosted,
}

use Field::*;

type Change = Vec<(Field, u128)>;

/// Where the event under test sits in its batch, when that decides its status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Place {
    /// The event before it: an imported one, one that is not, or none.
    after: Option<Before>,
    linked: bool,
    /// Whether it is the last event of its batch, or a failing event follows it.
    last: bool,
    before_a_failure: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Before {
    Imported,
    Plain,
}

const ALONE: Place = Place { after: None, linked: false, last: false, before_a_failure: false };
const LINKED_BEFORE_A_FAILURE: Place = Place { linked: true, before_a_failure: true, ..ALONE };
const LINKED_LAST: Place = Place { linked: true, last: true, ..ALONE };
const AFTER_AN_IMPORTED_EVENT: Place = Place { after: Some(Before::Imported), ..ALONE };
const AFTER_A_PLAIN_EVENT: Place = Place { after: Some(Before::Plain), ..ALONE };

#[derive(Clone, Debug)]
struct Row<S> {
    status: S,
    change: Change,
    place: Place,
}

fn row<S>(status: S, change: &[(Field, u128)]) -> Row<S> {
    Row { status, change: change.to_vec(), place: ALONE }
}

fn placed<S>(status: S, change: &[(Field, u128)], place: Place) -> Row<S> {
    Row { status, change: change.to_vec(), place }
}

/// What differs between the rows of accounts and those of transfers.
trait Kind {
    type Status: Copy + Eq + std::fmt::Debug + 'static;
    type Event: Copy;
    const ALL: &'static [Self::Status];
    const LINKED_EVENT_CHAIN_OPEN: Self::Status;
    fn rows() -> Vec<Row<Self::Status>>;
    fn not_together() -> Vec<(Self::Status, Self::Status)>;
    fn together() -> Vec<Row<Self::Status>>;
    fn valid() -> Self::Event;
    fn failing() -> Self::Event;
    fn imported() -> Self::Event;
    fn set(event: &mut Self::Event, field: Field, value: u128);
    fn flags(event: &Self::Event) -> u16;
    fn create(engine: &mut Engine, batch: &[Self::Event]) -> Vec<Self::Status>;
}

struct Accounts;
struct Transfers;

impl Kind for Accounts {
    type Status = A;
    type Event = Account;
    const ALL: &'static [A] = A::ALL;
    const LINKED_EVENT_CHAIN_OPEN: A = A::LinkedEventChainOpen;

    fn rows() -> Vec<Row<A>> {
        let imported = af::IMPORTED as u128;
        let limits =
            (af::DEBITS_MUST_NOT_EXCEED_CREDITS | af::CREDITS_MUST_NOT_EXCEED_DEBITS) as u128;
        vec![
            row(A::Created, &[]),
            placed(A::LinkedEventFailed, &[], LINKED_BEFORE_A_FAILURE),
            placed(A::LinkedEventChainOpen, &[], LINKED_LAST),
            placed(A::ImportedEventExpected, &[], AFTER_AN_IMPORTED_EVENT),
            placed(
                A::ImportedEventNotExpected,
                &[(Flags, imported), (Timestamp, (EVENT_NS - 50).into())],
                AFTER_A_PLAIN_EVENT,
            ),
            row(A::TimestampMustBeZero, &[(Timestamp, 1)]),
            row(A::ImportedEventTimestampOutOfRange, &[(Flags, imported), (Timestamp, 0)]),
            row(
                A::ImportedEventTimestampMustNotAdvance,
                &[(Flags, imported), (Timestamp, EVENT_NS.into())],
            ),
            row(A::ReservedField, &[(Reserved, 1)]),
            row(A::ReservedFlag, &[(Flags, 1 << 15)]),
            row(A::IdMustNotBeZero, &[(Id, 0)]),
            row(A::IdMustNotBeIntMax, &[(Id, U128_MAX)]),
            row(A::ExistsWithDifferentFlags, &[(Id, 1), (Flags, af::HISTORY.into())]),
            row(A::ExistsWithDifferentUserData128, &[(Id, 1), (UserData128, 1)]),
            row(A::ExistsWithDifferentUserData64, &[(Id, 1), (UserData64, 1)]),
            row(A::ExistsWithDifferentUserData32, &[(Id, 1), (UserData32, 1)]),
            row(A::ExistsWithDifferentLedger, &[(Id, 1), (Ledger, 2)]),
            row(A::ExistsWithDifferentCode, &[(Id, 1), (Code, 2)]),
            row(A::Exists, &[(Id, 1)]),
            row(A::FlagsAreMutuallyExclusive, &[(Flags, limits)]),
            row(A::DebitsPendingMustBeZero, &[(DebitsPending, 1)]),
            row(A::DebitsPostedMustBeZero, &[(DebitsPosted, 1)]),
            row(A::CreditsPendingMustBeZero, &[(CreditsPending, 1)]),
            row(A::CreditsPostedMustBeZero, &[(CreditsPosted, 1)]),
            row(A::LedgerMustNotBeZero, &[(Ledger, 0)]),
            row(A::CodeMustNotBeZero, &[(Code, 0)]),
            row(A::ImportedEventTimestampMustNotRegress, &[(Flags, imported), (Timestamp, 1)]),
        ]
    }

    /// The adjacent pairs that no event earns together; `tests/test_precedence.py` says why.
    fn not_together() -> Vec<(A, A)> {
        vec![
            (A::LinkedEventFailed, A::LinkedEventChainOpen),
            (A::ImportedEventExpected, A::ImportedEventNotExpected),
            (A::ImportedEventNotExpected, A::TimestampMustBeZero),
            (A::TimestampMustBeZero, A::ImportedEventTimestampOutOfRange),
            (A::IdMustNotBeZero, A::IdMustNotBeIntMax),
            (A::IdMustNotBeIntMax, A::ExistsWithDifferentFlags),
            (A::Exists, A::FlagsAreMutuallyExclusive),
        ]
    }

    /// The adjacent pairs whose changes each set one field, where one value earns both: the row
    /// of the earlier status, which the one after it follows.
    fn together() -> Vec<Row<A>> {
        let imported = af::IMPORTED as u128;
        // A timestamp past the last is also at or after the batch's.
        vec![row(A::ImportedEventTimestampOutOfRange, &[(Flags, imported), (Timestamp, 1 << 63)])]
    }

    fn valid() -> Account {
        account(NEW, 0)
    }

    fn failing() -> Account {
        account(0, 0)
    }

    fn imported() -> Account {
        Account { timestamp: EVENT_NS - 90, ..account(NEW + 1, af::IMPORTED) }
    }

    fn set(a: &mut Account, field: Field, value: u128) {
        match field {
            Id => a.id = value,
            DebitsPending => a.debits_pending = value,
            DebitsPosted => a.debits_posted = value,
            CreditsPending => a.credits_pending = value,
            CreditsPosted => a.credits_posted = value,
            UserData128 => a.user_data_128 = value,
            UserData64 => a.user_data_64 = value as u64,
            UserData32 => a.user_data_32 = value as u32,
            Reserved => a.reserved = value as u32,
            Ledger => a.ledger = value as u32,
            Code => a.code = value as u16,
            Flags => a.flags |= value as u16,
            Timestamp => a.timestamp = value as u64,
            _ => unreachable!("an account has no {field:?}"),
        }
    }

    fn flags(a: &Account) -> u16 {
        a.flags
    }

    fn create(engine: &mut Engine, batch: &[Account]) -> Vec<A> {
        engine.create_accounts(batch, EVENT_NS).into_iter().map(|(status, _)| status).collect()
    }
}

impl Kind for Transfers {
    type Status = T;
    type Event = Transfer;
    const ALL: &'static [T] = T::ALL;
    const LINKED_EVENT_CHAIN_OPEN: T = T::LinkedEventChainOpen;

    fn rows() -> Vec<Row<T>> {
        let imported = tf::IMPORTED as u128;
        let pending = tf::PENDING as u128;
        let post = [(Flags, tf::POST_PENDING_TRANSFER as u128), (PendingId, 100)];
        // A post of transfer 100, with `more` fields set, the pending id among them.
        let post_with = |more: &[(Field, u128)]| -> Change {
            let kept = post.iter().filter(|(field, _)| more.iter().all(|(f, _)| f != field));
            kept.chain(more).copied().collect()
        };
        let late = (LATE_ACCOUNT_NS - 2).into();
        vec![
            row(T::Created, &[]),
            placed(T::LinkedEventFailed, &[], LINKED_BEFORE_A_FAILURE),
            placed(T::LinkedEventChainOpen, &[], LINKED_LAST),
            placed(T::ImportedEventExpected, &[], AFTER_AN_IMPORTED_EVENT),
            placed(
                T::ImportedEventNotExpected,
                &[(Flags, imported), (Timestamp, (EVENT_NS - 50).into())],
                AFTER_A_PLAIN_EVENT,
            ),
            row(T::TimestampMustBeZero, &[(Timestamp, 1)]),
            row(T::ImportedEventTimestampOutOfRange, &[(Flags, imported), (Timestamp, 0)]),
            row(
                T::ImportedEventTimestampMustNotAdvance,
                &[(Flags, imported), (Timestamp, EVENT_NS.into())],
            ),
            row(T::ReservedFlag, &[(Flags, 1 << 15)]),
            row(T::IdMustNotBeZero, &[(Id, 0)]),
            row(T::IdMustNotBeIntMax, &[(Id, U128_MAX)]),
            row(T::ExistsWithDifferentFlags, &[(Id, 200), (Flags, pending)]),
            row(T::ExistsWithDifferentPendingId, &[(Id, 200), (PendingId, 100)]),
            row(T::ExistsWithDifferentTimeout, &[(Id, 200), (Timeout, 1)]),
            row(T::ExistsWithDifferentDebitAccountId, &[(Id, 200), (DebitAccountId, 3)]),
            row(T::ExistsWithDifferentCreditAccountId, &[(Id, 200), (CreditAccountId, 3)]),
            row(T::ExistsWithDifferentAmount, &[(Id, 200), (Amount, 2)]),
            row(T::ExistsWithDifferentUserData128, &[(Id, 200), (UserData128, 1)]),
            row(T::ExistsWithDifferentUserData64, &[(Id, 200), (UserData64, 1)]),
            row(T::ExistsWithDifferentUserData32, &[(Id, 200), (UserData32, 1)]),
            row(T::ExistsWithDifferentLedger, &[(Id, 200), (Ledger, 2)]),
            row(T::ExistsWithDifferentCode, &[(Id, 200), (Code, 2)]),
            row(T::Exists, &[(Id, 200)]),
            row(T::IdAlreadyFailed, &[(Id, 300)]),
            row(
                T::FlagsAreMutuallyExclusive,
                &[(Flags, (tf::POST_PENDING_TRANSFER | tf::VOID_PENDING_TRANSFER).into())],
            ),
            row(T::DebitAccountIdMustNotBeZero, &[(DebitAccountId, 0)]),
            row(T::DebitAccountIdMustNotBeIntMax, &[(DebitAccountId, U128_MAX)]),
            row(T::CreditAccountIdMustNotBeZero, &[(CreditAccountId, 0)]),
            row(T::CreditAccountIdMustNotBeIntMax, &[(CreditAccountId, U128_MAX)]),
            row(T::AccountsMustBeDifferent, &[(CreditAccountId, 1)]),
            row(T::PendingIdMustBeZero, &[(PendingId, 100)]),
            row(T::PendingIdMustNotBeZero, &[(Flags, tf::POST_PENDING_TRANSFER.into())]),
            row(T::PendingIdMustNotBeIntMax, &post_with(&[(PendingId, U128_MAX)])),
            row(T::PendingIdMustBeDifferent, &post_with(&[(PendingId, NEW)])),
            row(T::TimeoutReservedForPendingTransfer, &[(Timeout, 1)]),
            row(T::ClosingTransferMustBePending, &[(Flags, tf::CLOSING_DEBIT.into())]),
            row(T::LedgerMustNotBeZero, &[(Ledger, 0)]),
            row(T::CodeMustNotBeZero, &[(Code, 0)]),
            row(T::DebitAccountNotFound, &[(DebitAccountId, 99)]),
            row(T::CreditAccountNotFound, &[(CreditAccountId, 98)]),
            row(T::AccountsMustHaveTheSameLedger, &[(CreditAccountId, 5)]),
            row(T::TransferMustHaveTheSameLedgerAsAccounts, &[(Ledger, 2)]),
            row(T::PendingTransferNotFound, &post_with(&[(PendingId, 99)])),
            row(T::PendingTransferNotPending, &post_with(&[(PendingId, 104)])),
            row(T::PendingTransferHasDifferentDebitAccountId, &post_with(&[(DebitAccountId, 3)])),
            row(T::PendingTransferHasDifferentCreditAccountId, &post_with(&[(CreditAccountId, 3)])),
            row(T::PendingTransferHasDifferentLedger, &post_with(&[(Ledger, 2)])),
            row(T::PendingTransferHasDifferentCode, &post_with(&[(Code, 2)])),
            row(T::ExceedsPendingTransferAmount, &post_with(&[(Amount, 11)])),
            row(
                T::PendingTransferHasDifferentAmount,
                &[(Flags, tf::VOID_PENDING_TRANSFER.into()), (PendingId, 100)],
            ),
            row(T::PendingTransferAlreadyPosted, &post_with(&[(PendingId, 101)])),
            row(T::PendingTransferAlreadyVoided, &post_with(&[(PendingId, 102)])),
            row(T::PendingTransferExpired, &post_with(&[(PendingId, 103)])),
            row(T::ImportedEventTimestampMustNotRegress, &[(Flags, imported), (Timestamp, 1)]),
            row(
                T::ImportedEventTimestampMustPostdateDebitAccount,
                &[(Flags, imported), (Timestamp, late), (DebitAccountId, 14)],
            ),
            row(
                T::ImportedEventTimestampMustPostdateCreditAccount,
                &[(Flags, imported), (Timestamp, late), (CreditAccountId, 15)],
            ),
            row(
                T::ImportedEventTimeoutMustBeZero,
                &[(Flags, imported | pending), (Timestamp, (EVENT_NS - 50).into()), (Timeout, 1)],
            ),
            row(T::DebitAccountAlreadyClosed, &[(DebitAccountId, 6)]),
            row(T::CreditAccountAlreadyClosed, &[(CreditAccountId, 13)]),
            row(T::OverflowsDebitsPending, &[(Flags, pending), (DebitAccountId, 7)]),
            row(T::OverflowsCreditsPending, &[(Flags, pending), (CreditAccountId, 8)]),
            row(T::OverflowsDebitsPosted, &[(DebitAccountId, 9)]),
            row(T::OverflowsCreditsPosted, &[(CreditAccountId, 10)]),
            row(T::OverflowsDebits, &[(DebitAccountId, 11)]),
            row(T::OverflowsCredits, &[(CreditAccountId, 12)]),
            row(T::OverflowsTimeout, &[(Flags, pending), (Timeout, u32::MAX.into())]),
            row(T::ExceedsCredits, &[(DebitAccountId, 3)]),
            row(T::ExceedsDebits, &[(CreditAccountId, 4)]),
        ]
    }

    fn not_together() -> Vec<(T, T)> {
        vec![
            (T::LinkedEventFailed, T::LinkedEventChainOpen),
            (T::ImportedEventExpected, T::ImportedEventNotExpected),
            (T::ImportedEventNotExpected, T::TimestampMustBeZero),
            (T::TimestampMustBeZero, T::ImportedEventTimestampOutOfRange),
            (T::IdMustNotBeZero, T::IdMustNotBeIntMax),
            (T::IdMustNotBeIntMax, T::ExistsWithDifferentFlags),
            (T::Exists, T::IdAlreadyFailed),
            (T::DebitAccountIdMustNotBeZero, T::DebitAccountIdMustNotBeIntMax),
            (T::CreditAccountIdMustNotBeZero, T::CreditAccountIdMustNotBeIntMax),
            (T::CreditAccountIdMustNotBeIntMax, T::AccountsMustBeDifferent),
            (T::PendingIdMustBeZero, T::PendingIdMustNotBeZero),
            (T::PendingIdMustNotBeZero, T::PendingIdMustNotBeIntMax),
            (T::PendingIdMustNotBeIntMax, T::PendingIdMustBeDifferent),
            (T::CreditAccountNotFound, T::AccountsMustHaveTheSameLedger),
            (T::TransferMustHaveTheSameLedgerAsAccounts, T::PendingTransferNotFound),
            (T::PendingTransferNotFound, T::PendingTransferNotPending),
            (T::PendingTransferAlreadyPosted, T::PendingTransferAlreadyVoided),
        ]
    }

    fn together() -> Vec<Row<T>> {
        let imported = tf::IMPORTED as u128;
        let post = tf::POST_PENDING_TRANSFER as u128;
        let void = tf::VOID_PENDING_TRANSFER as u128;
        let late = (LATE_ACCOUNT_NS - 2).into();
        vec![
            row(T::ImportedEventTimestampOutOfRange, &[(Flags, imported), (Timestamp, 1 << 63)]),
            // Transfer 104 is not pending, and its debit account is not 3.
            row(
                T::PendingTransferNotPending,
                &[(Flags, post), (PendingId, 104), (DebitAccountId, 3)],
            ),
            // A void of more than the pending amount.
            row(T::ExceedsPendingTransferAmount, &[(Flags, void), (PendingId, 100), (Amount, 11)]),
            // A void of less than the amount of a posted transfer.
            row(T::PendingTransferHasDifferentAmount, &[(Flags, void), (PendingId, 101)]),
            // Transfer 102 was voided, and its timeout has passed since.
            row(T::PendingTransferAlreadyVoided, &[(Flags, post), (PendingId, 102)]),
            // Timestamp 1 is before the last transfer and before account 14.
            row(
                T::ImportedEventTimestampMustNotRegress,
                &[(Flags, imported), (Timestamp, 1), (DebitAccountId, 14)],
            ),
            row(
                T::ImportedEventTimestampMustPostdateCreditAccount,
                &[
                    (Flags, imported | tf::PENDING as u128),
                    (Timestamp, late),
                    (CreditAccountId, 15),
                    (Timeout, 1),
                ],
            ),
        ]
    }

    fn valid() -> Transfer {
        transfer(NEW, 1, 2, 1, 0)
    }

    fn failing() -> Transfer {
        transfer(0, 1, 2, 1, 0)
    }

    fn imported() -> Transfer {
        Transfer { timestamp: EVENT_NS - 90, ..transfer(NEW + 1, 1, 2, 1, tf::IMPORTED) }
    }

    fn set(t: &mut Transfer, field: Field, value: u128) {
        match field {
            Id => t.id = value,
            DebitAccountId => t.debit_account_id = value,
            CreditAccountId => t.credit_account_id = value,
            Amount => t.amount = value,
            PendingId => t.pending_id = value,
            UserData128 => t.user_data_128 = value,
            UserData64 => t.user_data_64 = value as u64,
            UserData32 => t.user_data_32 = value as u32,
            Timeout => t.timeout = value as u32,
            Ledger => t.ledger = value as u32,
            Code => t.code = value as u16,
            Flags => t.flags |= value as u16,
            Timestamp => t.timestamp = value as u64,
            _ => unreachable!("a transfer has no {field:?}"),
        }
    }

    fn flags(t: &Transfer) -> u16 {
        t.flags
    }

    fn create(engine: &mut Engine, batch: &[Transfer]) -> Vec<T> {
        engine.create_transfers(batch, EVENT_NS).into_iter().map(|(status, _)| status).collect()
    }
}

/// The batch that earns the row's status, and the place in it of the event under test.
fn batch_of<K: Kind>(row: &Row<K::Status>) -> (Vec<K::Event>, usize) {
    let mut event = K::valid();
    for &(field, value) in &row.change {
        K::set(&mut event, field, value);
    }
    if row.place.linked {
        K::set(&mut event, Flags, tf::LINKED.into());
    }
    let mut batch = match row.place.after {
        Some(Before::Imported) => vec![K::imported()],
        Some(Before::Plain) => {
            let mut plain = K::failing();
            K::set(&mut plain, Id, NEW + 1);
            vec![plain]
        }
        None => vec![],
    };
    batch.push(event);
    let place = batch.len() - 1;
    if row.place.before_a_failure {
        batch.push(K::failing());
    }
    (batch, place)
}

fn status_of<K: Kind>(row: &Row<K::Status>) -> K::Status {
    let mut engine = open_world();
    let (batch, place) = batch_of::<K>(row);
    K::create(&mut engine, &batch)[place]
}

/// One row with the changes of both, or `None` where they cannot be made together: each sets
/// one field to different values, or each puts the event in a place of its own.
fn combined<S: Copy>(earlier: &Row<S>, later: &Row<S>) -> Option<Row<S>> {
    let mut change = later.change.clone();
    for &(field, value) in &earlier.change {
        match change.iter().position(|&(f, _)| f == field) {
            Some(i) if field == Flags => change[i].1 |= value,
            Some(i) if change[i].1 != value => return None,
            Some(_) => {}
            None => change.push((field, value)),
        }
    }
    let (a, b) = (earlier.place, later.place);
    if a.after.is_some() && b.after.is_some() && a.after != b.after {
        return None;
    }
    let place = Place {
        after: a.after.or(b.after),
        linked: a.linked || b.linked,
        last: a.last || b.last,
        before_a_failure: a.before_a_failure || b.before_a_failure,
    };
    if place.last && place.before_a_failure {
        return None;
    }
    Some(Row { status: earlier.status, change, place })
}

/// Each status but `Created` with the one after it.
fn adjacent_pairs<S: Clone>(rows: &[Row<S>]) -> Vec<(Row<S>, Row<S>)> {
    rows[1..].iter().cloned().zip(rows[2..].iter().cloned()).collect()
}

fn check_rows_list_every_status_once_in_the_order_of_its_enum<K: Kind>() {
    let statuses: Vec<K::Status> = K::rows().iter().map(|row| row.status).collect();
    assert_eq!(statuses, K::ALL);
}

fn check_the_smallest_change_of_a_valid_event_earns_its_status<K: Kind>() {
    let wrong: Vec<(K::Status, K::Status)> = K::rows()
        .iter()
        .map(|row| (row.status, status_of::<K>(row)))
        .filter(|(expected, got)| expected != got)
        .collect();
    assert!(wrong.is_empty(), "(expected, got): {wrong:?}");
}

fn check_of_two_adjacent_statuses_the_earlier_wins<K: Kind>() {
    let (not_together, together) = (K::not_together(), K::together());
    let mut wrong = Vec::new();
    for (earlier, later) in adjacent_pairs(&K::rows()) {
        if not_together.contains(&(earlier.status, later.status)) {
            continue;
        }
        let both = together.iter().find(|row| row.status == earlier.status).cloned();
        let both = both.or_else(|| combined(&earlier, &later));
        let both =
            both.unwrap_or_else(|| panic!("{:?} and {:?} clash", earlier.status, later.status));
        let got = status_of::<K>(&both);
        if got != earlier.status {
            wrong.push((earlier.status, later.status, got));
        }
    }
    assert!(wrong.is_empty(), "(earlier, later, got): {wrong:?}");
}

fn check_the_exceptions_name_adjacent_pairs_only<K: Kind>() {
    let pairs: Vec<(K::Status, K::Status)> =
        adjacent_pairs(&K::rows()).iter().map(|(a, b)| (a.status, b.status)).collect();
    assert!(K::not_together().iter().all(|pair| pairs.contains(pair)));
    for row in K::together() {
        let pair = pairs.iter().find(|(earlier, _)| *earlier == row.status).expect("a pair");
        assert!(!K::not_together().contains(pair), "{pair:?} is together and not");
    }
}

fn check_an_open_chain_at_the_end_of_a_batch_wins_over_a_failed_chain<K: Kind>() {
    let mut engine = open_world();
    let (mut failing, mut valid) = (K::failing(), K::valid());
    K::set(&mut failing, Flags, tf::LINKED.into());
    K::set(&mut valid, Flags, tf::LINKED.into());
    assert_ne!(K::flags(&valid) & tf::LINKED, 0);
    let statuses = K::create(&mut engine, &[failing, valid]);
    assert_eq!(statuses[1], K::LINKED_EVENT_CHAIN_OPEN);
}

#[test]
fn account_rows_list_every_status_once_in_the_order_of_its_enum() {
    check_rows_list_every_status_once_in_the_order_of_its_enum::<Accounts>();
}

#[test]
fn transfer_rows_list_every_status_once_in_the_order_of_its_enum() {
    check_rows_list_every_status_once_in_the_order_of_its_enum::<Transfers>();
}

#[test]
fn the_smallest_change_of_a_valid_account_earns_its_status() {
    check_the_smallest_change_of_a_valid_event_earns_its_status::<Accounts>();
}

#[test]
fn the_smallest_change_of_a_valid_transfer_earns_its_status() {
    check_the_smallest_change_of_a_valid_event_earns_its_status::<Transfers>();
}

#[test]
fn of_two_adjacent_account_statuses_the_earlier_wins() {
    check_of_two_adjacent_statuses_the_earlier_wins::<Accounts>();
}

#[test]
fn of_two_adjacent_transfer_statuses_the_earlier_wins() {
    check_of_two_adjacent_statuses_the_earlier_wins::<Transfers>();
}

#[test]
fn the_exceptions_name_adjacent_pairs_only() {
    check_the_exceptions_name_adjacent_pairs_only::<Accounts>();
    check_the_exceptions_name_adjacent_pairs_only::<Transfers>();
}

#[test]
fn an_open_chain_at_the_end_of_a_batch_wins_over_a_failed_chain() {
    check_an_open_chain_at_the_end_of_a_batch_wins_over_a_failed_chain::<Accounts>();
    check_an_open_chain_at_the_end_of_a_batch_wins_over_a_failed_chain::<Transfers>();
}
