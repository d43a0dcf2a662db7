//! The Python module `fastledger._native`: a thin layer that converts Python values to the types
//! of `fastledger-core` and back, and releases the GIL (`Python::detach`) while the core works on
//! a batch of more than a few events (see `DETACH_EVENTS_MIN`). The ledger's rules live in the
//! core crate, never here.

mod convert;

use std::collections::BTreeMap;

use fastledger_core::{
    Account, BatchStatus, CreateAccountStatus, CreateTransferStatus, Transfer, TransferRecord,
    BATCH_MAX, TIMESTAMP_MAX,
};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyAssertionError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

/// The most ids that `balances_at` takes, as the facade allows them.
const BALANCES_AT_IDS_MAX: usize = 1 << 32;

pyo3::import_exception!(fastledger.errors, InvalidArgumentError);

/// The Rust engine behind `fastledger.Ledger(engine="rust")`: the same methods, with the same
/// results, as the Python reference engine `PythonEngine`.
///
/// Each method converts and checks its whole input first, so that bad input raises and changes
/// nothing, then runs the core, without the GIL for all but the smallest batches, and makes the
/// result records itself. The methods take `&mut self`: calls on one engine are serialised (the
/// `Ledger` facade holds a lock; a concurrent call would fail to borrow).
#[pyclass(module = "fastledger._native")]
struct Engine {
    core: fastledger_core::Engine,
    // Conversion buffers, kept between batches so that a batch allocates no records.
    accounts: Vec<Account>,
    transfers: Vec<Transfer>,
    /// What `create_accounts` and `create_transfers` applied, for `counts`.
    counted: [Counted; 2],
}

/// The batches of one kind applied through the object API: calls, events, and the results
/// other than CREATED by status code.
#[derive(Default)]
struct Counted {
    calls: u64,
    events: u64,
    failed: BTreeMap<u32, u64>,
}

/// Calls, events, and results other than CREATED by status code.
type Counts = (u64, u64, BTreeMap<u32, u64>);

impl Counted {
    fn counts(&self) -> Counts {
        (self.calls, self.events, self.failed.clone())
    }

    fn add<S: BatchStatus>(&mut self, results: &[(S, u64)]) {
        self.calls += 1;
        self.events += results.len() as u64;
        for &(status, _) in results {
            if status != S::CREATED {
                *self.failed.entry(status.code()).or_insert(0) += 1;
            }
        }
    }
}

/// The fewest events for which the core runs without the GIL. Releasing it costs little while no
/// other thread wants it, but once another thread has taken it, taking it back waits until that
/// thread lets go, up to its switch interval (5 ms by default): a batch that the core finishes in
/// microseconds is done sooner, and more predictably, holding the GIL.
const DETACH_EVENTS_MIN: usize = 64;

/// Runs `work` on `events` events of the core, without the GIL if there are enough of them.
fn run<T: Send>(py: Python<'_>, events: usize, work: impl FnOnce() -> T + Send) -> T {
    if events < DETACH_EVENTS_MIN {
        work()
    } else {
        py.detach(work)
    }
}

/// Refuses a batch timestamp that the core cannot take: every event of a batch of `count` needs
/// its own timestamp in `1..=TIMESTAMP_MAX`, after the `newest` that the engine holds, the last
/// being `timestamp`.
fn check_batch_timestamp(count: usize, timestamp: u64, newest: u64) -> PyResult<()> {
    // At most TIMESTAMP_MAX + BATCH_MAX: no overflow.
    let low = newest + count as u64;
    if low <= timestamp && timestamp <= TIMESTAMP_MAX {
        return Ok(());
    }
    Err(InvalidArgumentError::new_err(format!(
        "timestamp must be in {low}..={TIMESTAMP_MAX} for a batch of {count} after the newest \
         event, at {newest}, not {timestamp}"
    )))
}

#[pymethods]
impl Engine {
    #[new]
    fn new() -> Self {
        let core = fastledger_core::Engine::new();
        let counted = Default::default();
        Self { core, accounts: Vec::new(), transfers: Vec::new(), counted }
    }

