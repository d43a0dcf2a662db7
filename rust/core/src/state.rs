//! The engine state format of snapshots, the twin of `python/fastledger/_state.py` (which
//! documents the layout), and its export and import, the twin of
//! `python/fastledger/engine/state.py`: both engines export and import these exact bytes, so a
//! snapshot written by one opens in the other.

use std::cmp::{Ordering, Reverse};

use crate::engine::{expires_at, Engine, PendingStatus};
use crate::state_check::check_state;
use crate::types::{transfer_flags, Account, AccountBalance, Transfer, RECORD_SIZE};

pub const STATE_MAGIC: &[u8; 8] = b"FLSTATE\0";
pub const STATE_VERSION: u32 = 1;
const HEADER_SIZE: usize = 64;
const U128_SIZE: usize = 16;
const BALANCE_SIZE: usize = 4 * U128_SIZE;

/// Why a state cannot be imported; the message is the reference engine's `ValueError`'s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateError(pub String);

impl PendingStatus {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Pending),
            2 => Some(Self::Posted),
            3 => Some(Self::Voided),
            4 => Some(Self::Expired),
            _ => None,
        }
    }
}

/// Zero bytes that bring `length` to a multiple of 16.
fn padding(length: usize) -> usize {
    (U128_SIZE - length % U128_SIZE) % U128_SIZE
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"))
}

fn u128_at(bytes: &[u8], offset: usize) -> u128 {
    u128::from_le_bytes(bytes[offset..offset + U128_SIZE].try_into().expect("16 bytes"))
}

fn record_at(bytes: &[u8], offset: usize) -> &[u8; RECORD_SIZE] {
    bytes[offset..offset + RECORD_SIZE].try_into().expect("a whole record")
}

impl Engine {
    /// The whole state in the engine state format: the same state gives the same bytes in both
    /// engines.
    pub fn export_state(&self) -> Vec<u8> {
        let pending: Vec<u8> = self
            .transfer_log
            .iter()
            .filter(|t| t.flags & transfer_flags::PENDING != 0)
            .map(|t| self.pending_status[&t.id] as u8)
            .collect();
        let mut failed: Vec<u128> = self.failed_ids.iter().copied().collect();
        failed.sort_unstable();
        let history: Vec<&AccountBalance> = self
            .account_trails
            .iter()
            .filter_map(|trail| trail.history.as_ref())
            .flatten()
            .collect();
        let counts = [
            self.account_log.len(),
            self.transfer_log.len(),
            pending.len(),
            failed.len(),
            history.len(),
        ]
        .map(|n| n as u64);
        // Sized once: growing it by doubling copied the state over and over under the
        // ledger's lock.
        let mut state = Vec::with_capacity(Sections::expected_length(counts) as usize);
        state.extend_from_slice(STATE_MAGIC);
        state.extend_from_slice(&STATE_VERSION.to_le_bytes());
        state.extend_from_slice(&0u32.to_le_bytes());
        for count in counts.into_iter().chain([0]) {
            state.extend_from_slice(&count.to_le_bytes());
        }
        assert_eq!(state.len(), HEADER_SIZE);
        self.account_log.iter().for_each(|a| state.extend_from_slice(&a.to_bytes()));
        self.transfer_log.iter().for_each(|t| state.extend_from_slice(&t.to_bytes()));
        state.extend_from_slice(&pending);
        state.resize(state.len() + padding(state.len()), 0);
        failed.iter().for_each(|id| state.extend_from_slice(&id.to_le_bytes()));
        for b in history {
            for value in [b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted] {
                state.extend_from_slice(&value.to_le_bytes());
            }
        }
        assert_eq!(state.len() as u128, Sections::expected_length(counts));
        state
    }

