//! The records that the scenarios of every test file build, written once.
// Each test file is its own crate and uses only some of these.
#![allow(dead_code)]

use fastledger_core::{transfer_flags, Account, Transfer};

pub const NS_PER_S: u64 = 1_000_000_000;

/// An account of ledger 1 and code 1.
pub fn account(id: u128, flags: u16) -> Account {
    Account { id, ledger: 1, code: 1, flags, ..Account::default() }
}

/// A transfer of ledger 1 and code 1.
pub fn transfer(id: u128, debit: u128, credit: u128, amount: u128, flags: u16) -> Transfer {
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger: 1,
        code: 1,
        flags,
        ..Transfer::default()
    }
}

pub fn pending(id: u128, debit: u128, credit: u128, amount: u128, timeout_s: u32) -> Transfer {
    Transfer { timeout: timeout_s, ..transfer(id, debit, credit, amount, transfer_flags::PENDING) }
}

/// A post that names only what it must: every other field it inherits from the pending transfer.
pub fn post(id: u128, pending_id: u128, amount: u128) -> Transfer {
    Transfer {
        id,
        pending_id,
        amount,
        flags: transfer_flags::POST_PENDING_TRANSFER,
        ..Transfer::default()
    }
}

pub fn void(id: u128, pending_id: u128) -> Transfer {
    Transfer { id, pending_id, flags: transfer_flags::VOID_PENDING_TRANSFER, ..Transfer::default() }
}
