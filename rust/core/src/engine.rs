//! The Rust engine: the ledger's state machine, the twin of `python/fastledger/engine/rules.py`.
//!
//! Both files implement one deterministic state machine with the same rule order and the same
//! helper names; read them side by side. Each create is one function with one guard per status,
//! in TigerBeetle 0.17's precedence order (`status.rs` lists it); effects are applied only after
//! every guard has passed.
//!
//! The engine trusts its input: the caller has already checked every field's width (the Rust
//! types enforce it) and hands over the batch timestamp. The engine never reads a clock. Before
//! a batch of transfers, the engine releases the pending transfers that expired by its first
//! timestamp, as a rule of its own.
//!
//! The rules alone are here. The batch loop's look-ahead at the events to come lives in
//! `prefetch.rs`, and the logging of records with the index of what each transfer moved (the
//! chains of each account's transfers that queries read) in `movement.rs`: neither decides a
//! status.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use foldhash::{HashMap, HashSet};

use crate::index::{IdIndex, RunIndex};
use crate::log::Log;
use crate::memory::{self, HugeVec};
use crate::movement::{AccountTrail, Movement};
use crate::prefetch::{AccountsFound, LookAhead, Prefetch};
use crate::status::{BatchStatus, CreateAccountStatus, CreateTransferStatus};
use crate::types::{
    account_flags, transfer_flags, Account, Timestamped, Transfer, TransferRecord, AMOUNT_MAX,
    TIMESTAMP_MAX, U128_MAX,
};

type A = CreateAccountStatus;
type T = CreateTransferStatus;

pub const NS_PER_S: u64 = 1_000_000_000;

const LINKED: u16 = transfer_flags::LINKED;
const PENDING: u16 = transfer_flags::PENDING;
const POST: u16 = transfer_flags::POST_PENDING_TRANSFER;
const VOID: u16 = transfer_flags::VOID_PENDING_TRANSFER;
const BALANCING_DEBIT: u16 = transfer_flags::BALANCING_DEBIT;
const BALANCING_CREDIT: u16 = transfer_flags::BALANCING_CREDIT;
const CLOSING_DEBIT: u16 = transfer_flags::CLOSING_DEBIT;
const CLOSING_CREDIT: u16 = transfer_flags::CLOSING_CREDIT;
const CLOSING: u16 = CLOSING_DEBIT | CLOSING_CREDIT;
const IMPORTED: u16 = transfer_flags::IMPORTED;
// The batch loop reads the linked bit of accounts and transfers alike.
const _: () = assert!(account_flags::LINKED == LINKED);

const DEBITS_MUST_NOT_EXCEED_CREDITS: u16 = account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS;
const CREDITS_MUST_NOT_EXCEED_DEBITS: u16 = account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS;
const ACCOUNT_IMPORTED: u16 = account_flags::IMPORTED;
const CLOSED: u16 = account_flags::CLOSED;

/// Returns `status` from the enclosing create when `condition` holds: one line per status, in
/// precedence order, like TigerBeetle's `if (condition) return .status;`.
macro_rules! guard {
    ($condition:expr, $status:expr) => {
        if $condition {
            return $status;
        }
    };
}

/// The life of a pending transfer: it resolves at most once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingStatus {
    Pending = 1,
    Posted = 2,
    Voided = 3,
    Expired = 4,
}

/// What the batch loop needs of an event, be it an account or a transfer; how it looks ahead at
/// the events to come is `Prefetch`.
pub(crate) trait Event: Copy + Timestamped + Prefetch {
    type Status: BatchStatus;
    /// The flag bit that marks an imported event.
    const IMPORTED: u16;
    fn id(&self) -> u128;
    fn flags(&self) -> u16;
    /// The timestamp of the record that an `Exists` event found.
    fn existing_timestamp(engine: &Engine, id: u128) -> u64;
}

impl Event for Account {
    type Status = CreateAccountStatus;
    const IMPORTED: u16 = ACCOUNT_IMPORTED;
    fn id(&self) -> u128 {
        self.id
    }
    fn flags(&self) -> u16 {
        self.flags
    }
    fn existing_timestamp(engine: &Engine, id: u128) -> u64 {
        engine.account_log[engine.account_index(id).expect("it exists")].timestamp
    }
}

impl Event for Transfer {
    type Status = CreateTransferStatus;
    const IMPORTED: u16 = IMPORTED;
    fn id(&self) -> u128 {
        self.id
    }
    fn flags(&self) -> u16 {
        self.flags
    }
    fn existing_timestamp(engine: &Engine, id: u128) -> u64 {
        engine.transfer_log[engine.transfer_index(id).expect("it exists")].timestamp
    }
}

/// A transfer of a packed batch is created as the transfer it decodes to.
impl Event for TransferRecord {
    type Status = CreateTransferStatus;
    const IMPORTED: u16 = IMPORTED;
    fn id(&self) -> u128 {
        self.transfer().id
    }
    fn flags(&self) -> u16 {
        self.transfer().flags
    }
    fn existing_timestamp(engine: &Engine, id: u128) -> u64 {
        Transfer::existing_timestamp(engine, id)
    }
}

