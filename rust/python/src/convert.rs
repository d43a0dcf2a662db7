//! Conversions between Python values and the records of `fastledger-core`.
//!
//! A batch is converted whole before the core sees it, and refused with the very messages of
//! `python/fastledger/_check.py`, so that both engines refuse the same input in the same words
//! and a refused batch changes nothing.

use std::fmt;
use std::os::raw::c_int;

use fastledger_core::{Account, BatchStatus, Transfer, BATCH_MAX};
use pyo3::exceptions::PyOverflowError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyInt, PyList, PyMemoryView, PyString, PyType};
use pyo3::types::{PySequence, PyTuple};

pyo3::import_exception!(fastledger.errors, BatchTooLargeError);
pyo3::import_exception!(fastledger.errors, InvalidRecordError);
pyo3::import_exception!(fastledger.errors, RecordTypeError);

static ACCOUNT_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static TRANSFER_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
/// `CREATED` is the one status code outside CPython's cache of small ints.
static CREATED_CODE: PyOnceLock<Py<PyInt>> = PyOnceLock::new();

fn account_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    ACCOUNT_TYPE.import(py, "fastledger._types", "Account")
}

fn transfer_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    TRANSFER_TYPE.import(py, "fastledger._types", "Transfer")
}

/// Where a value sits in its batch: `transfers[3].amount`, or `ids[2]` for a lookup.
struct Place<'a> {
    kind: &'a str,
    index: usize,
    field: Option<&'static str>,
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.kind, self.index)?;
        match self.field {
            Some(field) => write!(f, ".{field}"),
            None => Ok(()),
        }
    }
}

fn type_name(value: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(value.get_type().name()?.to_string())
}

/// Checks the container of a batch and its size, as `_check.check_batch`; returns it as a list.
pub fn check_batch<'py>(events: &Bound<'py, PyAny>, kind: &str) -> PyResult<Bound<'py, PyList>> {
    let events = if let Ok(list) = events.cast::<PyList>() {
        list.clone()
    } else if events.is_instance_of::<PyBytes>()
        || events.is_instance_of::<PyByteArray>()
        || events.is_instance_of::<PyMemoryView>()
    {
        return Err(RecordTypeError::new_err(format!(
            "{kind} must be a list of records; packed buffers go through the packed API"
        )));
    } else if let (false, Ok(sequence)) =
        (events.is_instance_of::<PyString>(), events.cast::<PySequence>())
    {
        sequence.to_list()?
    } else {
        let name = type_name(events)?;
        return Err(RecordTypeError::new_err(format!(
            "{kind} must be a list of records, not {name}"
        )));
    };
    let count = events.len();
    if count > BATCH_MAX {
        return Err(BatchTooLargeError::new_err(format!(
            "a batch holds at most {BATCH_MAX} events, got {count}: split {kind} into chunks of \
             at most {BATCH_MAX}"
        )));
    }
    Ok(events)
}

/// Reads an unsigned integer of `bits` bits, refusing what `_check` refuses: a non-int (an int
/// subclass such as `IntFlag` is welcome, `bool` is not), a negative value, a value too wide.
fn unsigned(value: &Bound<'_, PyAny>, place: &Place<'_>, bits: u32) -> PyResult<u128> {
    debug_assert!(bits <= 128);
    if !value.is_exact_instance_of::<PyInt>()
        && (!value.is_instance_of::<PyInt>() || value.is_instance_of::<PyBool>())
    {
        let name = type_name(value)?;
        return Err(RecordTypeError::new_err(format!("{place} must be an int, not {name}")));
    }
    let py = value.py();
    let mut overflow: c_int = 0;
    // SAFETY: `value` is a live int; the call only reads it.
    let small = unsafe { ffi::PyLong_AsLongLongAndOverflow(value.as_ptr(), &mut overflow) };
    let number = match overflow {
        0 if small == -1 && PyErr::occurred(py) => return Err(PyErr::fetch(py)),
        0 => u128::try_from(small).ok(),
        // Past i64::MAX: the slow path reads up to 128 bits, and fails beyond them.
        1 if bits > 63 => match value.extract::<u128>() {
            Ok(number) => Some(number),
            Err(error) if error.is_instance_of::<PyOverflowError>(py) => None,
            Err(error) => return Err(error),
        },
        _ => None,
    };
    match number {
        Some(number) if bits == 128 || number >> bits == 0 => Ok(number),
        _ => Err(InvalidRecordError::new_err(field_message(value, place, bits)?)),
    }
}

