//! The batch loop's look-ahead: while the engine creates one event, it starts reading from
//! memory what the events a little further on will need (their index slots, then the records
//! those slots point to), so that each create finds its reads cached. Nothing here decides a
//! status; a create that the look-ahead did not reach looks its records up itself, with the same
//! result.

use std::mem;

use crate::engine::Engine;
use crate::memory;
use crate::types::{transfer_flags, Account, Transfer, TransferRecord};

const POST: u16 = transfer_flags::POST_PENDING_TRANSFER;
const VOID: u16 = transfer_flags::VOID_PENDING_TRANSFER;

/// How many events ahead of the one being created the batch loop prefetches index slots: far
/// enough for a read from memory to arrive before its event's turn, near enough that the slots
/// are still cached then. It prefetches the records those slots point to half as far ahead,
/// and the events themselves half as far again.
pub(crate) const PREFETCH_AHEAD: usize = 16;

/// How the batch loop looks ahead at an event, be it an account or a transfer.
pub(crate) trait Prefetch {
    /// What `prefetch_records` found for the event's create to use; the default when the loop
    /// did not look ahead at the event (the first events of a batch).
    type Found: Copy + Default;
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
pub(crate) struct AccountsFound {
    pub(crate) debit: Option<usize>,
    pub(crate) credit: Option<usize>,
}

impl Prefetch for Account {
    type Found = ();
    fn prefetch(&self, engine: &Engine) {
        engine.accounts.prefetch(self.id);
    }
    fn prefetch_records(&self, _: &Engine) {
        // A new account reads no record.
    }
}

impl Prefetch for Transfer {
    /// `None` for a post or a void, which finds its accounts through its pending transfer.
    type Found = Option<AccountsFound>;
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

/// A record of a packed batch is looked ahead at as the transfer it decodes to: the compiler
/// reads just the few fields that the look-ahead needs from the record.
impl Prefetch for TransferRecord {
    type Found = Option<AccountsFound>;
    fn prefetch(&self, engine: &Engine) {
        self.transfer().prefetch(engine);
    }
    fn prefetch_records(&self, engine: &Engine) -> Option<AccountsFound> {
        self.transfer().prefetch_records(engine)
    }
}

/// What the look-ahead found for the next events of a batch, by index modulo its length.
pub(crate) struct LookAhead<F> {
    found: [F; PREFETCH_AHEAD],
}

impl<F: Copy + Default> LookAhead<F> {
    pub(crate) fn new() -> Self {
        Self { found: [F::default(); PREFETCH_AHEAD] }
    }

    /// Starts the reads of the events ahead of the one at `index`, each stage at its distance,
    /// and hands over what was found for the event at `index`.
    #[inline(always)]
    pub(crate) fn next<E: Prefetch<Found = F>>(
        &mut self,
        engine: &Engine,
        events: &[E],
        index: usize,
    ) -> F {
        if let Some(ahead) = events.get(index + PREFETCH_AHEAD * 3 / 2) {
            memory::prefetch(ahead);
        }
        if let Some(ahead) = events.get(index + PREFETCH_AHEAD) {
            ahead.prefetch(engine);
        }
        if let Some(ahead) = events.get(index + PREFETCH_AHEAD / 2) {
            self.found[(index + PREFETCH_AHEAD / 2) % PREFETCH_AHEAD] =
                ahead.prefetch_records(engine);
        }
        mem::take(&mut self.found[index % PREFETCH_AHEAD])
    }
}

impl Engine {
    /// As `account_index`, where the batch loop's look-ahead `found` the account (`None` if it
    /// did not look).
    #[inline(always)]
    pub(crate) fn found_account_index(
        &self,
        id: u128,
        found: Option<Option<usize>>,
    ) -> Option<usize> {
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
}
