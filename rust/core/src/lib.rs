//! The fastledger state machine, written without PyO3 so that `cargo test` alone can check it.
//!
//! `types` holds the records and flags, `status` the create statuses in precedence order,
//! `engine` the state machine's rules, `prefetch` the batch loop's look-ahead at the events to
//! come, `movement` the index of what each transfer moved, which chains the transfers of each
//! account for queries, `query` the read side (filters and point-in-time balances), `state` the
//! snapshot format and `state_check` the checks that an imported state passes. `engine`, `query`
//! and `state` are the twins of `rules.py`, `query.py` and `state.py` in
//! `python/fastledger/engine/`. The binding crate (`rust/python`) converts Python objects to these
//! types and back; nothing in here knows about Python.

pub mod engine;
mod index;
mod log;
mod memory;
mod movement;
mod prefetch;
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