/// The message of `_check.field_message` for a value that does not fit its field.
fn field_message(value: &Bound<'_, PyAny>, place: &Place<'_>, bits: u32) -> PyResult<String> {
    let shown = value.str()?;
    if value.lt(0)? {
        return Ok(format!("{place} is negative ({shown}): fields are unsigned"));
    }
    let max = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
    Ok(format!("{place} does not fit in {bits} bits ({shown} > {max})"))
}

/// Reads the fields of one record in record order, so that the first bad field is the one
/// `_check.check_records` names.
struct Fields<'a, 'py> {
    record: &'a Bound<'py, PyAny>,
    kind: &'a str,
    index: usize,
}

impl Fields<'_, '_> {
    fn read(&self, name: &Bound<'_, PyString>, field: &'static str, bits: u32) -> PyResult<u128> {
        let value = self.record.getattr(name)?;
        let place = Place { kind: self.kind, index: self.index, field: Some(field) };
        unsigned(&value, &place, bits)
    }
}

/// `record.<name>` as the unsigned type `$ty`, its width checked first.
macro_rules! field {
    ($fields:expr, $py:expr, $name:literal, $ty:ty) => {
        $fields.read(pyo3::intern!($py, $name), $name, <$ty>::BITS)? as $ty
    };
}

fn check_record_type(
    record: &Bound<'_, PyAny>,
    expected: &Bound<'_, PyType>,
    kind: &str,
    index: usize,
) -> PyResult<()> {
    if record.get_type().is(expected) {
        return Ok(());
    }
    let (expected, found) = (expected.name()?, type_name(record)?);
    Err(RecordTypeError::new_err(format!("{kind}[{index}] must be a {expected}, not {found}")))
}

fn account_from(record: &Bound<'_, PyAny>, index: usize) -> PyResult<Account> {
    let py = record.py();
    check_record_type(record, account_type(py)?, "accounts", index)?;
    let f = Fields { record, kind: "accounts", index };
    Ok(Account {
        id: field!(f, py, "id", u128),
        debits_pending: field!(f, py, "debits_pending", u128),
        debits_posted: field!(f, py, "debits_posted", u128),
        credits_pending: field!(f, py, "credits_pending", u128),
        credits_posted: field!(f, py, "credits_posted", u128),
        user_data_128: field!(f, py, "user_data_128", u128),
        user_data_64: field!(f, py, "user_data_64", u64),
        user_data_32: field!(f, py, "user_data_32", u32),
        reserved: field!(f, py, "reserved", u32),
        ledger: field!(f, py, "ledger", u32),
        code: field!(f, py, "code", u16),
        flags: field!(f, py, "flags", u16),
        timestamp: field!(f, py, "timestamp", u64),
    })
}

fn transfer_from(record: &Bound<'_, PyAny>, index: usize) -> PyResult<Transfer> {
    let py = record.py();
    check_record_type(record, transfer_type(py)?, "transfers", index)?;
    let f = Fields { record, kind: "transfers", index };
    Ok(Transfer {
        id: field!(f, py, "id", u128),
        debit_account_id: field!(f, py, "debit_account_id", u128),
        credit_account_id: field!(f, py, "credit_account_id", u128),
        amount: field!(f, py, "amount", u128),
        pending_id: field!(f, py, "pending_id", u128),
        user_data_128: field!(f, py, "user_data_128", u128),
        user_data_64: field!(f, py, "user_data_64", u64),
        user_data_32: field!(f, py, "user_data_32", u32),
        timeout: field!(f, py, "timeout", u32),
        ledger: field!(f, py, "ledger", u32),
        code: field!(f, py, "code", u16),
        flags: field!(f, py, "flags", u16),
        timestamp: field!(f, py, "timestamp", u64),
    })
}

