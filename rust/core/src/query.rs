//! Queries and point-in-time balances: the read side of the engine, the twin of
//! `python/fastledger/engine/query.py`. Filters follow TigerBeetle's rules: an invalid filter
//! matches nothing.

use crate::engine::{expires_at, Engine};
use crate::log::partition_point;
use crate::types::{transfer_flags, Account, AccountBalance, Timestamped, Transfer, U128_MAX};

pub mod account_filter_flags {
    pub const DEBITS: u32 = 1 << 0;
    pub const CREDITS: u32 = 1 << 1;
    pub const REVERSED: u32 = 1 << 2;
    pub const KNOWN: u32 = DEBITS | CREDITS | REVERSED;
}

pub mod query_filter_flags {
    pub const REVERSED: u32 = 1 << 0;
    pub const KNOWN: u32 = REVERSED;
}

/// Selects the transfers (or balances) of one account; zero fields do not filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountFilter {
    pub account_id: u128,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    pub code: u16,
    pub timestamp_min: u64,
    pub timestamp_max: u64,
    pub limit: u32,
    pub flags: u32,
}

/// Selects accounts or transfers by their secondary fields; zero fields do not filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryFilter {
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    pub ledger: u32,
    pub code: u16,
    pub timestamp_min: u64,
    pub timestamp_max: u64,
    pub limit: u32,
    pub flags: u32,
}

/// The balances of accounts at one timestamp, as columns: `account_ids[i]` has the balances at
/// `i` of the four balance columns. `totals` are the column sums, which may exceed u128.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BalancesAt {
    pub account_ids: Vec<u128>,
    pub debits_pending: Vec<u128>,
    pub debits_posted: Vec<u128>,
    pub credits_pending: Vec<u128>,
    pub credits_posted: Vec<u128>,
    pub totals: [WideSum; 4],
}

impl BalancesAt {
    /// Adds `amount` to the debits of the row `dr` and the credits of the row `cr` (pending or
    /// posted), each that is a row.
    fn add(&mut self, [dr, cr]: [u32; 2], amount: u128, pending: bool) {
        let (debits, credits) = if pending {
            (&mut self.debits_pending, &mut self.credits_pending)
        } else {
            (&mut self.debits_posted, &mut self.credits_posted)
        };
        for (column, row) in [(debits, dr), (credits, cr)] {
            if let Some(balance) = column.get_mut(row as usize) {
                *balance = balance.checked_add(amount).expect("a past balance fits");
            }
        }
    }

    /// Takes back the pending `amount` of a transfer that a post or a void resolved.
    fn take_pending(&mut self, [dr, cr]: [u32; 2], amount: u128) {
        for (column, row) in [(&mut self.debits_pending, dr), (&mut self.credits_pending, cr)] {
            if let Some(balance) = column.get_mut(row as usize) {
                *balance = balance.checked_sub(amount).expect("it was counted");
            }
        }
    }
}

/// A sum of u128 values that cannot overflow: `high * 2**128 + low`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WideSum {
    pub low: u128,
    pub high: u64,
}

impl WideSum {
    fn of(values: &[u128]) -> Self {
        let mut sum = Self::default();
        for &value in values {
            let (low, carried) = sum.low.overflowing_add(value);
            sum.low = low;
            sum.high += u64::from(carried);
        }
        sum
    }
}

/// The parts of a filter that `select` needs, for account filters and query filters alike.
struct Window {
    timestamp_min: u64,
    timestamp_max: u64,
    limit: u32,
    reversed: bool,
}

impl Engine {
    /// The account's transfers that match the filter, by timestamp (`REVERSED`: newest first),
    /// at most `limit`. An invalid filter matches nothing, as in TigerBeetle.
    ///
    /// It takes `&mut self` to gather the account's newest transfers into its trail.
    pub fn get_account_transfers(&mut self, f: &AccountFilter) -> Vec<Transfer> {
        let Some(index) = self.account_index(f.account_id) else {
            return Vec::new();
        };
        if !account_filter_valid(f) {
            return Vec::new();
        }
        self.gather_trail(index);
        let trail = &self.account_trails[index].transfers;
        let log = &self.transfer_log;
        let picks = select(
            trail.len(),
            |i| &log[trail[i] as usize],
            &window_of_account(f),
            |t| transfer_matches_account_filter(f, t),
        );
        picks.into_iter().map(|i| log[trail[i] as usize]).collect()
    }

    /// The balances after each matching transfer of an account flagged `HISTORY`.
    pub fn get_account_balances(&mut self, f: &AccountFilter) -> Vec<AccountBalance> {
        let Some(index) = self.account_index(f.account_id) else {
            return Vec::new();
        };
        if self.account_trails[index].history.is_none() || !account_filter_valid(f) {
            return Vec::new();
        }
        self.gather_trail(index);
        let trail = &self.account_trails[index];
        let history = trail.history.as_ref().expect("checked above");
        let log = &self.transfer_log;
        let transfers = &trail.transfers;
        let picks = select(
            transfers.len(),
            |i| &log[transfers[i] as usize],
            &window_of_account(f),
            |t| transfer_matches_account_filter(f, t),
        );
        picks.into_iter().map(|i| history[i]).collect()
    }