    /// The engine's name, as `Ledger.engine` reports it.
    #[classattr]
    fn name() -> &'static str {
        "rust"
    }

    /// Applies a batch whose last event takes `timestamp`; returns a `CreateAccountResult` per
    /// event.
    fn create_accounts<'py>(
        &mut self,
        py: Python<'py>,
        accounts: &Bound<'py, PyAny>,
        timestamp: u64,
    ) -> PyResult<Bound<'py, PyList>> {
        convert::accounts(accounts, &mut self.accounts)?;
        let results = self.apply_accounts(py, timestamp)?;
        self.counted[0].add(&results);
        convert::account_results(py, &results)
    }

    /// Applies a batch whose last event takes `timestamp`; returns a `CreateTransferResult` per
    /// event.
    fn create_transfers<'py>(
        &mut self,
        py: Python<'py>,
        transfers: &Bound<'py, PyAny>,
        timestamp: u64,
    ) -> PyResult<Bound<'py, PyList>> {
        convert::transfers(transfers, &mut self.transfers)?;
        let results = self.apply_transfers(py, timestamp)?;
        self.counted[1].add(&results);
        convert::transfer_results(py, &results)
    }

    /// A packed batch of accounts: whole 128-byte records; returns the packed status (u32) and
    /// timestamp (u64) columns.
    fn create_accounts_packed<'py>(
        &mut self,
        py: Python<'py>,
        records: &Bound<'py, PyAny>,
        timestamp: u64,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let into = &mut self.accounts;
        convert::packed(records, "accounts", Account::from_bytes, into)?;
        let results = self.apply_accounts(py, timestamp)?;
        convert::packed_results(py, &results)
    }

    /// A packed batch of transfers, as `create_accounts_packed`.
    fn create_transfers_packed<'py>(
        &mut self,
        py: Python<'py>,
        records: &Bound<'py, PyAny>,
        timestamp: u64,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let results = self.apply_packed_transfers(py, records, timestamp)?;
        convert::packed_results(py, &results)
    }

    /// A packed batch of accounts with the results of `create_accounts`: a durable ledger packs
    /// a batch for its journal, and the engine reads those records rather than convert the
    /// objects a second time.
    fn create_accounts_from_packed<'py>(
        &mut self,
        py: Python<'py>,
        records: &Bound<'py, PyAny>,
        timestamp: u64,
    ) -> PyResult<Bound<'py, PyList>> {
        let into = &mut self.accounts;
        convert::packed(records, "accounts", Account::from_bytes, into)?;
        let results = self.apply_accounts(py, timestamp)?;
        convert::account_results(py, &results)
    }

    /// A packed batch of transfers with the results of `create_transfers`.
    fn create_transfers_from_packed<'py>(
        &mut self,
        py: Python<'py>,
        records: &Bound<'py, PyAny>,
        timestamp: u64,
    ) -> PyResult<Bound<'py, PyList>> {
        let results = self.apply_packed_transfers(py, records, timestamp)?;
        convert::transfer_results(py, &results)
    }

    /// For accounts, then transfers: the calls, events, and results other than CREATED by
    /// status code, of the batches applied through `create_accounts` and `create_transfers`.
    ///
    /// The engine counts them because a `Ledger` in memory calls nothing else on the path of
    /// one transfer: counting them there in Python took about a tenth of that call.
    fn counts(&self) -> (Counts, Counts) {
        let [accounts, transfers] = &self.counted;
        (accounts.counts(), transfers.counts())
    }

    /// Whether any pending transfer expires at or before `now_ns`: a cheap look at the earliest
    /// expiry, with no other effect.
    fn expiry_due(&self, now_ns: u64) -> bool {
        self.core.expiry_due(now_ns)
    }

    /// Maps now, without the GIL, the memory that `transfers` more transfers fill (176 bytes
    /// each, and the index of their ids unless `ids_in_order`), so that posting them never
    /// waits for the kernel to map a page.
    fn reserve_transfers(&mut self, py: Python<'_>, transfers: usize, ids_in_order: bool) {
        let core = &mut self.core;
        py.detach(|| core.reserve_transfers(transfers, ids_in_order));
    }

    /// Releases every pending transfer whose timeout has passed by `timestamp`; returns how
    /// many expired.
    fn expire_pending_transfers(&mut self, py: Python<'_>, timestamp: u64) -> usize {
        let core = &mut self.core;
        // Nothing is due at almost every call, which is then answered holding the GIL.
        if !core.expiry_due(timestamp) {
            return 0;
        }
        py.detach(|| core.expire_pending_transfers(timestamp))
    }

    /// The accounts with these ids, in the order asked; missing ids are left out.
    fn lookup_accounts<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let ids = convert::ids(ids, "ids", BATCH_MAX)?;
        accounts_list(py, &self.core.lookup_accounts(&ids))
    }

    /// The transfers with these ids, in the order asked; missing ids are left out.
    fn lookup_transfers<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let ids = convert::ids(ids, "ids", BATCH_MAX)?;
        transfers_list(py, &self.core.lookup_transfers(&ids))
    }

    /// `lookup_accounts` as packed 128-byte records, with no Python object per account.
    fn lookup_accounts_packed<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let ids = convert::ids(ids, "ids", BATCH_MAX)?;
        Ok(convert::packed_records(py, &self.core.lookup_accounts(&ids), Account::to_bytes))
    }

    /// `lookup_transfers` as packed 128-byte records, with no Python object per transfer.
    fn lookup_transfers_packed<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let ids = convert::ids(ids, "ids", BATCH_MAX)?;
        Ok(convert::packed_records(py, &self.core.lookup_transfers(&ids), Transfer::to_bytes))
    }

    /// The account's transfers that match the filter, by timestamp (REVERSED: newest first).
    fn get_account_transfers<'py>(
        &mut self,
        py: Python<'py>,
        f: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let f = convert::account_filter(f)?;
        transfers_list(py, &self.core.get_account_transfers(&f))
    }

    /// The balances after each matching transfer of an account flagged `HISTORY`.
    fn get_account_balances<'py>(
        &mut self,
        py: Python<'py>,
        f: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let f = convert::account_filter(f)?;
        let balances = self.core.get_account_balances(&f);
        let objects = balances.iter().map(|b| convert::balance_object(py, b));
        PyList::new(py, objects.collect::<PyResult<Vec<_>>>()?)
    }

    fn query_accounts<'py>(
        &self,
        py: Python<'py>,
        f: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let f = convert::query_filter(f)?;
        accounts_list(py, &self.core.query_accounts(&f))
    }

    fn query_transfers<'py>(
        &self,
        py: Python<'py>,
        f: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let f = convert::query_filter(f)?;
        transfers_list(py, &self.core.query_transfers(&f))
    }

    /// Every account's balances as of `timestamp`, events at that timestamp included: five
    /// packed u128 columns (account ids, then the four balances) and their four sums.
    #[pyo3(signature = (timestamp, account_ids, ledger))]
    fn balances_at<'py>(
        &self,
        py: Python<'py>,
        timestamp: u64,
        account_ids: Option<&Bound<'py, PyAny>>,
        ledger: u32,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let ids = match account_ids {
            Some(ids) => Some(convert::ids(ids, "account_ids", BALANCES_AT_IDS_MAX)?),
            None => None,
        };
        let core = &self.core;
        let at = py.detach(|| core.balances_at(timestamp, ids.as_deref(), ledger));
        convert::balances_at_object(py, &at)
    }

    /// The whole state in the engine state format of snapshots, the same bytes as the
    /// reference engine gives for the same state.
    fn export_state<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let core = &self.core;
        let state = py.detach(|| core.export_state());
        PyBytes::new(py, &state)
    }

    /// Loads a state that `export_state` made into this fresh engine; raises `ValueError` if the
    /// state does not hang together, leaving the engine as it was.
    fn import_state(&mut self, py: Python<'_>, state: &Bound<'_, PyAny>) -> PyResult<()> {
        if !self.core.is_empty() {
            return Err(PyAssertionError::new_err("import into a fresh engine"));
        }
        // A bytes object, what snapshots hold, is immutable: the engine reads it in place
        // rather than from a copy of the whole state.
        let imported = if let Ok(bytes) = state.cast::<PyBytes>() {
            let bytes = bytes.as_bytes();
            py.detach(|| fastledger_core::Engine::import_state(bytes))
        } else {
            let bytes = PyBuffer::<u8>::get(state)?.to_vec(py)?;
            py.detach(|| fastledger_core::Engine::import_state(&bytes))
        };
        self.core = imported.map_err(|error| PyValueError::new_err(error.0))?;
        Ok(())
    }
}