/// Converts a whole batch of accounts into `into` (cleared first), or refuses it.
pub fn accounts(events: &Bound<'_, PyAny>, into: &mut Vec<Account>) -> PyResult<()> {
    let events = check_batch(events, "accounts")?;
    into.clear();
    for (index, record) in events.iter().enumerate() {
        into.push(account_from(&record, index)?);
    }
    Ok(())
}

/// Converts a whole batch of transfers into `into` (cleared first), or refuses it.
pub fn transfers(events: &Bound<'_, PyAny>, into: &mut Vec<Transfer>) -> PyResult<()> {
    let events = check_batch(events, "transfers")?;
    into.clear();
    for (index, record) in events.iter().enumerate() {
        into.push(transfer_from(&record, index)?);
    }
    Ok(())
}

/// Converts the ids of a lookup, as `_check.check_ids`.
pub fn ids(ids: &Bound<'_, PyAny>) -> PyResult<Vec<u128>> {
    let ids = check_batch(ids, "ids")?;
    let mut converted = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        converted.push(unsigned(&id, &Place { kind: "ids", index, field: None }, 128)?);
    }
    Ok(converted)
}

/// A Python int of a u128, by the fast 64-bit path whenever the value fits it.
fn int<'py>(py: Python<'py>, value: u128) -> Bound<'py, PyAny> {
    match u64::try_from(value) {
        Ok(small) => small.into_pyobject(py),
        Err(_) => value.into_pyobject(py),
    }
    .expect("an int conversion never fails")
    .into_any()
}

/// `Account(...)` from a record, with its fields positionally in record order.
pub fn account_object<'py>(py: Python<'py>, a: &Account) -> PyResult<Bound<'py, PyAny>> {
    let fields = [
        int(py, a.id),
        int(py, a.debits_pending),
        int(py, a.debits_posted),
        int(py, a.credits_pending),
        int(py, a.credits_posted),
        int(py, a.user_data_128),
        int(py, a.user_data_64.into()),
        int(py, a.user_data_32.into()),
        int(py, a.reserved.into()),
        int(py, a.ledger.into()),
        int(py, a.code.into()),
        int(py, a.flags.into()),
        int(py, a.timestamp.into()),
    ];
    account_type(py)?.call1(PyTuple::new(py, fields)?)
}

/// `Transfer(...)` from a record, with its fields positionally in record order.
pub fn transfer_object<'py>(py: Python<'py>, t: &Transfer) -> PyResult<Bound<'py, PyAny>> {
    let fields = [
        int(py, t.id),
        int(py, t.debit_account_id),
        int(py, t.credit_account_id),
        int(py, t.amount),
        int(py, t.pending_id),
        int(py, t.user_data_128),
        int(py, t.user_data_64.into()),
        int(py, t.user_data_32.into()),
        int(py, t.timeout.into()),
        int(py, t.ledger.into()),
        int(py, t.code.into()),
        int(py, t.flags.into()),
        int(py, t.timestamp.into()),
    ];
    transfer_type(py)?.call1(PyTuple::new(py, fields)?)
}

/// The results of a create as a list of `(status, timestamp)` tuples of ints.
pub fn results<'py, S: BatchStatus>(
    py: Python<'py>,
    results: &[(S, u64)],
) -> PyResult<Bound<'py, PyList>> {
    let created = CREATED_CODE
        .get_or_init(py, || S::CREATED.code().into_pyobject(py).expect("an int").unbind())
        .bind(py);
    let tuples = results.iter().map(|&(status, timestamp)| {
        let code = if status == S::CREATED {
            created.clone()
        } else {
            status.code().into_pyobject(py).expect("an int")
        };
        (code, timestamp)
    });
    PyList::new(py, tuples)
}
