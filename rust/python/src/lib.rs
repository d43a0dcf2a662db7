//! The Python module `fastledger._native`: a thin layer that converts Python values to the types
//! of `fastledger-core` and back, and releases the GIL (`Python::detach`) while the core works on
//! a batch. The ledger's rules live in the core crate, never here.

mod convert;

use fastledger_core::{Account, Transfer, TIMESTAMP_MAX};
use pyo3::prelude::*;
use pyo3::types::PyList;

pyo3::import_exception!(fastledger.errors, InvalidArgumentError);

/// The Rust engine behind `fastledger.Ledger(engine="rust")`: the same methods, with the same
/// results, as the Python reference engine `PythonEngine`.
///
/// Each method converts and checks its whole input first, so that bad input raises and changes
/// nothing, then runs the core without the GIL. The methods take `&mut self`: calls on one engine
/// are serialised (the `Ledger` facade holds a lock; a concurrent call would fail to borrow).
#[pyclass(module = "fastledger._native")]
struct Engine {
    core: fastledger_core::Engine,
    // Conversion buffers, kept between batches so that a batch allocates no records.
    accounts: Vec<Account>,
    transfers: Vec<Transfer>,
}

/// Refuses a batch timestamp that the core cannot take: every event of a batch of `count` needs
/// its own timestamp in `1..=TIMESTAMP_MAX`, the last being `timestamp`.
fn check_batch_timestamp(count: usize, timestamp: u64) -> PyResult<()> {
    if (count as u64) <= timestamp && timestamp <= TIMESTAMP_MAX {
        return Ok(());
    }
    Err(InvalidArgumentError::new_err(format!(
        "timestamp must be in {count}..={TIMESTAMP_MAX} for a batch of {count}, not {timestamp}"
    )))
}

#[pymethods]
impl Engine {
    #[new]
    fn new() -> Self {
        Self { core: fastledger_core::Engine::new(), accounts: Vec::new(), transfers: Vec::new() }
    }

    /// The engine's name, as `Ledger.engine` reports it.
    #[classattr]
    fn name() -> &'static str {
        "rust"
    }

    /// Applies a batch whose last event takes `timestamp`; returns (status, timestamp) per event.
    fn create_accounts<'py>(
        &mut self,
        py: Python<'py>,
        accounts: &Bound<'py, PyAny>,
        timestamp: u64,
    ) -> PyResult<Bound<'py, PyList>> {
        convert::accounts(accounts, &mut self.accounts)?;
        check_batch_timestamp(self.accounts.len(), timestamp)?;
        if self.accounts.is_empty() {
            return Ok(PyList::empty(py));
        }
        let (core, batch) = (&mut self.core, &self.accounts);
        let results = py.detach(|| core.create_accounts(batch, timestamp));
        convert::results(py, &results)
    }

    /// Applies a batch whose last event takes `timestamp`; returns (status, timestamp) per event.
    fn create_transfers<'py>(
        &mut self,
        py: Python<'py>,
        transfers: &Bound<'py, PyAny>,
        timestamp: u64,
    ) -> PyResult<Bound<'py, PyList>> {
        convert::transfers(transfers, &mut self.transfers)?;
        check_batch_timestamp(self.transfers.len(), timestamp)?;
        if self.transfers.is_empty() {
            return Ok(PyList::empty(py));
        }
        let (core, batch) = (&mut self.core, &self.transfers);
        let results = py.detach(|| core.create_transfers(batch, timestamp));
        convert::results(py, &results)
    }

    /// Releases every pending transfer whose timeout has passed by `timestamp`; returns how
    /// many expired.
    fn expire_pending_transfers(&mut self, py: Python<'_>, timestamp: u64) -> usize {
        let core = &mut self.core;
        py.detach(|| core.expire_pending_transfers(timestamp))
    }

    /// The accounts with these ids, in the order asked; missing ids are left out.
    fn lookup_accounts<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let ids = convert::ids(ids)?;
        let found = self.core.lookup_accounts(&ids);
        let objects = found.iter().map(|a| convert::account_object(py, a));
        PyList::new(py, objects.collect::<PyResult<Vec<_>>>()?)
    }

    /// The transfers with these ids, in the order asked; missing ids are left out.
    fn lookup_transfers<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let ids = convert::ids(ids)?;
        let found = self.core.lookup_transfers(&ids);
        let objects = found.iter().map(|t| convert::transfer_object(py, t));
        PyList::new(py, objects.collect::<PyResult<Vec<_>>>()?)
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The wheel's version comes from the workspace Cargo.toml, so both always agree.
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Exported so the Python side checks packed buffers against the very size the core uses.
    m.add("RECORD_SIZE", fastledger_core::RECORD_SIZE)?;
    m.add_class::<Engine>()?;
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