/// An account's balances and flags before a linked chain changed them.
#[derive(Clone, Copy, Debug)]
struct SavedAccount {
    index: usize,
    debits_pending: u128,
    debits_posted: u128,
    credits_pending: u128,
    credits_posted: u128,
    flags: u16,
}

impl SavedAccount {
    fn save(index: usize, a: &Account) -> Self {
        Self {
            index,
            debits_pending: a.debits_pending,
            debits_posted: a.debits_posted,
            credits_pending: a.credits_pending,
            credits_posted: a.credits_posted,
            flags: a.flags,
        }
    }

    fn restore(&self, a: &mut Account) {
        a.debits_pending = self.debits_pending;
        a.debits_posted = self.debits_posted;
        a.credits_pending = self.credits_pending;
        a.credits_posted = self.credits_posted;
        a.flags = self.flags;
    }
}

/// What a linked chain changed, so that a broken chain can be rolled back. It is kept between
/// chains (`active` says whether one is open) so that its buffers are allocated once.
#[derive(Debug, Default)]
struct Undo {
    active: bool,
    accounts_created: Vec<u128>,
    transfers_created: Vec<u128>,
    accounts_saved: Vec<SavedAccount>,
    /// The pending transfer's id and its status before (`None`: it had none).
    pending_saved: Vec<(u128, Option<PendingStatus>)>,
}

impl Undo {
    fn begin(&mut self) {
        assert!(!self.active, "linked chains do not nest");
        self.clear();
        self.active = true;
    }

    fn end(&mut self) {
        assert!(self.active);
        self.clear();
        self.active = false;
    }

    fn clear(&mut self) {
        self.accounts_created.clear();
        self.transfers_created.clear();
        self.accounts_saved.clear();
        self.pending_saved.clear();
    }
}

/// When a pending transfer with a timeout expires, in nanoseconds.
pub(crate) fn expires_at(p: &Transfer) -> u64 {
    debug_assert!(p.timestamp <= TIMESTAMP_MAX);
    p.timestamp + u64::from(p.timeout) * NS_PER_S
}

/// The reference state machine in Rust. Not thread-safe by itself: its owner serialises calls.
#[derive(Debug, Default)]
pub struct Engine {
    /// Account id to its index in `account_log` (and `account_trails`).
    pub(crate) accounts: IdIndex,
    /// Transfer id to its index in `transfer_log`.
    pub(crate) transfers: RunIndex,
    // Creation order is timestamp order (imported events must not regress), so these logs are
    // sorted by timestamp, and a binary search finds the record of a timestamp.
    pub(crate) account_log: HugeVec<Account>,
    pub(crate) account_trails: Vec<AccountTrail>,
    /// Beside each account, the index in the transfer log of its newest transfer (or
    /// `NO_TRANSFER`): the head of its chain of movements.
    pub(crate) newest_transfers: Vec<u32>,
    /// Every trail holds the transfers of its account among the first `trails_swept` of the log.
    pub(crate) trails_swept: usize,
    /// The steps that walks of chains took since the last sweep.
    pub(crate) trail_steps: usize,
    pub(crate) transfer_log: Log<Transfer>,
    /// Beside each transfer of the log, what it moved between which accounts.
    pub(crate) movements: Log<Movement>,
    pub(crate) pending_status: HashMap<u128, PendingStatus>,
    /// (expires_at, timestamp, pending id), earliest expiry on top.
    pub(crate) expiry: BinaryHeap<Reverse<(u64, u64, u128)>>,
    pub(crate) failed_ids: HashSet<u128>,
    undo: Undo,
}

impl Engine {
    pub fn new() -> Self {
        Self::default()
    }

    /// The index in `account_log` of the account `id`.
    #[inline]
    pub(crate) fn account_index(&self, id: u128) -> Option<usize> {
        self.accounts.get(id, |i| self.account_log[i].id)
    }

    /// The index in `transfer_log` of the transfer `id`.
    #[inline]
    pub(crate) fn transfer_index(&self, id: u128) -> Option<usize> {
        self.transfers.get(id, |i| self.transfer_log[i].id)
    }

    /// The timestamp of the newest account or transfer, 0 for an empty engine: every event of a
    /// later batch must be stamped after it, which the engine's asserts rely on.
    pub fn newest_timestamp(&self) -> u64 {
        let account = self.account_log.last().map_or(0, |a| a.timestamp);
        let transfer = self.transfer_log.last().map_or(0, |t| t.timestamp);
        account.max(transfer)
    }

    /// Whether the engine holds no account and no transfer yet.
    pub fn is_empty(&self) -> bool {
        self.account_log.is_empty() && self.transfer_log.is_empty()
    }

    // -- create_accounts -------------------------------------------------------------------

    /// Applies a batch whose last event takes `timestamp`; returns (status, timestamp) per event.
    ///
    /// The batch is not empty and `len <= timestamp <= TIMESTAMP_MAX`.
    pub fn create_accounts(&mut self, accounts: &[Account], timestamp: u64) -> Vec<(A, u64)> {
        // Room for the whole batch first, so that a batch grows the log and index at most once.
        self.account_log.reserve(accounts.len());
        self.account_trails.reserve(accounts.len());
        self.newest_transfers.reserve(accounts.len());
        self.accounts.reserve(accounts.len());
        let results = self.execute(accounts, timestamp, |engine, a, timestamp, ()| {
            engine.create_account(a, timestamp)
        });
        self.prepare_transfer_logs();
        results
    }

