//! The engine state format of snapshots, the twin of `python/fastledger/_state.py` (which
//! documents the layout): both engines export and import these exact bytes, so a snapshot
//! written by one opens in the other.

use std::cmp::Reverse;

use crate::engine::{expires_at, Engine, PendingStatus};
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
    /// it: the id maps, the per-account transfer lists and the expiry heap.
    pub fn import_state(state: &[u8]) -> Result<Engine, StateError> {
        let sections = Sections::decode(state)?;
        let mut engine = Engine::new();
        // Sized once: growing the indexes and logs record by record rehashed and copied them
        // again and again, which made importing slower than replaying the journal.
        engine.accounts.reserve(sections.accounts);
        engine.account_log.reserve(sections.accounts);
        engine.account_trails.reserve_exact(sections.accounts);
        engine.newest_transfers.reserve_exact(sections.accounts);
        engine.transfers.reserve(sections.transfers);
        for i in 0..sections.accounts {
            let a = Account::from_bytes(record_at(state, sections.accounts_at + i * RECORD_SIZE));
            engine.log_account(Account { reserved: 0, ..a });
        }
        let transfer = |i: usize| {
            Transfer::from_bytes(record_at(state, sections.transfers_at + i * RECORD_SIZE))
        };
        let statuses = &state[sections.pending_at..sections.pending_at + sections.pending];
        // Checked where the reference engine's decoder checks them: paired in order with the
        // pending transfers, before their count is compared.
        let pending = (0..sections.transfers)
            .map(&transfer)
            .filter(|t| t.flags & transfer_flags::PENDING != 0);
        let mut pending_count = 0;
        for t in pending {
            if let Some(&byte) = statuses.get(pending_count) {
                if PendingStatus::from_byte(byte).is_none() {
                    let message = format!("pending transfer {} has status {byte}", t.id);
                    return Err(StateError(message));
                }
            }
            pending_count += 1;
        }
        if pending_count != sections.pending {
            return Err(StateError(
                "the engine state holds a status for each pending transfer".into(),
            ));
        }
        let mut statuses = statuses.iter();
        for i in 0..sections.transfers {
            engine.import_transfer(&transfer(i), &mut statuses)?;
        }
        engine.sweep_trails();
        for i in 0..sections.failed {
            engine.failed_ids.insert(u128_at(state, sections.failed_at + i * U128_SIZE));
        }
        engine.import_history(&state[sections.history_at..], sections.history)?;
        engine.fence_logs();
        Ok(engine)
    }

    fn import_transfer<'a>(
        &mut self,
        t: &Transfer,
        statuses: &mut impl Iterator<Item = &'a u8>,
    ) -> Result<(), StateError> {
        let missing =
            || StateError(format!("transfer {} of the engine state names a missing account", t.id));
        let dr = self.account_index(t.debit_account_id).ok_or_else(missing)?;
        let cr = self.account_index(t.credit_account_id).ok_or_else(missing)?;
        self.log_transfer(t, dr, cr);
        if t.flags & transfer_flags::PENDING != 0 {
            let byte = *statuses.next().expect("the statuses were counted");
            let status = PendingStatus::from_byte(byte).expect("the statuses were checked");
            self.pending_status.insert(t.id, status);
            if status == PendingStatus::Pending && t.timeout != 0 {
                self.expiry.push(Reverse((expires_at(t), t.timestamp, t.id)));
            }
        }
        Ok(())
    }

    /// Hands the history entries, in order, to the transfers of each account flagged HISTORY.
    fn import_history(&mut self, entries: &[u8], count: usize) -> Result<(), StateError> {
        let needed: usize = self
            .account_trails
            .iter()
            .filter(|trail| trail.history.is_some())
            .map(|trail| trail.transfers.len())
            .sum();
        if needed != count {
            return Err(StateError(
                "the engine state holds a balance for each history transfer".into(),
            ));
        }
        let mut offset = 0;
        for trail in &mut self.account_trails {
            let Some(history) = &mut trail.history else {
                continue;
            };
            for &index in &trail.transfers {
                let value = |i: usize| u128_at(entries, offset + i * U128_SIZE);
                history.push(AccountBalance {
                    debits_pending: value(0),
                    debits_posted: value(1),
                    credits_pending: value(2),
                    credits_posted: value(3),
                    timestamp: self.transfer_log[index as usize].timestamp,
                });
                offset += BALANCE_SIZE;
            }
        }
        Ok(())
    }
}

/// Where each section of a state starts, and how many entries it holds.
struct Sections {
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
