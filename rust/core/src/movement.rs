//! The movement index: beside each transfer of the log, what it moved between which accounts,
//! and through it each account's chain of transfers, newest first, which queries gather into
//! the account's trail. Every record is logged through here, so that the logs, their id indexes
//! and the chains stay in step; here too the logs' memory is mapped ahead of the transfers to
//! come. None of it decides a status: the engine's rules read accounts through it, and queries
//! read trails.

use std::mem;

use crate::engine::Engine;
use crate::index::LOG_MAX;
use crate::memory;
use crate::prefetch::PREFETCH_AHEAD;
use crate::types::{account_flags, Account, AccountBalance, Transfer};

const HISTORY: u16 = account_flags::HISTORY;

/// The fewest accounts for which a ledger with no transfer yet has the first segments of the
/// transfer log and the movements made ahead: a ledger that opens this many is set up for
/// work, and 10 MiB made by the maker thread cost little beside its accounts. Its first transfers
/// then do not wait for the kernel to map those segments page by page: with the run of ids,
/// about 1,700 page faults, which made the first four batches of a new ledger three times
/// slower than the rest (2.2 against 0.7 ms for 8189 transfers). The run of ids is left
/// unprepared: while ids come in order, the transfer log is the run.
const PREPARE_LOGS_ACCOUNTS_MIN: usize = 1024;

/// The end of an account's chain of transfers: no transfer.
pub(crate) const NO_TRANSFER: u32 = u32::MAX;

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

/// What the engine keeps of an account besides its record: the transfers that debit or credit
/// it, in timestamp order (indexes into the transfer log) as far as `Engine::gather_trail` has
/// gathered them from the account's chain, and, for an account flagged `HISTORY`, its balances
/// after each of its transfers (all of them, gathered or not).
#[derive(Debug, Default)]
pub(crate) struct AccountTrail {
    pub(crate) transfers: Vec<u32>,
    pub(crate) history: Option<Vec<AccountBalance>>,
}

impl Engine {
    /// Maps now, on the calling thread, all the memory that the logs of `transfers` more
    /// transfers fill, 176 bytes a transfer (its record and its movement, and the samples of
    /// ids in order), so that posting them never waits for the kernel to map a page. Without it
    /// the maker thread maps the logs a few segments ahead of the batch loop, which a loop
    /// posting ready batches back to back outruns where fresh memory is slow to map: 0.35-0.75
    /// GB/s here for memory the machine's host has not yet given it, against the 1.8 GB/s that
    /// 10,000,000 transfers a second fill.
    ///
    /// Unless `ids_in_order` (every id larger than the one before, as time-ordered ids are),
    /// it also maps the hashed index of ids out of order for them: 11-21 bytes a transfer (a
    /// power of two of 8-byte slots), in huge pages where the kernel grants them. Grown while
    /// posting instead, the index moved its ids into each larger array a few at each insert,
    /// into pages the kernel mapped meanwhile: 10,000,000 random ids went at 4,300,000 a second,
    /// with batch p99 six times p50, against 9,500,000-10,800,000 and 1.2-1.6 times reserved.
    ///
    /// It maps room for at most as many transfers as the log may yet hold (`LOG_MAX`). Like any
    /// allocation, asking for more memory than the machine has ends the process.
    pub fn reserve_transfers(&mut self, transfers: usize, ids_in_order: bool) {
        let transfers = transfers.min(LOG_MAX - self.transfer_log.len());
        self.transfer_log.reserve(transfers);
        self.movements.reserve(transfers);
        self.transfers.reserve_in_order(transfers);
        if !ids_in_order {
            self.transfers.reserve_out_of_order(transfers);
        }
    }

    /// Has the maker thread make the first segments of the transfer log and the movements ahead
    /// once a ledger with no transfer yet holds `PREPARE_LOGS_ACCOUNTS_MIN` accounts.
    pub(crate) fn prepare_transfer_logs(&mut self) {
        if self.transfer_log.is_empty() && self.account_log.len() >= PREPARE_LOGS_ACCOUNTS_MIN {
            self.transfer_log.prepare();
            self.movements.prepare();
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

    /// Appends to the history of each account flagged `HISTORY` its balances after the transfer
    /// `t`, once the effects of `t` have been applied. Inlined always: it is a part of
    /// `Engine::insert_transfer`, on the path of every transfer, kept here beside the trails.
    #[inline(always)]
    pub(crate) fn record_history(&mut self, t: &Transfer, dr_index: usize, cr_index: usize) {
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
    }

    /// Takes the newest transfer, `transfer_id`, back out of the transfer log, its index, the
    /// chains of its accounts and their histories: `log_transfer` and `record_history` undone,
    /// for a broken linked chain.
    pub(crate) fn unlog_transfer(&mut self, transfer_id: u128) {
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

    /// Takes the newest account, `account_id`, back out of the account log, its index, its
    /// trail and its chain: `log_account` undone, for a broken linked chain.
    pub(crate) fn unlog_account(&mut self, account_id: u128) {
        let log = &self.account_log;
        let index = self.accounts.remove(account_id, |i| log[i].id);
        let popped = self.account_log.pop().expect("a created account is logged");
        assert!(popped.id == account_id && index == Some(self.account_log.len()));
        let trail = self.account_trails.pop().expect("a trail per account");
        let newest = self.newest_transfers.pop().expect("a chain per account");
        assert!(trail.transfers.is_empty(), "a chain of accounts moves no money");
        assert_eq!(newest, NO_TRANSFER, "a chain of accounts moves no money");
    }

    /// The indexes of the debit and the credit account of the transfer at `index` of the log.
    pub(crate) fn accounts_of(&self, index: usize) -> (usize, usize) {
        let [dr, cr] = self.movements[index].accounts;
        (dr as usize, cr as usize)
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
        reserved.reserve_transfers(100_000, true);
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