    fn create_account(&mut self, a: &Account, timestamp: u64) -> A {
        guard!(a.reserved != 0, A::ReservedField);
        guard!(a.flags & !account_flags::KNOWN != 0, A::ReservedFlag);
        guard!(a.id == 0, A::IdMustNotBeZero);
        guard!(a.id == U128_MAX, A::IdMustNotBeIntMax);
        if let Some(e) = self.account_index(a.id) {
            return create_account_exists(a, &self.account_log[e]);
        }
        guard!(
            a.flags & DEBITS_MUST_NOT_EXCEED_CREDITS != 0
                && a.flags & CREDITS_MUST_NOT_EXCEED_DEBITS != 0,
            A::FlagsAreMutuallyExclusive
        );
        guard!(a.debits_pending != 0, A::DebitsPendingMustBeZero);
        guard!(a.debits_posted != 0, A::DebitsPostedMustBeZero);
        guard!(a.credits_pending != 0, A::CreditsPendingMustBeZero);
        guard!(a.credits_posted != 0, A::CreditsPostedMustBeZero);
        guard!(a.ledger == 0, A::LedgerMustNotBeZero);
        guard!(a.code == 0, A::CodeMustNotBeZero);
        if a.flags & ACCOUNT_IMPORTED != 0 {
            let last = self.account_log.last();
            guard!(
                last.is_some_and(|last| timestamp <= last.timestamp),
                A::ImportedEventTimestampMustNotRegress
            );
            guard!(
                self.transfer_log.holds_timestamp(timestamp),
                A::ImportedEventTimestampMustNotRegress
            );
        }

        let account = Account {
            id: a.id,
            debits_pending: 0,
            debits_posted: 0,
            credits_pending: 0,
            credits_posted: 0,
            user_data_128: a.user_data_128,
            user_data_64: a.user_data_64,
            user_data_32: a.user_data_32,
            reserved: 0,
            ledger: a.ledger,
            code: a.code,
            flags: a.flags,
            timestamp,
        };
        self.log_account(account);
        if self.undo.active {
            self.undo.accounts_created.push(a.id);
        }
        A::Created
    }

    // -- create_transfers ------------------------------------------------------------------

    /// Applies a batch whose last event takes `timestamp`; returns (status, timestamp) per event.
    ///
    /// The batch is not empty and `len <= timestamp <= TIMESTAMP_MAX`.
    pub fn create_transfers(&mut self, transfers: &[Transfer], timestamp: u64) -> Vec<(T, u64)> {
        self.transfers.reserve(transfers.len());
        self.expire_before_batch(transfers.len(), timestamp);
        self.execute(transfers, timestamp, Self::create_transfer)
    }

    /// As `create_transfers`, for a packed batch read in place: each record is decoded when its
    /// turn comes, rather than the whole batch copied first.
    pub fn create_transfers_packed(
        &mut self,
        records: &[TransferRecord],
        timestamp: u64,
    ) -> Vec<(T, u64)> {
        self.transfers.reserve(records.len());
        self.expire_before_batch(records.len(), timestamp);
        let create = |engine: &mut Self, record: &TransferRecord, timestamp, found| {
            engine.create_transfer(&record.transfer(), timestamp, found)
        };
        self.execute(records, timestamp, create)
    }