    /// A fresh engine holding a state that `export_state` made, with every index rebuilt from
    /// it: the id maps, the per-account transfer lists and the expiry heap. Refuses a state
    /// that does not hang together (`state_check.rs`).
    pub fn import_state(state: &[u8]) -> Result<Engine, StateError> {
        let sections = Sections::decode(state)?;
        let view = StateView { state, sections: &sections };
        view.check_pending_statuses()?;
        check_state(&view)?;
        let mut engine = Engine::new();
        // Sized once: growing the indexes and logs record by record rehashed and copied them
        // again and again, which made importing slower than replaying the journal.
        engine.accounts.reserve(sections.accounts);
        engine.account_log.reserve(sections.accounts);
        engine.account_trails.reserve_exact(sections.accounts);
        engine.newest_transfers.reserve_exact(sections.accounts);
        engine.transfers.reserve(sections.transfers);
        for i in 0..sections.accounts {
            engine.log_account(view.account(i));
        }
        let mut statuses = (0..sections.pending).map(|i| view.status(i));
        for i in 0..sections.transfers {
            engine.import_transfer(&view.transfer(i), &mut statuses);
        }
        engine.sweep_trails();
        for i in 0..sections.failed {
            engine.failed_ids.insert(view.failed_id(i));
        }
        engine.import_history(&view);
        engine.fence_logs();
        Ok(engine)
    }

    /// Logs a transfer of a checked state, with its pending status if it is pending.
    fn import_transfer(&mut self, t: &Transfer, statuses: &mut impl Iterator<Item = u8>) {
        let dr = self.account_index(t.debit_account_id).expect("checked: its accounts exist");
        let cr = self.account_index(t.credit_account_id).expect("checked: its accounts exist");
        self.log_transfer(t, dr, cr);
        if t.flags & transfer_flags::PENDING != 0 {
            let byte = statuses.next().expect("checked: a status per pending transfer");
            let status = PendingStatus::from_byte(byte).expect("checked: a known status");
            self.pending_status.insert(t.id, status);
            if status == PendingStatus::Pending && t.timeout != 0 {
                self.expiry.push(Reverse((expires_at(t), t.timestamp, t.id)));
            }
        }
    }

    /// Hands the history entries, in order, to the transfers of each account flagged HISTORY;
    /// the state was checked to hold one for each.
    fn import_history(&mut self, view: &StateView<'_>) {
        let mut entry = 0;
        for trail in &mut self.account_trails {
            let Some(history) = &mut trail.history else {
                continue;
            };
            for &index in &trail.transfers {
                let [debits_pending, debits_posted, credits_pending, credits_posted] =
                    view.history_entry(entry);
                let timestamp = self.transfer_log[index as usize].timestamp;
                history.push(AccountBalance {
                    debits_pending,
                    debits_posted,
                    credits_pending,
                    credits_posted,
                    timestamp,
                });
                entry += 1;
            }
        }
    }
}

/// A decoded state read in place: the records and entries of each section, by index.
pub(crate) struct StateView<'a> {
    state: &'a [u8],
    sections: &'a Sections,
}

