//! The checks of an imported engine state, the twin of `python/fastledger/_state_check.py`.
//!
//! A snapshot's checksums prove only that its bytes are the ones written; whoever can write them
//! can recompute them. So an engine imports a state only if it hangs together as a state that
//! the engine itself could have made: every field in range, every id once, every index
//! consistent, every balance the sum of the transfers that it holds. Both engines make these
//! checks in the same order, with the same messages, so that they accept and refuse exactly the
//! same states; the first that fails is the error. The engine's asserts and `balances_at` rely on
//! what they establish: no state that passes them reaches a panic.
//!
//! One check is stricter than the engine's own rules: replayed in log order, with each pending
//! transfer released at its expiry time, no balance may overflow. That is what `balances_at`
//! computes for the time of each transfer; a state for which it could overflow is refused.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use crate::engine::NS_PER_S;
use crate::state::{StateError, StateView};
use crate::types::{account_flags, transfer_flags, Account, Transfer, TIMESTAMP_MAX, U128_MAX};

// The statuses of a pending transfer, as the state format stores them.
const PENDING: u8 = 1;
const POSTED: u8 = 2;
const VOIDED: u8 = 3;
const EXPIRED: u8 = 4;

const PENDING_FLAG: u16 = transfer_flags::PENDING;
const POST: u16 = transfer_flags::POST_PENDING_TRANSFER;
const VOID: u16 = transfer_flags::VOID_PENDING_TRANSFER;
const BALANCING: u16 = transfer_flags::BALANCING_DEBIT | transfer_flags::BALANCING_CREDIT;
const CLOSING_DEBIT: u16 = transfer_flags::CLOSING_DEBIT;
const CLOSING_CREDIT: u16 = transfer_flags::CLOSING_CREDIT;
const CLOSING: u16 = CLOSING_DEBIT | CLOSING_CREDIT;
const IMPORTED: u16 = transfer_flags::IMPORTED;
const LIMITS: u16 =
    account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS | account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS;

/// The balances (debits pending, debits posted, credits pending, credits posted) of an account.
type Balances = [u128; 4];

/// The balances of each account, by index, as the transfers of the log make them in order: a
/// pending transfer counts from its place until it is resolved or, if it has a timeout, until
/// the first transfer stamped at or after its expiry.
struct Replay {
    balances: Vec<Balances>,
    /// (expires_at, transfer index), earliest on top.
    expiry: BinaryHeap<Reverse<(u128, usize)>>,
    /// The pending transfers counted now, by index: (debit account, credit account, amount).
    counted: HashMap<usize, (usize, usize, u128)>,
}

impl Replay {
    fn new(account_count: usize) -> Self {
        Self {
            balances: vec![[0; 4]; account_count],
            expiry: BinaryHeap::new(),
            counted: HashMap::new(),
        }
    }

    fn release_expired(&mut self, timestamp: u64) {
        while let Some(&Reverse((expires_at, index))) = self.expiry.peek() {
            if expires_at > u128::from(timestamp) {
                break;
            }
            self.expiry.pop();
            self.release(index);
        }
    }

    fn release(&mut self, index: usize) {
        if let Some((dr, cr, amount)) = self.counted.remove(&index) {
            // Counted in, so the subtraction takes back what was added.
            self.balances[dr][0] -= amount;
            self.balances[cr][2] -= amount;
        }
    }

    /// Counts transfer `index`; returns whether the balances of its accounts still fit.
    fn add(&mut self, index: usize, t: &Transfer, dr: usize, cr: usize) -> bool {
        if t.flags & VOID != 0 {
            return true;
        }
        let pending = t.flags & PENDING_FLAG != 0;
        let (debit, credit) = if pending { (0, 2) } else { (1, 3) };
        for (account, column) in [(dr, debit), (cr, credit)] {
            let Some(sum) = self.balances[account][column].checked_add(t.amount) else {
                return false;
            };
            self.balances[account][column] = sum;
        }
        if pending {
            self.counted.insert(index, (dr, cr, t.amount));
            if t.timeout != 0 {
                self.expiry.push(Reverse((expires_at(t), index)));
            }
        }
        balances_fit(&self.balances[dr]) && balances_fit(&self.balances[cr])
    }
}

/// What the transfer pass found, for the checks after it.
struct Transfers {
    index: HashMap<u128, usize>,
    resolved: HashSet<usize>,
    /// How many transfers debit or credit each account, by index.
    touched: Vec<u64>,
}

