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

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::mem;

use foldhash::{HashMap, HashSet};

use crate::index::{IdIndex, RunIndex, LOG_MAX};
use crate::log::Log;
use crate::memory::{self, HugeVec};
use crate::status::{BatchStatus, CreateAccountStatus, CreateTransferStatus};
use crate::types::{
    account_flags, transfer_flags, Account, AccountBalance, Timestamped, Transfer, TransferRecord,
    AMOUNT_MAX, TIMESTAMP_MAX, U128_MAX,
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
const HISTORY: u16 = account_flags::HISTORY;
const CLOSED: u16 = account_flags::CLOSED;

/// How many events ahead of the one being created the batch loop prefetches index slots: far
/// enough for a read from memory to arrive before its event's turn, near enough that the slots
/// are still cached then. It prefetches the records those slots point to half as far ahead,
/// and the events themselves half as far again.
const PREFETCH_AHEAD: usize = 16;

/// The fewest accounts for which a ledger with no transfer yet has the first segments of the
/// transfer log and the movements made ahead: a ledger that opens this many is set up for
/// work, and 10 MiB made by the maker thread cost little beside its accounts. Its first transfers
/// then do not wait for the kernel to map those segments page by page: with the run of ids,
/// about 1,700 page faults, which made the first four batches of a new ledger three times
/// slower than the rest (2.2 against 0.7 ms for 8189 transfers). The run of ids is left
/// unprepared: while ids come in order, the transfer log is the run.
const PREPARE_LOGS_ACCOUNTS_MIN: usize = 1024;

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

/// What the batch loop needs of an event, be it an account or a transfer.
pub trait Event: Copy + Timestamped {
    type Status: BatchStatus;
    /// What `prefetch_records` found for the event's create to use; the default when the loop
    /// did not look ahead at the event (the first events of a batch).
    type Found: Copy + Default;
    /// The flag bit that marks an imported event.
    const IMPORTED: u16;
    fn id(&self) -> u128;
    fn flags(&self) -> u16;
    /// The timestamp of the record that an `Exists` event found.
    fn existing_timestamp(engine: &Engine, id: u128) -> u64;
    /// Starts reading the index slots that creating this event will look up.
    fn prefetch(&self, engine: &Engine);
    /// Starts reading the records that creating this event will read, once `prefetch` has
    /// brought in their index slots; returns where it found them.
    fn prefetch_records(&self, engine: &Engine) -> Self::Found;
}

/// Where the batch loop's look-ahead found the debit and the credit account of a transfer in
/// the account log (`IdIndex::likely_position`): a position that holds the account unless its
/// id differs (another id has the same tag once in four billion), or `None` when the probe met
/// a free slot before any slot with its tag, and then the account does not exist. A batch of
/// transfers creates no account, so what the look-ahead found still holds at the transfer's
/// turn, and its create looks up neither account again.
#[derive(Clone, Copy, Debug)]
pub struct AccountsFound {
    debit: Option<usize>,
    credit: Option<usize>,
}

impl Event for Account {
    type Status = CreateAccountStatus;
    type Found = ();
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
    fn prefetch(&self, engine: &Engine) {
        engine.accounts.prefetch(self.id);
    }
    fn prefetch_records(&self, _: &Engine) {
        // A new account reads no record.
    }
}

impl Event for Transfer {
    type Status = CreateTransferStatus;
    /// `None` for a post or a void, which finds its accounts through its pending transfer.
    type Found = Option<AccountsFound>;
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
    fn prefetch(&self, engine: &Engine) {
        engine.transfers.prefetch(self.id);
        if self.flags & (POST | VOID) != 0 {
            engine.transfers.prefetch(self.pending_id);
        } else {
            engine.accounts.prefetch(self.debit_account_id);
            engine.accounts.prefetch(self.credit_account_id);
        }
    }
    fn prefetch_records(&self, engine: &Engine) -> Option<AccountsFound> {
        if self.flags & (POST | VOID) != 0 {
            if let Some(p) = engine.transfers.likely_position(self.pending_id) {
                memory::prefetch(&engine.transfer_log[p]);
            }
            return None;
        }
        let [debit, credit] = [self.debit_account_id, self.credit_account_id].map(|id| {
            let found = engine.accounts.likely_position(id);
            if let Some(a) = found {
                memory::prefetch(&engine.account_log[a]);
            }
            found
        });
        Some(AccountsFound { debit, credit })
    }
}

/// A transfer of a packed batch is created as the transfer it decodes to. Where the batch loop
/// looks ahead at a few fields, the compiler reads just those from the record.
impl Event for TransferRecord {
    type Status = CreateTransferStatus;
    type Found = Option<AccountsFound>;
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
    fn prefetch(&self, engine: &Engine) {
        self.transfer().prefetch(engine);
    }
    fn prefetch_records(&self, engine: &Engine) -> Option<AccountsFound> {
        self.transfer().prefetch_records(engine)
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

/// The end of an account's chain of transfers: no transfer.
const NO_TRANSFER: u32 = u32::MAX;

/// About how many times longer one step along an account's chain of movements takes than
/// sweeping one movement into the trails (`Engine::gather_trail`): a step waits for a read
/// from memory, a sweep reads the movements in order and overlaps its writes.
const WALK_STEPS_PER_SWEEP: usize = 16;

/// What a logged transfer moved: its amount and flags, and the indexes in the account log of
/// its debit and credit account. Kept beside the log, so that neither a post, a void, an expiry
/// nor `balances_at` looks an account up by id, and `balances_at` replays 48 bytes a transfer
/// rather than its 128-byte record.
///
/// It also links the transfer to the one that moved each account before it (`earlier`), so the
/// transfers of an account form a chain, newest first, from `Engine::newest_transfers`. Posting
/// extends two chains by writing this movement, which it writes anyway, and two entries of a
/// small array; appending to a list per account instead wrote to as many places in memory as
/// there are accounts, and was a third of the time of a transfer. Queries gather the chain into
/// the account's trail when they need it (`Engine::gather_trail`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Movement {
    pub(crate) amount: u128,
    pub(crate) accounts: [u32; 2],
    /// Beside each of `accounts`, the index in the transfer log of its transfer before this one,
    /// or `NO_TRANSFER`.
    pub(crate) earlier: [u32; 2],
    pub(crate) flags: u16,
    /// Always zero: the bytes that the alignment of `amount` adds, named so that every byte of
    /// a movement is written and it may be streamed (`memory::Plain`).
    padding: [u16; 7],
}

const _: () = assert!(size_of::<Movement>() == 48);

// SAFETY: `repr(C)`, and its fields tile its 48 bytes exactly (asserted above); it is aligned to
// 16 bytes by `amount`.
unsafe impl memory::Plain for Movement {}

impl Movement {
    /// The transfer before this one of `account_index`, which this one moved.
    fn earlier_of(&self, account_index: usize) -> u32 {
        let side = usize::from(self.accounts[0] as usize != account_index);
        debug_assert_eq!(self.accounts[side] as usize, account_index);
        self.earlier[side]
    }
}

/// When a pending transfer with a timeout expires, in nanoseconds.
pub(crate) fn expires_at(p: &Transfer) -> u64 {
    debug_assert!(p.timestamp <= TIMESTAMP_MAX);
    p.timestamp + u64::from(p.timeout) * NS_PER_S
}

/// What the engine keeps of an account besides its record: the transfers that debit or credit
/// it, in timestamp order (indexes into the transfer log) as far as `Engine::gather_trail` has
/// gathered them from the account's chain, and, for an account flagged `HISTORY`, its balances
/// after each of its transfers (all of them, gathered or not).
#[derive(Debug, Default)]
pub(crate) struct AccountTrail {
    pub(crate) transfers: Vec<u32>,
    pub(crate) history: Option<Vec<AccountBalance>>,
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
    trails_swept: usize,
    /// The steps that walks of chains took since the last sweep.
    trail_steps: usize,
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

    /// As `account_index`, where the batch loop's look-ahead `found` the account (`None` if it
    /// did not look).
    #[inline(always)]
    fn found_account_index(&self, id: u128, found: Option<Option<usize>>) -> Option<usize> {
        let index = match found {
            Some(None) => None,
            Some(Some(a)) if self.account_log[a].id == id => Some(a),
            _ => self.account_index_unfound(id),
        };
        debug_assert_eq!(index, self.account_index(id));
        index
    }

    /// `account_index`, for an account the look-ahead did not find: rare, and kept out of line.
    #[cold]
    #[inline(never)]
    fn account_index_unfound(&self, id: u128) -> Option<usize> {
        self.account_index(id)
    }

    /// The index in `transfer_log` of the transfer `id`.
    #[inline]
    pub(crate) fn transfer_index(&self, id: u128) -> Option<usize> {
        self.transfers.get(id, |i| self.transfer_log[i].id)
    }

    /// The indexes of the debit and the credit account of the transfer at `index` of the log.
    pub(crate) fn accounts_of(&self, index: usize) -> (usize, usize) {
        let [dr, cr] = self.movements[index].accounts;
        (dr as usize, cr as usize)
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

    /// Maps now, on the calling thread, all the memory that the logs of `transfers` more
    /// transfers fill, 176 bytes a transfer (its record and its movement, and the samples of
    /// ids in order), so that posting them never waits for the kernel to map a page. Without it
    /// the maker thread maps the logs a few segments ahead of the batch loop, which a loop
    /// posting ready batches back to back outruns where fresh memory is slow to map: 0.35-0.75
    /// GB/s here for memory the machine's host has not yet given it, against the 1.8 GB/s that
    /// 10,000,000 transfers a second fill.
    ///
    /// It maps room for at most as many transfers as the log may yet hold (`LOG_MAX`). Like any
    /// allocation, asking for more memory than the machine has ends the process.
    pub fn reserve_transfers(&mut self, transfers: usize) {
        let transfers = transfers.min(LOG_MAX - self.transfer_log.len());
        self.transfer_log.reserve(transfers);
        self.movements.reserve(transfers);
        self.transfers.reserve_in_order(transfers);
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
        if self.transfer_log.is_empty() && self.account_log.len() >= PREPARE_LOGS_ACCOUNTS_MIN {
            self.transfer_log.prepare();
            self.movements.prepare();
        }
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
        // What the look-ahead found for the next events, by index modulo its length.
        let mut found = [E::Found::default(); PREFETCH_AHEAD];
        for (index, event) in events.iter().enumerate() {
            if let Some(ahead) = events.get(index + PREFETCH_AHEAD * 3 / 2) {
                memory::prefetch(ahead);
            }
            if let Some(ahead) = events.get(index + PREFETCH_AHEAD) {
                ahead.prefetch(self);
            }
            if let Some(ahead) = events.get(index + PREFETCH_AHEAD / 2) {
                found[(index + PREFETCH_AHEAD / 2) % PREFETCH_AHEAD] = ahead.prefetch_records(self);
            }
            let event_found = mem::take(&mut found[index % PREFETCH_AHEAD]);
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
        for account_index in [dr_index, cr_index] {
            let account = &self.account_log[account_index];
            // Read from the account, which the effects have just written: the trail of an
            // account without history is not worth a read from memory.
            if account.flags & HISTORY != 0 {
                let history = self.account_trails[account_index].history.as_mut();
                let history = history.expect("an account flagged HISTORY keeps one");
                history.push(AccountBalance::of(account, t.timestamp));
            }
        }
        if self.undo.active {
            self.undo.transfers_created.push(t.id);
        }
    }

    /// Appends an account to the account log, its index and its trail.
    pub(crate) fn log_account(&mut self, account: Account) {
        self.accounts.insert(account.id, self.account_log.len());
        self.account_log.push(account);
        let history = (account.flags & HISTORY != 0).then(Vec::new);
        self.account_trails.push(AccountTrail { transfers: Vec::new(), history });
        self.newest_transfers.push(NO_TRANSFER);
    }

    /// Appends a transfer to the transfer log, its index and the chains of its two accounts.
    pub(crate) fn log_transfer(&mut self, t: &Transfer, dr_index: usize, cr_index: usize) {
        let index = self.transfer_log.len();
        self.transfer_log.push_streaming(t);
        // Indexes fit in u32 below `NO_TRANSFER`: a log holds at most `LOG_MAX` records.
        let newest = &mut self.newest_transfers;
        let earlier = [dr_index, cr_index].map(|a| mem::replace(&mut newest[a], index as u32));
        let accounts = [dr_index as u32, cr_index as u32];
        let movement =
            Movement { amount: t.amount, accounts, earlier, flags: t.flags, padding: [0; 7] };
        self.movements.push_streaming(&movement);
        // Indexed last, so that an id never points past the end of the log.
        self.transfers.insert(t.id, index);
    }

    /// Orders the streamed stores of the logs before what this thread does next: before the
    /// engine returns to a caller, which may hand it to another thread.
    pub(crate) fn fence_logs(&self) {
        self.transfer_log.fence();
        self.movements.fence();
        self.transfers.fence();
    }

    /// Brings the trail of the account at `account_index` up to date: appends, oldest first,
    /// the transfers of its chain that are newer than the trail's last.
    ///
    /// Following a chain waits for memory at every step; sweeping the movements since the last
    /// sweep into every trail reads them in order, about `WALK_STEPS_PER_SWEEP` times faster a
    /// transfer. So a query walks its account's chain only while the steps walked since the
    /// last sweep stay under what a sweep would cost, and sweeps instead once they would not:
    /// the first queries of a large ledger walk, and a sweep soon brings every trail up to date.
    /// Either way a query costs at most about twice the cheaper of the two.
    pub(crate) fn gather_trail(&mut self, account_index: usize) {
        let backlog = self.transfer_log.len() - self.trails_swept;
        let allowance = (backlog / WALK_STEPS_PER_SWEEP).saturating_sub(self.trail_steps);
        let trail = &mut self.account_trails[account_index].transfers;
        let gathered = trail.len();
        let last = trail.last().copied();
        let mut index = self.newest_transfers[account_index];
        // The chain runs newest first, and the trail holds an oldest part of it.
        while index != NO_TRANSFER && Some(index) != last {
            debug_assert!(last.is_none_or(|last| index > last));
            if trail.len() - gathered == allowance {
                trail.truncate(gathered);
                self.sweep_trails();
                return;
            }
            trail.push(index);
            index = self.movements[index as usize].earlier_of(account_index);
        }
        self.trail_steps += trail.len() - gathered;
        trail[gathered..].reverse();
    }

    /// Adds every transfer logged since the last sweep to the trails of its accounts that do not
    /// hold it yet, reading ahead the trails that come next.
    pub(crate) fn sweep_trails(&mut self) {
        let start = self.trails_swept;
        let movements = &self.movements;
        let trails = &mut self.account_trails;
        for (index, movement) in (start..).zip(movements.iter_from(start)) {
            if let Some(ahead) = movements.get(index + PREFETCH_AHEAD) {
                for a in ahead.accounts {
                    memory::prefetch(&trails[a as usize]);
                }
            }
            if let Some(ahead) = movements.get(index + PREFETCH_AHEAD / 2) {
                for a in ahead.accounts {
                    if let Some(end) = trails[a as usize].transfers.spare_capacity_mut().first() {
                        memory::prefetch(end);
                    }
                }
            }
            let index = index as u32;
            for account_index in movement.accounts {
                // A walk may have gathered the account's newest transfers already.
                let trail = &mut trails[account_index as usize].transfers;
                if trail.last() < Some(&index) {
                    trail.push(index);
                }
            }
        }
        self.trails_swept = self.transfer_log.len();
        self.trail_steps = 0;
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
        let undo = &mut self.undo;
        assert!(undo.active);
        for saved in undo.accounts_saved.iter().rev() {
            saved.restore(&mut self.account_log[saved.index]);
        }
        for &(pending_id, status) in undo.pending_saved.iter().rev() {
            match status {
                None => self.pending_status.remove(&pending_id),
                Some(status) => self.pending_status.insert(pending_id, status),
            };
        }
        for &transfer_id in undo.transfers_created.iter().rev() {
            let log = &self.transfer_log;
            let index = self.transfers.remove(transfer_id, |i| log[i].id);
            let popped = self.transfer_log.pop().expect("a created transfer is logged");
            assert!(popped.id == transfer_id && index == Some(self.transfer_log.len()));
            let movement = self.movements.pop().expect("a movement beside each transfer");
            for (account_index, earlier) in movement.accounts.into_iter().zip(movement.earlier) {
                let account_index = account_index as usize;
                let newest = mem::replace(&mut self.newest_transfers[account_index], earlier);
                assert_eq!(newest, self.transfer_log.len() as u32);
                // Queries run between batches, so a trail never holds a transfer of a chain.
                let trail = &mut self.account_trails[account_index];
                assert!(trail.transfers.last().is_none_or(|&last| last < newest));
                if let Some(history) = &mut trail.history {
                    history.pop().expect("a history entry per transfer");
                }
            }
        }
        for &account_id in undo.accounts_created.iter().rev() {
            let log = &self.account_log;
            let index = self.accounts.remove(account_id, |i| log[i].id);
            let popped = self.account_log.pop().expect("a created account is logged");
            assert!(popped.id == account_id && index == Some(self.account_log.len()));
            let trail = self.account_trails.pop().expect("a trail per account");
            let newest = self.newest_transfers.pop().expect("a chain per account");
            assert!(trail.transfers.is_empty(), "a chain of accounts moves no money");
            assert_eq!(newest, NO_TRANSFER, "a chain of accounts moves no money");
        }
        undo.clear();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(id: u128, debit: u128, credit: u128) -> Transfer {
        Transfer {
            id,
            debit_account_id: debit,
            credit_account_id: credit,
            amount: 1,
            ledger: 1,
            code: 1,
            ..Transfer::default()
        }
    }

    fn trail(engine: &mut Engine, account_index: usize) -> Vec<u128> {
        engine.gather_trail(account_index);
        let trail = &engine.account_trails[account_index].transfers;
        trail.iter().map(|&index| engine.transfer_log[index as usize].id).collect()
    }

    #[test]
    fn a_ledger_of_many_accounts_makes_its_first_transfer_segments_ahead() {
        let mut engine = Engine::new();
        let account = |id| Account { id, ledger: 1, code: 1, ..Account::default() };
        let first: Vec<Account> = (1..PREPARE_LOGS_ACCOUNTS_MIN as u128).map(account).collect();
        engine.create_accounts(&first, first.len() as u64);
        assert_eq!(engine.transfer_log.segments_ahead(), 0, "a small ledger makes none");
        let last = PREPARE_LOGS_ACCOUNTS_MIN as u128;
        engine.create_accounts(&[account(last)], last as u64);
        let ahead = [engine.transfer_log.segments_ahead(), engine.movements.segments_ahead()];
        assert_eq!(ahead, [1, 1]);
        engine.transfer_log.wait_for_segments_ahead();
        engine.create_transfers(&[transfer(1, 1, 2)], last as u64 + 1);
        assert_eq!(engine.transfer_log.segments_ahead(), 0, "the first transfer took it");
    }

    #[test]
    fn a_reservation_maps_the_logs_of_the_transfers_to_come_and_changes_no_result() {
        let account = |id| Account { id, ledger: 1, code: 1, ..Account::default() };
        let (mut reserved, mut plain) = (Engine::new(), Engine::new());
        for engine in [&mut reserved, &mut plain] {
            engine.create_accounts(&[account(1), account(2)], 2);
        }
        reserved.reserve_transfers(100_000);
        let room = [reserved.transfer_log.mapped_room(), reserved.movements.mapped_room()];
        assert!(room.iter().all(|&r| r >= 100_000), "{room:?}");
        let batch: Vec<Transfer> = (1..=1000).map(|i| transfer(i, 1 + i % 2, 2 - i % 2)).collect();
        let results = reserved.create_transfers(&batch, 10_000);
        assert_eq!(results, plain.create_transfers(&batch, 10_000));
        assert_eq!(reserved.transfer_log.segments_ahead(), 0, "none asked for: room enough");
    }

    /// A query walks a short chain in a large backlog, and sweeps when the walks since the last
    /// sweep would cost more than a sweep; both leave every trail whole and in order.
    #[test]
    fn queries_walk_short_chains_and_sweep_once_walking_costs_more() {
        let mut engine = Engine::new();
        let accounts: Vec<Account> =
            (1..=3).map(|id| Account { id, ledger: 1, code: 1, ..Account::default() }).collect();
        engine.create_accounts(&accounts, 3);
        let batch: Vec<Transfer> =
            (0..320).map(|i| transfer(100 + i, 1 + i % 2, 2 - i % 2)).collect();
        engine.create_transfers(&batch, 1_000);
        engine.create_transfers(&[transfer(7, 2, 3)], 1_001);
        assert_eq!(trail(&mut engine, 2), [7], "one step of the 20 that 321 transfers allow");
        assert_eq!((engine.trails_swept, engine.trail_steps), (0, 1));
        let expected: Vec<u128> = (100..420).chain([7]).collect();
        assert_eq!(trail(&mut engine, 1), expected, "321 steps: a sweep");
        assert_eq!((engine.trails_swept, engine.trail_steps), (321, 0));
        assert_eq!(trail(&mut engine, 0), (100..420).collect::<Vec<_>>());
        assert_eq!(trail(&mut engine, 2), [7], "the sweep skips what the walk gathered");
        engine.create_transfers(&[transfer(8, 3, 1)], 1_002);
        assert_eq!(trail(&mut engine, 0).last(), Some(&8));
        assert_eq!(engine.trails_swept, 322, "a backlog of one allows no step");
    }
}