    pub fn query_accounts(&self, f: &QueryFilter) -> Vec<Account> {
        if !query_filter_valid(f) {
            return Vec::new();
        }
        let log = &self.account_log;
        let picks = select(
            log.len(),
            |i| &log[i],
            &window_of_query(f),
            |a| {
                matches_query_filter(
                    f,
                    a.user_data_128,
                    a.user_data_64,
                    a.user_data_32,
                    a.ledger,
                    a.code,
                )
            },
        );
        picks.into_iter().map(|i| log[i]).collect()
    }

    pub fn query_transfers(&self, f: &QueryFilter) -> Vec<Transfer> {
        if !query_filter_valid(f) {
            return Vec::new();
        }
        let log = &self.transfer_log;
        let picks = select(
            log.len(),
            |i| &log[i],
            &window_of_query(f),
            |t| {
                matches_query_filter(
                    f,
                    t.user_data_128,
                    t.user_data_64,
                    t.user_data_32,
                    t.ledger,
                    t.code,
                )
            },
        );
        picks.into_iter().map(|i| log[i]).collect()
    }

    /// Every account's balances as of `timestamp`, events at that timestamp included.
    ///
    /// Replays the transfer log up to `timestamp`: a pending transfer counts while it is neither
    /// resolved by then nor expired (its expiry time is at or before `timestamp`). The accounts
    /// are those that existed then, in creation order, or those of `account_ids` that did, as
    /// asked (each account once, in the order first asked); `ledger` > 0 keeps only the accounts
    /// of that ledger.
    pub fn balances_at(
        &self,
        timestamp: u64,
        account_ids: Option<&[u128]>,
        ledger: u32,
    ) -> BalancesAt {
        let existing = self.account_log.partition_point(|a| a.timestamp <= timestamp);
        let (rows, chosen) = self.choose_accounts(existing, account_ids, ledger);
        let zeros = vec![0u128; chosen.len()];
        let mut at = BalancesAt {
            account_ids: chosen.iter().map(|&i| self.account_log[i].id).collect(),
            debits_pending: zeros.clone(),
            debits_posted: zeros.clone(),
            credits_pending: zeros.clone(),
            credits_posted: zeros,
            totals: [WideSum::default(); 4],
        };
        let end = self.transfer_log.partition_point(|t| t.timestamp <= timestamp);
        if account_ids.is_none() && ledger == 0 {
            // Every account answers, in log order: its row is its index.
            self.replay(end, timestamp, |account| account, &mut at);
        } else {
            self.replay(end, timestamp, |account| rows[account as usize], &mut at);
        }
        at.totals = [
            WideSum::of(&at.debits_pending),
            WideSum::of(&at.debits_posted),
            WideSum::of(&at.credits_pending),
            WideSum::of(&at.credits_posted),
        ];
        at
    }

    /// The accounts `balances_at` answers for, as indexes of the account log in the order of
    /// their rows, and the row of each of the `existing` first accounts of the log (`NO_ROW`
    /// for one not chosen): a dense table, so that replaying the log looks up no id.
    fn choose_accounts(
        &self,
        existing: usize,
        account_ids: Option<&[u128]>,
        ledger: u32,
    ) -> (Vec<u32>, Vec<usize>) {
        let mut rows = vec![NO_ROW; existing];
        let mut chosen = Vec::new();
        let mut choose = |i: usize| {
            let in_ledger = ledger == 0 || self.account_log[i].ledger == ledger;
            if i < existing && rows[i] == NO_ROW && in_ledger {
                rows[i] = chosen.len() as u32;
                chosen.push(i);
            }
        };
        match account_ids {
            None => (0..existing).for_each(&mut choose),
            Some(ids) => ids.iter().filter_map(|&id| self.account_index(id)).for_each(&mut choose),
        }
        (rows, chosen)
    }

    /// Adds the amounts of the first `end` transfers of the log that stand at `timestamp` to the
    /// columns of the chosen accounts, in one pass over the log.
    ///
    /// A post or a void comes after the pending transfer it resolves, which was counted when
    /// the pass met it unless it had expired by `timestamp`: the post or void takes it back. The
    /// reference engine gathers the resolved transfers first and skips them; the sums are the
    /// same, and each partial sum is at most a balance the account once had, so none overflows.
    fn replay(&self, end: usize, timestamp: u64, row: impl Fn(u32) -> u32, at: &mut BalancesAt) {
        let log = &self.transfer_log;
        for (index, movement) in self.movements.iter().take(end).enumerate() {
            let flags = movement.flags;
            if flags & RESOLVING != 0 {
                let pending_id = log[index].pending_id;
                let p_index = self.transfer_index(pending_id).expect("its pending transfer");
                if !expired_by(&log[p_index], timestamp) {
                    let p = &self.movements[p_index];
                    at.take_pending(p.accounts.map(&row), p.amount);
                }
            }
            if flags & transfer_flags::VOID_PENDING_TRANSFER != 0 {
                continue;
            }
            let pending = flags & transfer_flags::PENDING != 0;
            if !(pending && expired_by(&log[index], timestamp)) {
                at.add(movement.accounts.map(&row), movement.amount, pending);
            }
        }
    }
}