    /// Creates `t`, whose accounts the batch loop may have `found` already.
    fn create_transfer(&mut self, t: &Transfer, timestamp: u64, found: Option<AccountsFound>) -> T {
        let flags = t.flags;
        guard!(flags & !transfer_flags::KNOWN != 0, T::ReservedFlag);
        guard!(t.id == 0, T::IdMustNotBeZero);
        guard!(t.id == U128_MAX, T::IdMustNotBeIntMax);
        if let Some(e) = self.transfer_index(t.id) {
            return self.create_transfer_exists(t, &self.transfer_log[e]);
        }
        guard!(self.failed_ids.contains(&t.id), T::IdAlreadyFailed);
        if flags & (POST | VOID) != 0 {
            return self.post_or_void_pending_transfer(t, timestamp);
        }

        guard!(t.debit_account_id == 0, T::DebitAccountIdMustNotBeZero);
        guard!(t.debit_account_id == U128_MAX, T::DebitAccountIdMustNotBeIntMax);
        guard!(t.credit_account_id == 0, T::CreditAccountIdMustNotBeZero);
        guard!(t.credit_account_id == U128_MAX, T::CreditAccountIdMustNotBeIntMax);
        guard!(t.credit_account_id == t.debit_account_id, T::AccountsMustBeDifferent);
        guard!(t.pending_id != 0, T::PendingIdMustBeZero);
        if flags & PENDING == 0 {
            guard!(t.timeout != 0, T::TimeoutReservedForPendingTransfer);
            guard!(flags & CLOSING != 0, T::ClosingTransferMustBePending);
        }
        guard!(t.ledger == 0, T::LedgerMustNotBeZero);
        guard!(t.code == 0, T::CodeMustNotBeZero);

        let Some(dr_index) = self.found_account_index(t.debit_account_id, found.map(|f| f.debit))
        else {
            return T::DebitAccountNotFound;
        };
        let Some(cr_index) = self.found_account_index(t.credit_account_id, found.map(|f| f.credit))
        else {
            return T::CreditAccountNotFound;
        };
        let dr = &self.account_log[dr_index];
        let cr = &self.account_log[cr_index];
        guard!(dr.ledger != cr.ledger, T::AccountsMustHaveTheSameLedger);
        guard!(t.ledger != dr.ledger, T::TransferMustHaveTheSameLedgerAsAccounts);
        if flags & IMPORTED != 0 {
            if let Some(status) = self.imported_transfer_regresses(timestamp) {
                return status;
            }
            guard!(timestamp <= dr.timestamp, T::ImportedEventTimestampMustPostdateDebitAccount);
            guard!(timestamp <= cr.timestamp, T::ImportedEventTimestampMustPostdateCreditAccount);
            guard!(t.timeout != 0, T::ImportedEventTimeoutMustBeZero);
        }
        assert!(timestamp > dr.timestamp && timestamp > cr.timestamp);
        guard!(dr.flags & CLOSED != 0, T::DebitAccountAlreadyClosed);
        guard!(cr.flags & CLOSED != 0, T::CreditAccountAlreadyClosed);

        let amount = balancing_amount(t, dr, cr);
        if flags & PENDING != 0 {
            guard!(sum_overflows(&[amount, dr.debits_pending]), T::OverflowsDebitsPending);
            guard!(sum_overflows(&[amount, cr.credits_pending]), T::OverflowsCreditsPending);
        }
        guard!(sum_overflows(&[amount, dr.debits_posted]), T::OverflowsDebitsPosted);
        guard!(sum_overflows(&[amount, cr.credits_posted]), T::OverflowsCreditsPosted);
        guard!(sum_overflows(&[amount, dr.debits_pending, dr.debits_posted]), T::OverflowsDebits);
        guard!(
            sum_overflows(&[amount, cr.credits_pending, cr.credits_posted]),
            T::OverflowsCredits
        );
        guard!(timeout_overflows(timestamp, t.timeout), T::OverflowsTimeout);
        // An account without the limit's flag cannot exceed it.
        let dr_limited = dr.flags & DEBITS_MUST_NOT_EXCEED_CREDITS != 0;
        let cr_limited = cr.flags & CREDITS_MUST_NOT_EXCEED_DEBITS != 0;
        guard!(dr_limited && debits_exceed_credits(dr, amount), T::ExceedsCredits);
        guard!(cr_limited && credits_exceed_debits(cr, amount), T::ExceedsDebits);

        let stored = Transfer { amount, pending_id: 0, timestamp, ..*t };
        self.create_transfer_effects(&stored, dr_index, cr_index);
        T::Created
    }

    /// The effects of a created transfer that is not a post or a void; every guard has passed.
    fn create_transfer_effects(&mut self, stored: &Transfer, dr_index: usize, cr_index: usize) {
        let (flags, amount) = (stored.flags, stored.amount);
        self.save_accounts(dr_index, cr_index);
        let (dr, cr) = self.two_accounts_mut(dr_index, cr_index);
        if flags & PENDING != 0 {
            dr.debits_pending += amount;
            cr.credits_pending += amount;
        } else {
            dr.debits_posted += amount;
            cr.credits_posted += amount;
        }
        if flags & CLOSING_DEBIT != 0 {
            dr.flags |= CLOSED;
        }
        if flags & CLOSING_CREDIT != 0 {
            cr.flags |= CLOSED;
        }
        debug_assert!(balances_fit(dr) && balances_fit(cr));
        if flags & PENDING != 0 {
            self.set_pending_status(stored.id, PendingStatus::Pending);
            if stored.timeout != 0 {
                let entry = (expires_at(stored), stored.timestamp, stored.id);
                self.expiry.push(Reverse(entry));
            }
        }
        self.insert_transfer(stored, dr_index, cr_index);
    }