/// Refuses, naming the first fault, a state that does not hang together.
pub(crate) fn check_state(state: &StateView<'_>) -> Result<(), StateError> {
    let accounts = check_accounts(state)?;
    let pending_count = (0..state.transfers()).filter(|&i| is_pending(&state.transfer(i))).count();
    if pending_count != state.pending() {
        return Err(StateError("the engine state holds a status for each pending transfer".into()));
    }
    let transfers = check_transfers(state, &accounts)?;
    check_resolutions(state, &transfers.resolved)?;
    check_balances(state, &accounts)?;
    check_failed_ids(state, &transfers.index)?;
    check_history(state, &transfers.touched)
}

/// Checks every account on its own; returns the index of each account by id.
fn check_accounts(state: &StateView<'_>) -> Result<HashMap<u128, usize>, StateError> {
    let mut index = HashMap::with_capacity(state.accounts());
    let mut previous = 0;
    for i in 0..state.accounts() {
        let a = state.account(i);
        if let Some(fault) = account_fault(&a, previous, &index) {
            return Err(StateError(format!("account {} of the engine state {fault}", a.id)));
        }
        index.insert(a.id, i);
        previous = a.timestamp;
    }
    Ok(index)
}

fn account_fault(a: &Account, previous: u64, index: &HashMap<u128, usize>) -> Option<&'static str> {
    if a.id == 0 || a.id == U128_MAX {
        return Some("has an id no account may have");
    }
    if index.contains_key(&a.id) {
        return Some("appears twice");
    }
    if a.reserved != 0 {
        return Some("has a reserved field that is not zero");
    }
    if a.flags & !account_flags::KNOWN != 0 {
        return Some("has a reserved flag");
    }
    if a.flags & LIMITS == LIMITS {
        return Some("has mutually exclusive flags");
    }
    if a.ledger == 0 || a.code == 0 {
        return Some("has ledger or code zero");
    }
    if !(previous < a.timestamp && a.timestamp <= TIMESTAMP_MAX) {
        return Some("is not stamped after the account before it");
    }
    None
}

/// Checks every transfer in log order, replaying the balances it makes.
fn check_transfers(
    state: &StateView<'_>,
    accounts: &HashMap<u128, usize>,
) -> Result<Transfers, StateError> {
    let mut found = Transfers {
        index: HashMap::with_capacity(state.transfers()),
        resolved: HashSet::new(),
        touched: vec![0; state.accounts()],
    };
    let mut statuses: HashMap<usize, u8> = HashMap::new();
    let mut replay = Replay::new(state.accounts());
    let mut pending_statuses = 0..state.pending();
    let mut previous = 0;
    for i in 0..state.transfers() {
        let t = state.transfer(i);
        replay.release_expired(t.timestamp);
        let mut fault = transfer_fault(state, &t, previous, &found.index, accounts);
        if fault.is_none() && t.flags & (POST | VOID) != 0 {
            fault = resolving_fault(state, &t, &found.index, &statuses, &found.resolved);
        } else if fault.is_none() {
            fault = new_transfer_fault(&t);
        }
        if fault.is_none() && is_pending(&t) {
            let status = state.status(pending_statuses.next().expect("the statuses were counted"));
            statuses.insert(i, status);
            if status == EXPIRED && t.timeout == 0 {
                fault = Some("has expired without a timeout");
            }
        }
        let dr = accounts.get(&t.debit_account_id).copied().unwrap_or(0);
        let cr = accounts.get(&t.credit_account_id).copied().unwrap_or(0);
        if fault.is_none() && t.flags & (POST | VOID) != 0 {
            let p = found.index[&t.pending_id];
            found.resolved.insert(p);
            replay.release(p);
        }
        if fault.is_none() && !replay.add(i, &t, dr, cr) {
            fault = Some("overflows the balances of its accounts");
        }
        if let Some(fault) = fault {
            return Err(StateError(format!("transfer {} of the engine state {fault}", t.id)));
        }
        found.index.insert(t.id, i);
        found.touched[dr] += 1;
        found.touched[cr] += 1;
        previous = t.timestamp;
    }
    Ok(found)
}