/// The row of an account that `balances_at` does not answer for: past the end of every column.
const NO_ROW: u32 = u32::MAX;

const RESOLVING: u16 =
    transfer_flags::POST_PENDING_TRANSFER | transfer_flags::VOID_PENDING_TRANSFER;

/// Whether a pending transfer had expired by `timestamp`.
fn expired_by(p: &Transfer, timestamp: u64) -> bool {
    p.timeout != 0 && expires_at(p) <= timestamp
}

fn timestamps_valid(timestamp_min: u64, timestamp_max: u64) -> bool {
    if timestamp_min == u64::MAX || timestamp_max == u64::MAX {
        return false;
    }
    timestamp_max == 0 || timestamp_min <= timestamp_max
}

/// TigerBeetle's rules: a usable account id, ordered bounds, a limit, and at least one of
/// DEBITS and CREDITS with no unknown flag.
fn account_filter_valid(f: &AccountFilter) -> bool {
    use account_filter_flags::{CREDITS, DEBITS, KNOWN};
    f.account_id != 0
        && f.account_id != U128_MAX
        && timestamps_valid(f.timestamp_min, f.timestamp_max)
        && f.limit > 0
        && f.flags & (DEBITS | CREDITS) != 0
        && f.flags & !KNOWN == 0
}

fn query_filter_valid(f: &QueryFilter) -> bool {
    timestamps_valid(f.timestamp_min, f.timestamp_max)
        && f.limit > 0
        && f.flags & !query_filter_flags::KNOWN == 0
}

fn transfer_matches_account_filter(f: &AccountFilter, t: &Transfer) -> bool {
    let debits = f.flags & account_filter_flags::DEBITS != 0;
    let credits = f.flags & account_filter_flags::CREDITS != 0;
    ((debits && t.debit_account_id == f.account_id)
        || (credits && t.credit_account_id == f.account_id))
        && (f.user_data_128 == 0 || t.user_data_128 == f.user_data_128)
        && (f.user_data_64 == 0 || t.user_data_64 == f.user_data_64)
        && (f.user_data_32 == 0 || t.user_data_32 == f.user_data_32)
        && (f.code == 0 || t.code == f.code)
}

fn matches_query_filter(
    f: &QueryFilter,
    user_data_128: u128,
    user_data_64: u64,
    user_data_32: u32,
    ledger: u32,
    code: u16,
) -> bool {
    (f.user_data_128 == 0 || user_data_128 == f.user_data_128)
        && (f.user_data_64 == 0 || user_data_64 == f.user_data_64)
        && (f.user_data_32 == 0 || user_data_32 == f.user_data_32)
        && (f.ledger == 0 || ledger == f.ledger)
        && (f.code == 0 || code == f.code)
}

fn window_of_account(f: &AccountFilter) -> Window {
    Window {
        timestamp_min: f.timestamp_min,
        timestamp_max: f.timestamp_max,
        limit: f.limit,
        reversed: f.flags & account_filter_flags::REVERSED != 0,
    }
}

fn window_of_query(f: &QueryFilter) -> Window {
    Window {
        timestamp_min: f.timestamp_min,
        timestamp_max: f.timestamp_max,
        limit: f.limit,
        reversed: f.flags & query_filter_flags::REVERSED != 0,
    }
}

/// The positions of the `count` records (sorted by timestamp, the `i`th being `record(i)`)
/// within the window's timestamp bounds that match, in the window's order, at most `limit`.
fn select<'a, R: Timestamped + 'a>(
    count: usize,
    record: impl Fn(usize) -> &'a R,
    window: &Window,
    matches: impl Fn(&R) -> bool,
) -> Vec<usize> {
    let low = partition_point(count, |i| record(i).timestamp() < window.timestamp_min);
    let high = if window.timestamp_max != 0 {
        partition_point(count, |i| record(i).timestamp() <= window.timestamp_max)
    } else {
        count
    };
    let limit = window.limit as usize;
    let mut picks = Vec::new();
    let mut take = |i: usize| {
        if matches(record(i)) {
            picks.push(i);
        }
        picks.len() < limit
    };
    if window.reversed {
        for i in (low..high).rev() {
            if !take(i) {
                break;
            }
        }
    } else {
        for i in low..high {
            if !take(i) {
                break;
            }
        }
    }
    picks
}