    fn post_or_void_pending_transfer(&mut self, t: &Transfer, timestamp: u64) -> T {
        let flags = t.flags;
        guard!(flags & POST != 0 && flags & VOID != 0, T::FlagsAreMutuallyExclusive);
        guard!(
            flags & (PENDING | BALANCING_DEBIT | BALANCING_CREDIT | CLOSING) != 0,
            T::FlagsAreMutuallyExclusive
        );
        guard!(t.pending_id == 0, T::PendingIdMustNotBeZero);
        guard!(t.pending_id == U128_MAX, T::PendingIdMustNotBeIntMax);
        guard!(t.pending_id == t.id, T::PendingIdMustBeDifferent);
        guard!(t.timeout != 0, T::TimeoutReservedForPendingTransfer);

        let Some(p_index) = self.transfer_index(t.pending_id) else {
            return T::PendingTransferNotFound;
        };
        let p = &self.transfer_log[p_index];
        guard!(p.flags & PENDING == 0, T::PendingTransferNotPending);
        let (dr_index, cr_index) = self.accounts_of(p_index);
        let (dr, cr) = (&self.account_log[dr_index], &self.account_log[cr_index]);
        guard!(
            t.debit_account_id != 0 && t.debit_account_id != p.debit_account_id,
            T::PendingTransferHasDifferentDebitAccountId
        );
        guard!(
            t.credit_account_id != 0 && t.credit_account_id != p.credit_account_id,
            T::PendingTransferHasDifferentCreditAccountId
        );
        guard!(t.ledger != 0 && t.ledger != p.ledger, T::PendingTransferHasDifferentLedger);
        guard!(t.code != 0 && t.code != p.code, T::PendingTransferHasDifferentCode);

        let amount = post_or_void_amount(t, p);
        guard!(amount > p.amount, T::ExceedsPendingTransferAmount);
        guard!(flags & VOID != 0 && amount < p.amount, T::PendingTransferHasDifferentAmount);
        let status = self.pending_status[&p.id];
        guard!(status == PendingStatus::Posted, T::PendingTransferAlreadyPosted);
        guard!(status == PendingStatus::Voided, T::PendingTransferAlreadyVoided);
        guard!(status == PendingStatus::Expired, T::PendingTransferExpired);
        assert_eq!(status, PendingStatus::Pending);
        guard!(p.timeout != 0 && expires_at(p) <= timestamp, T::PendingTransferExpired);
        if flags & IMPORTED != 0 {
            if let Some(regressed) = self.imported_transfer_regresses(timestamp) {
                return regressed;
            }
        }
        assert!(timestamp > dr.timestamp && timestamp > cr.timestamp);
        // The only movement allowed in a closed account is voiding a pending transfer.
        guard!(dr.flags & CLOSED != 0 && flags & VOID == 0, T::DebitAccountAlreadyClosed);
        guard!(cr.flags & CLOSED != 0 && flags & VOID == 0, T::CreditAccountAlreadyClosed);

        let stored = Transfer {
            id: t.id,
            debit_account_id: p.debit_account_id,
            credit_account_id: p.credit_account_id,
            amount,
            pending_id: t.pending_id,
            user_data_128: or_inherited(t.user_data_128, p.user_data_128),
            user_data_64: or_inherited(t.user_data_64, p.user_data_64),
            user_data_32: or_inherited(t.user_data_32, p.user_data_32),
            timeout: 0,
            ledger: p.ledger,
            code: p.code,
            flags,
            timestamp,
        };
        let p = *p;
        self.post_or_void_effects(&stored, &p, dr_index, cr_index);
        T::Created
    }

    /// The effects of a created post or void of the pending transfer `p`.
    fn post_or_void_effects(&mut self, stored: &Transfer, p: &Transfer, dr: usize, cr: usize) {
        let flags = stored.flags;
        self.save_accounts(dr, cr);
        let resolved =
            if flags & POST != 0 { PendingStatus::Posted } else { PendingStatus::Voided };
        self.set_pending_status(p.id, resolved);
        let (dr_account, cr_account) = self.two_accounts_mut(dr, cr);
        dr_account.debits_pending -= p.amount;
        cr_account.credits_pending -= p.amount;
        if flags & POST != 0 {
            assert!(p.flags & CLOSING == 0, "a closing transfer can only be voided");
            dr_account.debits_posted += stored.amount;
            cr_account.credits_posted += stored.amount;
        } else {
            reopen_closed_by(p, dr_account, cr_account);
        }
        debug_assert!(balances_fit(dr_account) && balances_fit(cr_account));
        self.insert_transfer(stored, dr, cr);
    }

    fn create_transfer_exists(&self, t: &Transfer, e: &Transfer) -> T {
        guard!(t.flags != e.flags, T::ExistsWithDifferentFlags);
        guard!(t.pending_id != e.pending_id, T::ExistsWithDifferentPendingId);
        guard!(t.timeout != e.timeout, T::ExistsWithDifferentTimeout);
        if t.flags & (POST | VOID) != 0 {
            let p = &self.transfer_log[self.transfer_index(t.pending_id).expect("it exists")];
            return post_or_void_pending_transfer_exists(t, e, p);
        }
        guard!(t.debit_account_id != e.debit_account_id, T::ExistsWithDifferentDebitAccountId);
        guard!(t.credit_account_id != e.credit_account_id, T::ExistsWithDifferentCreditAccountId);
        // A balancing transfer's amount is an upper limit: a retry whose limit still covers the
        // amount that was actually moved is the same transfer.
        if t.flags & (BALANCING_DEBIT | BALANCING_CREDIT) != 0 {
            guard!(t.amount < e.amount, T::ExistsWithDifferentAmount);
        } else {
            guard!(t.amount != e.amount, T::ExistsWithDifferentAmount);
        }
        guard!(t.user_data_128 != e.user_data_128, T::ExistsWithDifferentUserData128);
        guard!(t.user_data_64 != e.user_data_64, T::ExistsWithDifferentUserData64);
        guard!(t.user_data_32 != e.user_data_32, T::ExistsWithDifferentUserData32);
        guard!(t.ledger != e.ledger, T::ExistsWithDifferentLedger);
        guard!(t.code != e.code, T::ExistsWithDifferentCode);
        T::Exists
    }