impl Engine {
    /// Applies the accounts converted into `self.accounts`, whose last takes `timestamp`.
    fn apply_accounts(
        &mut self,
        py: Python<'_>,
        timestamp: u64,
    ) -> PyResult<Vec<(CreateAccountStatus, u64)>> {
        check_batch_timestamp(self.accounts.len(), timestamp, self.core.newest_timestamp())?;
        let (core, batch) = (&mut self.core, &self.accounts);
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        Ok(run(py, batch.len(), || core.create_accounts(batch, timestamp)))
    }

    /// Applies a packed batch of transfers, whose last takes `timestamp`: in place if it is a
    /// `bytes` object, which never changes; any other buffer is copied first, since Python code
    /// could change it while the core works without the GIL.
    fn apply_packed_transfers(
        &mut self,
        py: Python<'_>,
        records: &Bound<'_, PyAny>,
        timestamp: u64,
    ) -> PyResult<Vec<(CreateTransferStatus, u64)>> {
        let buffer = convert::packed_buffer(records, "transfers")?;
        let Some(bytes) = convert::bytes_behind(records, &buffer) else {
            convert::copy_records(&buffer, Transfer::from_bytes, &mut self.transfers);
            return self.apply_transfers(py, timestamp);
        };
        let batch = TransferRecord::records_of(bytes.as_bytes()).expect("checked: whole records");
        check_batch_timestamp(batch.len(), timestamp, self.core.newest_timestamp())?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let core = &mut self.core;
        Ok(run(py, batch.len(), || core.create_transfers_packed(batch, timestamp)))
    }

