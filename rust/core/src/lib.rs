//! The fastledger state machine, written without PyO3 so that `cargo test` alone can check it.
//!
//! `types` holds the records and flags, `status` the create statuses in precedence order,
//! `engine` the state machine itself, `query` its read side (filters and point-in-time balances),
//! `state` its snapshot format and `state_check` the checks that an imported state passes; the
//! first three are the twins of `rules.py`, `query.py` and `state.py` in
//! `python/fastledger/engine/`. The binding crate (`rust/python`) converts Python objects to these
//! types and back; nothing in here knows about Python.

pub mod engine;
mod index;
mod log;
mod memory;
pub mod query;
pub mod state;
mod state_check;
pub mod status;
pub mod types;

pub use engine::{Engine, PendingStatus};
pub use query::{AccountFilter, BalancesAt, QueryFilter, WideSum};
pub use state::StateError;
pub use status::{BatchStatus, CreateAccountStatus, CreateTransferStatus};
pub use types::{
    account_flags, transfer_flags, Account, AccountBalance, Transfer, TransferRecord, AMOUNT_MAX,
    BATCH_MAX, RECORD_SIZE, TIMESTAMP_MAX, U128_MAX,
};

/// Returns how many whole records a buffer of `len_bytes` bytes holds, or `None` when the length
/// is not a multiple of [`RECORD_SIZE`]: a packed batch with a partial record is rejected whole
/// rather than read up to its last complete record.
pub fn record_count(len_bytes: usize) -> Option<usize> {
    if len_bytes % RECORD_SIZE == 0 {
        Some(len_bytes / RECORD_SIZE)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_count_of_an_empty_buffer_is_zero() {
        assert_eq!(record_count(0), Some(0));
    }

    #[test]
    fn record_count_counts_whole_records() {
        assert_eq!(record_count(RECORD_SIZE), Some(1));
        assert_eq!(record_count(8189 * RECORD_SIZE), Some(8189));
    }

    #[test]
    fn record_count_rejects_a_partial_record() {
        assert_eq!(record_count(1), None);
        assert_eq!(record_count(RECORD_SIZE - 1), None);
        assert_eq!(record_count(RECORD_SIZE + 1), None);
    }
}