    fn imported_transfer_regresses(&self, timestamp: u64) -> Option<T> {
        let last = self.transfer_log.last();
        if last.is_some_and(|last| timestamp <= last.timestamp) {
            return Some(T::ImportedEventTimestampMustNotRegress);
        }
        if logged_at(&self.account_log, timestamp) {
            return Some(T::ImportedEventTimestampMustNotRegress);
        }
        None
    }

    // -- expiry ----------------------------------------------------------------------------

    /// Before a batch of `count` transfers whose last event takes `timestamp`, releases what
    /// expired by the batch's first timestamp: a pending transfer that expires at or before an
    /// event's timestamp is expired for that event, and for every event after it.
    fn expire_before_batch(&mut self, count: usize, timestamp: u64) {
        assert!(0 < count && count as u64 <= timestamp);
        self.expire_pending_transfers(timestamp - count as u64 + 1);
    }

    /// Whether an expiry is due by `now_ns`: then `expire_pending_transfers` has work, if only
    /// to drop the entry of a transfer that was posted or voided meanwhile.
    pub fn expiry_due(&self, now_ns: u64) -> bool {
        self.expiry.peek().is_some_and(|&Reverse((expires, _, _))| expires <= now_ns)
    }

    /// Releases every pending transfer whose timeout has passed by `timestamp`.
    ///
    /// Costs nothing when none is due: the earliest expiry is at the top of a heap. Returns how
    /// many expired.
    pub fn expire_pending_transfers(&mut self, timestamp: u64) -> usize {
        assert!(!self.undo.active);
        let mut expired = 0;
        while self.expiry_due(timestamp) {
            let Reverse((expires, pending_timestamp, pending_id)) =
                self.expiry.pop().expect("an expiry is due");
            let Some(p_index) = self.transfer_index(pending_id) else {
                continue; // Its chain was rolled back.
            };
            let p = self.transfer_log[p_index];
            if p.timestamp != pending_timestamp || p.timeout == 0 {
                continue; // Its chain was rolled back, and the id perhaps used again.
            }
            assert_eq!(expires_at(&p), expires);
            if self.pending_status[&pending_id] != PendingStatus::Pending {
                continue; // Posted or voided before it expired.
            }
            let (dr_index, cr_index) = self.accounts_of(p_index);
            let (dr, cr) = self.two_accounts_mut(dr_index, cr_index);
            dr.debits_pending -= p.amount;
            cr.credits_pending -= p.amount;
            reopen_closed_by(&p, dr, cr);
            self.pending_status.insert(pending_id, PendingStatus::Expired);
            expired += 1;
        }
        expired
    }

    // -- lookups ---------------------------------------------------------------------------

    /// The accounts with these ids, in the order asked; missing ids are left out.
    pub fn lookup_accounts(&self, ids: &[u128]) -> Vec<Account> {
        let found = ids.iter().filter_map(|&id| self.account_index(id));
        found.map(|index| self.account_log[index]).collect()
    }

    /// The transfers with these ids, in the order asked; missing ids are left out.
    pub fn lookup_transfers(&self, ids: &[u128]) -> Vec<Transfer> {
        let found = ids.iter().filter_map(|&id| self.transfer_index(id));
        found.map(|index| self.transfer_log[index]).collect()
    }

    // -- the batch loop: linked chains and imported batches ----------------------------------

    /// Runs `create` over a batch whose last event takes `timestamp`.
    ///
    /// Linked events form a chain that succeeds or fails as a whole; the first event decides
    /// whether the batch imports user timestamps. The statuses decided here precede every status
    /// of `create`, in the order TigerBeetle checks them.
    fn execute<E: Event>(
        &mut self,
        events: &[E],
        timestamp: u64,
        create: impl Fn(&mut Self, &E, u64, E::Found) -> E::Status,
    ) -> Vec<(E::Status, u64)> {
        let count = events.len();
        assert!(0 < count && count as u64 <= timestamp && timestamp <= TIMESTAMP_MAX);
        let _fence = memory::FenceOnUnwind;
        let batch_imported = events[0].flags() & E::IMPORTED;
        let mut results: Vec<(E::Status, u64)> = Vec::with_capacity(count);
        let mut chain: Option<usize> = None;
        let mut chain_broken = false;
        let mut look_ahead = LookAhead::new();
        for (index, event) in events.iter().enumerate() {
            let event_found = look_ahead.next(self, events, index);
            let imported = event.flags() & E::IMPORTED;
            let linked = event.flags() & LINKED != 0;
            let assigned = timestamp - count as u64 + index as u64 + 1;
            let mut event_timestamp = if imported != 0 { event.timestamp() } else { assigned };
            if linked && chain.is_none() {
                chain = Some(index);
                self.undo.begin();
            }
            let status = if linked && index == count - 1 {
                E::Status::LINKED_EVENT_CHAIN_OPEN
            } else if chain_broken {
                E::Status::LINKED_EVENT_FAILED
            } else if let Some(status) = batch_status(event, batch_imported, timestamp) {
                status
            } else {
                create(self, event, event_timestamp, event_found)
            };
            if status != E::Status::CREATED {
                event_timestamp = self.failed_timestamp(status, event, assigned);
                if let Some(start) = chain.filter(|_| !chain_broken) {
                    chain_broken = true;
                    self.rollback();
                    for chained in &mut results[start..index] {
                        chained.0 = E::Status::LINKED_EVENT_FAILED;
                    }
                }
                if status.is_transient() {
                    self.failed_ids.insert(event.id());
                }
            }
            results.push((status, event_timestamp));
            if chain.is_some() && (!linked || status == E::Status::LINKED_EVENT_CHAIN_OPEN) {
                chain = None;
                chain_broken = false;
                self.undo.end();
            }
        }
        assert!(chain.is_none() && !self.undo.active);
        self.fence_logs();
        results
    }