/// What every transfer must be, pending, resolving or neither.
fn transfer_fault(
    state: &StateView<'_>,
    t: &Transfer,
    previous: u64,
    index: &HashMap<u128, usize>,
    accounts: &HashMap<u128, usize>,
) -> Option<&'static str> {
    if t.id == 0 || t.id == U128_MAX {
        return Some("has an id no transfer may have");
    }
    if index.contains_key(&t.id) {
        return Some("appears twice");
    }
    if t.flags & !transfer_flags::KNOWN != 0 {
        return Some("has a reserved flag");
    }
    if !(previous < t.timestamp && t.timestamp <= TIMESTAMP_MAX) {
        return Some("is not stamped after the transfer before it");
    }
    if state.holds_account_timestamp(t.timestamp) {
        return Some("shares its timestamp with an account");
    }
    let (Some(&dr), Some(&cr)) =
        (accounts.get(&t.debit_account_id), accounts.get(&t.credit_account_id))
    else {
        return Some("names a missing account");
    };
    if t.debit_account_id == t.credit_account_id {
        return Some("has the same debit and credit account");
    }
    let (dr, cr) = (state.account(dr), state.account(cr));
    if t.timestamp <= dr.timestamp || t.timestamp <= cr.timestamp {
        return Some("predates one of its accounts");
    }
    if !(t.ledger == dr.ledger && dr.ledger == cr.ledger) {
        return Some("is not on the ledger of its accounts");
    }
    if t.code == 0 {
        return Some("has code zero");
    }
    None
}

/// What a post or a void must be: the one resolution of an earlier pending transfer.
fn resolving_fault(
    state: &StateView<'_>,
    t: &Transfer,
    index: &HashMap<u128, usize>,
    statuses: &HashMap<usize, u8>,
    resolved: &HashSet<usize>,
) -> Option<&'static str> {
    if (t.flags & POST != 0 && t.flags & VOID != 0)
        || t.flags & (PENDING_FLAG | BALANCING | CLOSING) != 0
    {
        return Some("has mutually exclusive flags");
    }
    if t.timeout != 0 {
        return Some("has a timeout, which only a pending transfer may have");
    }
    let Some(&p_index) = index.get(&t.pending_id) else {
        return Some("resolves no earlier transfer");
    };
    let p = state.transfer(p_index);
    if !is_pending(&p) {
        return Some("resolves a transfer that is not pending");
    }
    if resolved.contains(&p_index) {
        return Some("resolves a pending transfer resolved before");
    }
    if (t.debit_account_id, t.credit_account_id, t.ledger, t.code)
        != (p.debit_account_id, p.credit_account_id, p.ledger, p.code)
    {
        return Some("differs from the pending transfer it resolves");
    }
    if t.amount > p.amount || (t.flags & VOID != 0 && t.amount != p.amount) {
        return Some("moves an amount that its pending transfer does not allow");
    }
    if p.timeout != 0 && u128::from(t.timestamp) >= expires_at(&p) {
        return Some("resolves its pending transfer after it expired");
    }
    let expected = if t.flags & POST != 0 { POSTED } else { VOIDED };
    if statuses[&p_index] != expected {
        return Some("resolves a pending transfer whose status says otherwise");
    }
    None
}

/// What a transfer that resolves nothing must be.
fn new_transfer_fault(t: &Transfer) -> Option<&'static str> {
    if t.pending_id != 0 {
        return Some("has a pending id, but resolves nothing");
    }
    if !is_pending(t) && t.timeout != 0 {
        return Some("has a timeout, which only a pending transfer may have");
    }
    if !is_pending(t) && t.flags & CLOSING != 0 {
        return Some("closes an account, which only a pending transfer may do");
    }
    if t.flags & IMPORTED != 0 && t.timeout != 0 {
        return Some("is imported with a timeout");
    }
    if expires_at(t) > u128::from(TIMESTAMP_MAX) {
        return Some("expires after the last timestamp");
    }
    None
}

/// A pending transfer whose status says posted or voided has its post or void.
fn check_resolutions(state: &StateView<'_>, resolved: &HashSet<usize>) -> Result<(), StateError> {
    let mut pending_statuses = 0..state.pending();
    for i in 0..state.transfers() {
        let t = state.transfer(i);
        if !is_pending(&t) {
            continue;
        }
        let status = state.status(pending_statuses.next().expect("the statuses were counted"));
        if (status == POSTED || status == VOIDED) && !resolved.contains(&i) {
            let message = format!(
                "transfer {} of the engine state has status {status}, but no transfer resolves it",
                t.id
            );
            return Err(StateError(message));
        }
    }
    Ok(())
}

