//! The Python module `fastledger._native`: a thin layer that converts Python values to the types
//! of `fastledger-core` and back, and releases the GIL (`Python::detach`) while the core works on
//! a batch. The ledger's rules live in the core crate, never here.

use pyo3::prelude::*;

/// The Rust engine behind `fastledger.Ledger(engine="rust")`.
///
/// It holds no state yet; the state machine of `fastledger-core` will live inside it.
#[pyclass(module = "fastledger._native")]
struct Engine {}

#[pymethods]
impl Engine {
    #[new]
    fn new() -> Self {
        Self {}
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