    /// The timestamp in the result of an event that failed with `status`, as TigerBeetle gives
    /// it: the original's for `Exists`, else the timestamp `assigned` to the event's place in the
    /// batch, which an imported event's own does not replace. (The events that a failed chain
    /// created before it failed keep the timestamps they were created with.)
    fn failed_timestamp<E: Event>(&self, status: E::Status, event: &E, assigned: u64) -> u64 {
        if status == E::Status::EXISTS {
            return E::existing_timestamp(self, event.id());
        }
        assigned
    }

    // -- effects and their undo ------------------------------------------------------------

    /// Logs a created transfer after its effects, so that the history of its accounts records
    /// their balances after it.
    fn insert_transfer(&mut self, t: &Transfer, dr_index: usize, cr_index: usize) {
        self.log_transfer(t, dr_index, cr_index);
        self.record_history(t, dr_index, cr_index);
        if self.undo.active {
            self.undo.transfers_created.push(t.id);
        }
    }

    fn save_accounts(&mut self, dr_index: usize, cr_index: usize) {
        if self.undo.active {
            let saved_dr = SavedAccount::save(dr_index, &self.account_log[dr_index]);
            let saved_cr = SavedAccount::save(cr_index, &self.account_log[cr_index]);
            self.undo.accounts_saved.push(saved_dr);
            self.undo.accounts_saved.push(saved_cr);
        }
    }

    fn set_pending_status(&mut self, pending_id: u128, status: PendingStatus) {
        let before = self.pending_status.insert(pending_id, status);
        if self.undo.active {
            self.undo.pending_saved.push((pending_id, before));
        }
    }

    /// Undoes a broken chain, newest effect first. Expiry heap entries of rolled-back pending
    /// transfers stay behind and are skipped when popped: their transfer is gone.
    fn rollback(&mut self) {
        assert!(self.undo.active);
        for saved in self.undo.accounts_saved.iter().rev() {
            saved.restore(&mut self.account_log[saved.index]);
        }
        for &(pending_id, status) in self.undo.pending_saved.iter().rev() {
            match status {
                None => self.pending_status.remove(&pending_id),
                Some(status) => self.pending_status.insert(pending_id, status),
            };
        }
        while let Some(transfer_id) = self.undo.transfers_created.pop() {
            self.unlog_transfer(transfer_id);
        }
        while let Some(account_id) = self.undo.accounts_created.pop() {
            self.unlog_account(account_id);
        }
        self.undo.clear();
    }

    /// The debit and the credit account of one transfer, which are never the same account.
    fn two_accounts_mut(&mut self, dr: usize, cr: usize) -> (&mut Account, &mut Account) {
        assert_ne!(dr, cr);
        if dr < cr {
            let (left, right) = self.account_log.split_at_mut(cr);
            (&mut left[dr], &mut right[0])
        } else {
            let (left, right) = self.account_log.split_at_mut(dr);
            (&mut right[0], &mut left[cr])
        }
    }
}

/// The statuses of the batch loop that an event earns before its create runs: an event that
/// breaks the batch's import mode, or whose user timestamp is out of bounds.
fn batch_status<E: Event>(event: &E, batch_imported: u16, timestamp: u64) -> Option<E::Status> {
    let imported = event.flags() & E::IMPORTED;
    if imported != batch_imported {
        return Some(if imported != 0 {
            E::Status::IMPORTED_EVENT_NOT_EXPECTED
        } else {
            E::Status::IMPORTED_EVENT_EXPECTED
        });
    }
    if imported != 0 && !(1..=TIMESTAMP_MAX).contains(&event.timestamp()) {
        return Some(E::Status::IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE);
    }
    if imported != 0 && event.timestamp() >= timestamp {
        return Some(E::Status::IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE);
    }
    if imported == 0 && event.timestamp() != 0 {
        return Some(E::Status::TIMESTAMP_MUST_BE_ZERO);
    }
    None
}

fn create_account_exists(a: &Account, e: &Account) -> A {
    guard!(a.flags != e.flags, A::ExistsWithDifferentFlags);
    guard!(a.user_data_128 != e.user_data_128, A::ExistsWithDifferentUserData128);
    guard!(a.user_data_64 != e.user_data_64, A::ExistsWithDifferentUserData64);
    guard!(a.user_data_32 != e.user_data_32, A::ExistsWithDifferentUserData32);
    guard!(a.ledger != e.ledger, A::ExistsWithDifferentLedger);
    guard!(a.code != e.code, A::ExistsWithDifferentCode);
    A::Exists
}