impl StateView<'_> {
    pub(crate) fn accounts(&self) -> usize {
        self.sections.accounts
    }

    pub(crate) fn transfers(&self) -> usize {
        self.sections.transfers
    }

    pub(crate) fn pending(&self) -> usize {
        self.sections.pending
    }

    pub(crate) fn failed(&self) -> usize {
        self.sections.failed
    }

    pub(crate) fn history(&self) -> usize {
        self.sections.history
    }

    pub(crate) fn account(&self, i: usize) -> Account {
        Account::from_bytes(record_at(self.state, self.sections.accounts_at + i * RECORD_SIZE))
    }

    pub(crate) fn transfer(&self, i: usize) -> Transfer {
        Transfer::from_bytes(record_at(self.state, self.sections.transfers_at + i * RECORD_SIZE))
    }

    /// The status byte of the `i`th pending transfer.
    pub(crate) fn status(&self, i: usize) -> u8 {
        self.state[self.sections.pending_at + i]
    }

    pub(crate) fn failed_id(&self, i: usize) -> u128 {
        u128_at(self.state, self.sections.failed_at + i * U128_SIZE)
    }

    /// The four balances of the `i`th history entry.
    pub(crate) fn history_entry(&self, i: usize) -> [u128; 4] {
        let at = self.sections.history_at + i * BALANCE_SIZE;
        [0, 1, 2, 3].map(|j| u128_at(self.state, at + j * U128_SIZE))
    }

    /// Whether an account is stamped `timestamp`; the accounts were checked to be in order.
    pub(crate) fn holds_account_timestamp(&self, timestamp: u64) -> bool {
        let (mut low, mut high) = (0, self.accounts());
        while low < high {
            let middle = low + (high - low) / 2;
            match self.account(middle).timestamp.cmp(&timestamp) {
                Ordering::Less => low = middle + 1,
                Ordering::Equal => return true,
                Ordering::Greater => high = middle,
            }
        }
        false
    }

    /// Refuses an unknown status byte, where the reference engine's decoder does: paired in
    /// order with the pending transfers, before their count is compared.
    fn check_pending_statuses(&self) -> Result<(), StateError> {
        let pending = (0..self.transfers())
            .map(|i| self.transfer(i))
            .filter(|t| t.flags & transfer_flags::PENDING != 0);
        for (i, t) in pending.take(self.pending()).enumerate() {
            let byte = self.status(i);
            if PendingStatus::from_byte(byte).is_none() {
                return Err(StateError(format!("pending transfer {} has status {byte}", t.id)));
            }
        }
        Ok(())
    }
}

/// Where each section of a state starts, and how many entries it holds.
pub(crate) struct Sections {
    accounts: usize,
    accounts_at: usize,
    transfers: usize,
    transfers_at: usize,
    pending: usize,
    pending_at: usize,
    failed: usize,
    failed_at: usize,
    history: usize,
    history_at: usize,
}

impl Sections {
    /// Reads the header and checks that the state's length is exactly what it announces.
    fn decode(state: &[u8]) -> Result<Self, StateError> {
        if state.len() < HEADER_SIZE {
            return Err(StateError("the engine state is shorter than its header".into()));
        }
        let version = u32::from_le_bytes(state[8..12].try_into().expect("4 bytes"));
        if &state[..8] != STATE_MAGIC || version != STATE_VERSION {
            return Err(StateError(format!("not an engine state of format {STATE_VERSION}")));
        }
        let reserved = u32::from_le_bytes(state[12..16].try_into().expect("4 bytes"));
        if reserved != 0 || u64_at(state, 56) != 0 {
            return Err(StateError(
                "the reserved fields of the engine state's header are not zero".into(),
            ));
        }
        let count = |i: usize| u64_at(state, 16 + 8 * i);
        let counts = [count(0), count(1), count(2), count(3), count(4)];
        let expected = Self::expected_length(counts);
        if expected != state.len() as u128 {
            let length = state.len();
            let message =
                format!("the engine state holds {length} bytes, its header says {expected}");
            return Err(StateError(message));
        }
        let [accounts, transfers, pending, failed, history] = counts.map(|n| n as usize);
        let transfers_at = HEADER_SIZE + accounts * RECORD_SIZE;
        let pending_at = transfers_at + transfers * RECORD_SIZE;
        let failed_at = pending_at + pending + padding(pending_at + pending);
        if state[pending_at + pending..failed_at].iter().any(|&byte| byte != 0) {
            return Err(StateError("the padding of the engine state is not zero".into()));
        }
        let history_at = failed_at + failed * U128_SIZE;
        Ok(Self {
            accounts,
            accounts_at: HEADER_SIZE,
            transfers,
            transfers_at,
            pending,
            pending_at,
            failed,
            failed_at,
            history,
            history_at,
        })
    }

    /// The length the header announces, in u128 so that no count can overflow it.
    fn expected_length(counts: [u64; 5]) -> u128 {
        let [accounts, transfers, pending, failed, history] = counts.map(u128::from);
        let record = RECORD_SIZE as u128;
        let end_of_pending = HEADER_SIZE as u128 + (accounts + transfers) * record + pending;
        let padded = end_of_pending + (16 - end_of_pending % 16) % 16;
        padded + failed * U128_SIZE as u128 + history * BALANCE_SIZE as u128
    }
}