/// Each account holds the balances that its transfers make, and they fit.
fn check_balances(
    state: &StateView<'_>,
    accounts: &HashMap<u128, usize>,
) -> Result<(), StateError> {
    // `None` for a sum past `U128_MAX`, which no account can hold.
    let mut expected: Vec<[Option<u128>; 4]> = vec![[Some(0); 4]; state.accounts()];
    let still_pending = still_pending(state);
    for i in 0..state.transfers() {
        let t = state.transfer(i);
        let (dr, cr) = (accounts[&t.debit_account_id], accounts[&t.credit_account_id]);
        let columns = if is_pending(&t) {
            if !still_pending.contains(&i) {
                continue;
            }
            (0, 2)
        } else if t.flags & VOID == 0 {
            (1, 3)
        } else {
            continue;
        };
        for (account, column) in [(dr, columns.0), (cr, columns.1)] {
            let sum = &mut expected[account][column];
            *sum = sum.and_then(|sum| sum.checked_add(t.amount));
        }
    }
    for (i, balances) in expected.iter().enumerate() {
        let a = state.account(i);
        let held = [a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted];
        if held.map(Some) != *balances {
            let message = format!(
                "account {} of the engine state does not hold the balances of its transfers",
                a.id
            );
            return Err(StateError(message));
        }
        if !balances_fit(&held) {
            let message =
                format!("account {} of the engine state has balances that overflow", a.id);
            return Err(StateError(message));
        }
    }
    check_closing(state, accounts, &still_pending)
}

/// The accounts that a pending closing transfer closes are closed while it is pending.
fn check_closing(
    state: &StateView<'_>,
    accounts: &HashMap<u128, usize>,
    still_pending: &HashSet<usize>,
) -> Result<(), StateError> {
    for i in 0..state.transfers() {
        if !still_pending.contains(&i) {
            continue;
        }
        let t = state.transfer(i);
        let debit = state.account(accounts[&t.debit_account_id]);
        let credit = state.account(accounts[&t.credit_account_id]);
        for (side, account) in [(CLOSING_DEBIT, debit), (CLOSING_CREDIT, credit)] {
            if t.flags & side != 0 && account.flags & account_flags::CLOSED == 0 {
                let message = format!(
                    "transfer {} of the engine state closes account {}, which is open",
                    t.id, account.id
                );
                return Err(StateError(message));
            }
        }
    }
    Ok(())
}

/// The indexes of the pending transfers whose status is pending.
fn still_pending(state: &StateView<'_>) -> HashSet<usize> {
    let pending = (0..state.transfers()).filter(|&i| is_pending(&state.transfer(i)));
    let statuses = (0..state.pending()).map(|i| state.status(i));
    pending.zip(statuses).filter(|&(_, status)| status == PENDING).map(|(i, _)| i).collect()
}

fn check_failed_ids(
    state: &StateView<'_>,
    transfers: &HashMap<u128, usize>,
) -> Result<(), StateError> {
    let mut previous = None;
    for i in 0..state.failed() {
        let id = state.failed_id(i);
        if id == 0 || id == U128_MAX {
            let message =
                format!("failed id {id} of the engine state is an id no transfer may have");
            return Err(StateError(message));
        }
        if previous.is_some_and(|previous| id <= previous) {
            return Err(StateError(
                "the failed ids of the engine state are not in ascending order".into(),
            ));
        }
        if transfers.contains_key(&id) {
            let message = format!("failed id {id} of the engine state is the id of a transfer");
            return Err(StateError(message));
        }
        previous = Some(id);
    }
    Ok(())
}

/// An account flagged HISTORY holds a balance after each of its transfers, which fits.
fn check_history(state: &StateView<'_>, touched: &[u64]) -> Result<(), StateError> {
    let with_history: Vec<(Account, u64)> = (0..state.accounts())
        .map(|i| (state.account(i), touched[i]))
        .filter(|(a, _)| a.flags & account_flags::HISTORY != 0)
        .collect();
    let needed: u128 = with_history.iter().map(|&(_, count)| u128::from(count)).sum();
    if needed != state.history() as u128 {
        return Err(StateError(
            "the engine state holds a balance for each history transfer".into(),
        ));
    }
    let mut entry = 0;
    for (a, count) in with_history {
        for _ in 0..count {
            if !balances_fit(&state.history_entry(entry)) {
                let message =
                    format!("a history entry of account {} of the engine state overflows", a.id);
                return Err(StateError(message));
            }
            entry += 1;
        }
    }
    Ok(())
}

fn is_pending(t: &Transfer) -> bool {
    t.flags & PENDING_FLAG != 0
}

/// The invariant that makes posting safe: pending plus posted never overflows, on either side.
fn balances_fit(balances: &Balances) -> bool {
    let [debits_pending, debits_posted, credits_pending, credits_posted] = *balances;
    debits_pending.checked_add(debits_posted).is_some()
        && credits_pending.checked_add(credits_posted).is_some()
}

/// When a transfer with a timeout expires, in u128 so that no field can overflow it.
fn expires_at(t: &Transfer) -> u128 {
    u128::from(t.timestamp) + u128::from(t.timeout) * u128::from(NS_PER_S)
}