/// Whether a record of `log`, which is sorted by timestamp, has `timestamp`.
fn logged_at<R: Timestamped>(log: &[R], timestamp: u64) -> bool {
    log.binary_search_by_key(&timestamp, R::timestamp).is_ok()
}

/// The amount a post or void moves: a void of 0, or a post of `AMOUNT_MAX`, means all.
fn post_or_void_amount(t: &Transfer, p: &Transfer) -> u128 {
    if t.flags & VOID != 0 {
        if t.amount > 0 {
            t.amount
        } else {
            p.amount
        }
    } else if t.amount == AMOUNT_MAX {
        p.amount
    } else {
        t.amount
    }
}

/// Compares a retried post or void with the one that exists; zero fields were inherited from
/// the pending transfer, so they compare through it.
fn post_or_void_pending_transfer_exists(t: &Transfer, e: &Transfer, p: &Transfer) -> T {
    guard!(
        t.debit_account_id != 0 && t.debit_account_id != e.debit_account_id,
        T::ExistsWithDifferentDebitAccountId
    );
    guard!(
        t.credit_account_id != 0 && t.credit_account_id != e.credit_account_id,
        T::ExistsWithDifferentCreditAccountId
    );
    guard!(post_or_void_amount(t, p) != e.amount, T::ExistsWithDifferentAmount);
    guard!(
        or_inherited(t.user_data_128, p.user_data_128) != e.user_data_128,
        T::ExistsWithDifferentUserData128
    );
    guard!(
        or_inherited(t.user_data_64, p.user_data_64) != e.user_data_64,
        T::ExistsWithDifferentUserData64
    );
    guard!(
        or_inherited(t.user_data_32, p.user_data_32) != e.user_data_32,
        T::ExistsWithDifferentUserData32
    );
    guard!(t.ledger != 0 && t.ledger != e.ledger, T::ExistsWithDifferentLedger);
    guard!(t.code != 0 && t.code != e.code, T::ExistsWithDifferentCode);
    T::Exists
}

/// A closing transfer that is voided or expires reopens the accounts it closed.
fn reopen_closed_by(p: &Transfer, dr: &mut Account, cr: &mut Account) {
    if p.flags & CLOSING_DEBIT != 0 {
        dr.flags &= !CLOSED;
    }
    if p.flags & CLOSING_CREDIT != 0 {
        cr.flags &= !CLOSED;
    }
}

/// A balancing transfer moves at most what its account's limit allows:
/// `min(amount, max(0, credits_posted - debits_posted - debits_pending))` for a balancing
/// debit, and the mirror for a balancing credit. Saturating subtraction is that `max(0, ...)`.
fn balancing_amount(t: &Transfer, dr: &Account, cr: &Account) -> u128 {
    let mut amount = t.amount;
    if t.flags & BALANCING_DEBIT != 0 {
        let room = dr.credits_posted.saturating_sub(dr.debits_posted);
        amount = amount.min(room.saturating_sub(dr.debits_pending));
    }
    if t.flags & BALANCING_CREDIT != 0 {
        let room = cr.debits_posted.saturating_sub(cr.credits_posted);
        amount = amount.min(room.saturating_sub(cr.credits_pending));
    }
    amount
}

/// Whether the sum of `values` exceeds `U128_MAX`, computed without overflowing.
fn sum_overflows(values: &[u128]) -> bool {
    let sum = values.iter().try_fold(0u128, |sum, &value| sum.checked_add(value));
    sum.is_none()
}

/// Whether `timestamp + timeout_s * NS_PER_S` exceeds `TIMESTAMP_MAX`; u128 holds it exactly.
fn timeout_overflows(timestamp: u64, timeout_s: u32) -> bool {
    let expires_at = u128::from(timestamp) + u128::from(timeout_s) * u128::from(NS_PER_S);
    expires_at > u128::from(TIMESTAMP_MAX)
}

/// Whether debiting `amount` more would take the debits past the posted credits:
/// `debits_pending + debits_posted + amount > credits_posted`; a sum past `U128_MAX` exceeds any
/// balance.
fn debits_exceed_credits(dr: &Account, amount: u128) -> bool {
    dr.debits_pending
        .checked_add(dr.debits_posted)
        .and_then(|debits| debits.checked_add(amount))
        .is_none_or(|debits| debits > dr.credits_posted)
}

/// Whether crediting `amount` more would take the credits past the posted debits:
/// `credits_pending + credits_posted + amount > debits_posted`.
fn credits_exceed_debits(cr: &Account, amount: u128) -> bool {
    cr.credits_pending
        .checked_add(cr.credits_posted)
        .and_then(|credits| credits.checked_add(amount))
        .is_none_or(|credits| credits > cr.debits_posted)
}

/// A post or void inherits each user data field it leaves at zero from the pending transfer.
fn or_inherited<N: Copy + PartialEq + Default>(value: N, inherited: N) -> N {
    if value == N::default() {
        inherited
    } else {
        value
    }
}

/// The invariant that makes posting safe: pending plus posted never overflows, on either side.
fn balances_fit(a: &Account) -> bool {
    !sum_overflows(&[a.debits_pending, a.debits_posted])
        && !sum_overflows(&[a.credits_pending, a.credits_posted])
}