    /// Applies the transfers converted into `self.transfers`, whose last takes `timestamp`.
    fn apply_transfers(
        &mut self,
        py: Python<'_>,
        timestamp: u64,
    ) -> PyResult<Vec<(CreateTransferStatus, u64)>> {
        check_batch_timestamp(self.transfers.len(), timestamp, self.core.newest_timestamp())?;
        let (core, batch) = (&mut self.core, &self.transfers);
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        Ok(run(py, batch.len(), || core.create_transfers(batch, timestamp)))
    }
}

/// How many of `results` are not CREATED.
fn accounts_list<'py>(py: Python<'py>, accounts: &[Account]) -> PyResult<Bound<'py, PyList>> {
    let objects = accounts.iter().map(|a| convert::account_object(py, a));
    PyList::new(py, objects.collect::<PyResult<Vec<_>>>()?)
}

fn transfers_list<'py>(py: Python<'py>, transfers: &[Transfer]) -> PyResult<Bound<'py, PyList>> {
    let objects = transfers.iter().map(|t| convert::transfer_object(py, t));
    PyList::new(py, objects.collect::<PyResult<Vec<_>>>()?)
}

/// The accounts packed as 128-byte records, for the journal: checked as `create_accounts` checks
/// them, with the same exceptions and messages.
#[pyfunction]
fn pack_accounts<'py>(accounts: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    convert::pack_accounts(accounts)
}

/// The transfers packed as 128-byte records, checked as `create_transfers` checks them.
#[pyfunction]
fn pack_transfers<'py>(transfers: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    convert::pack_transfers(transfers)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The wheel's version comes from the workspace Cargo.toml, so both always agree.
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Exported so the Python side checks packed buffers against the very size the core uses.
    m.add("RECORD_SIZE", fastledger_core::RECORD_SIZE)?;
    m.add_class::<Engine>()?;
    m.add_function(wrap_pyfunction!(pack_accounts, m)?)?;
    m.add_function(wrap_pyfunction!(pack_transfers, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // These tests embed an interpreter: they link libpython, which is why the crate leaves off
    // PyO3's `extension-module` feature and lets maturin drop the link only for the wheel.
    #[test]
    fn module_exports_the_crate_version_and_the_core_record_size() {
        Python::initialize();
        Python::attach(|py| {
            let m = PyModule::new(py, "_native").unwrap();
            _native(&m).unwrap();
            let version: String = m.getattr("__version__").unwrap().extract().unwrap();
            assert_eq!(version, env!("CARGO_PKG_VERSION"));
            let record_size: usize = m.getattr("RECORD_SIZE").unwrap().extract().unwrap();
            assert_eq!(record_size, fastledger_core::RECORD_SIZE);
        });
    }
}
