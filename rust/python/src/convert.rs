//! Conversions between Python values and the records of `fastledger-core`.
//!
//! A batch is converted whole before the core sees it, and refused with the very messages of
//! `python/fastledger/_check.py`, so that both engines refuse the same input in the same words
//! and a refused batch changes nothing.

use std::fmt;
use std::os::raw::c_int;

use fastledger_core::{
    Account, AccountBalance, AccountFilter, BalancesAt, BatchStatus, QueryFilter, Transfer,
    WideSum, BATCH_MAX, RECORD_SIZE,
};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyOverflowError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyInt, PyList, PyMemoryView, PyString, PyType};
use pyo3::types::{PySequence, PyTuple};

pyo3::import_exception!(fastledger.errors, BatchTooLargeError);
pyo3::import_exception!(fastledger.errors, InvalidRecordError);
pyo3::import_exception!(fastledger.errors, RecordTypeError);

static ACCOUNT_CLASS: PyOnceLock<RecordClass> = PyOnceLock::new();
static TRANSFER_CLASS: PyOnceLock<RecordClass> = PyOnceLock::new();
static ACCOUNT_RESULT_CLASS: PyOnceLock<ResultClass> = PyOnceLock::new();
static TRANSFER_RESULT_CLASS: PyOnceLock<ResultClass> = PyOnceLock::new();
static ACCOUNT_BALANCE_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// The fields of an `Account` and their widths in bits, in record order, as
/// `_types.ACCOUNT_FIELD_BITS` lists them (checked when the class is first loaded).
const ACCOUNT_FIELDS: [(&str, u32); FIELD_COUNT] = [
    ("id", 128),
    ("debits_pending", 128),
    ("debits_posted", 128),
    ("credits_pending", 128),
    ("credits_posted", 128),
    ("user_data_128", 128),
    ("user_data_64", 64),
    ("user_data_32", 32),
    ("reserved", 32),
    ("ledger", 32),
    ("code", 16),
    ("flags", 16),
    ("timestamp", 64),
];

/// The fields of a `Transfer`, as `_types.TRANSFER_FIELD_BITS` lists them.
const TRANSFER_FIELDS: [(&str, u32); FIELD_COUNT] = [
    ("id", 128),
    ("debit_account_id", 128),
    ("credit_account_id", 128),
    ("amount", 128),
    ("pending_id", 128),
    ("user_data_128", 128),
    ("user_data_64", 64),
    ("user_data_32", 32),
    ("timeout", 32),
    ("ledger", 32),
    ("code", 16),
    ("flags", 16),
    ("timestamp", 64),
];

const FIELD_COUNT: usize = 13;

/// One slot of a record class: its member descriptor, the descriptor's `__get__` and
/// `__set__`, and where in an instance the slot keeps its value.
struct Slot {
    name: &'static str,
    bits: u32,
    descriptor: Py<PyAny>,
    get: ffi::descrgetfunc,
    set: ffi::descrsetfunc,
    /// The byte offset in an instance of the pointer to the slot's value (NULL while unset),
    /// as the class's member table gives it and a probe instance confirms (`check_offsets`).
    offset: usize,
}

/// A record class of `fastledger._types` (a frozen dataclass with slots) and its slots in
/// record order. Reading a field from its slot, or through the slot's descriptor, skips the
/// attribute lookup by name that `getattr` repeats for every field of every record; the class
/// is checked to be exactly the record class first, so the slots are the ones `getattr` would
/// read.
struct RecordClass {
    class: Py<PyType>,
    slots: [Slot; FIELD_COUNT],
    /// `object.__new__`, which makes an instance with empty slots.
    object_new: ffi::newfunc,
}

impl RecordClass {
    fn load(
        py: Python<'_>,
        name: &str,
        fields_name: &str,
        fields: &[(&'static str, u32); FIELD_COUNT],
    ) -> PyResult<Self> {
        let types = py.import("fastledger._types")?;
        let declared: Vec<(String, u32)> = types.getattr(fields_name)?.extract()?;
        let expected: Vec<(String, u32)> =
            fields.iter().map(|&(field, bits)| (field.to_owned(), bits)).collect();
        assert_eq!(declared, expected, "_types.{fields_name} is the Rust record layout");
        let class = types.getattr(name)?.cast_into::<PyType>()?;
        // `make` skips `__init__`, which is then the dataclass's own: it only sets the fields.
        assert!(!class.hasattr("__post_init__")?, "{name} sets its fields and nothing else");
        let namespace = class.getattr("__dict__")?;
        let mut slots = Vec::with_capacity(FIELD_COUNT);
        for &(field, bits) in fields {
            let descriptor = namespace.get_item(field)?;
            let descriptor_type = descriptor.get_type().as_type_ptr();
            // SAFETY: any type, static or heap, answers PyType_GetSlot from Python 3.10 on.
            let (get, set) = unsafe {
                (
                    ffi::PyType_GetSlot(descriptor_type, ffi::Py_tp_descr_get),
                    ffi::PyType_GetSlot(descriptor_type, ffi::Py_tp_descr_set),
                )
            };
            if get.is_null() || set.is_null() {
                let message = format!("{name}.{field} is not a slot of the record class");
                return Err(pyo3::exceptions::PyTypeError::new_err(message));
            }
            // SAFETY: the Py_tp_descr_get and Py_tp_descr_set slots hold these function types.
            let (get, set) = unsafe {
                (
                    std::mem::transmute::<*mut std::ffi::c_void, ffi::descrgetfunc>(get),
                    std::mem::transmute::<*mut std::ffi::c_void, ffi::descrsetfunc>(set),
                )
            };
            let offset = member_offset(&class, name, field)?;
            let descriptor = descriptor.unbind();
            slots.push(Slot { name: field, bits, descriptor, get, set, offset });
        }
        // SAFETY: `object` is a static type whose `tp_new` slot is `object.__new__`.
        let object_new = unsafe {
            let object = std::ptr::addr_of_mut!(ffi::PyBaseObject_Type);
            let slot = ffi::PyType_GetSlot(object, ffi::Py_tp_new);
            assert!(!slot.is_null(), "object has a constructor");
            std::mem::transmute::<*mut std::ffi::c_void, ffi::newfunc>(slot)
        };
        let slots = slots.try_into().unwrap_or_else(|_| unreachable!("a slot per field"));
        let record_class = Self { class: class.unbind(), slots, object_new };
        record_class.check_offsets(py, name)?;
        Ok(record_class)
    }

    /// Checks that each slot's descriptor keeps its value at the slot's offset, apart from
    /// every other slot and within an instance: a probe instance gets a distinct value through
    /// each descriptor, and each must be found at its offset.
    fn check_offsets(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        let size: usize = self.class.bind(py).getattr("__basicsize__")?.extract()?;
        let values: Vec<Bound<'_, PyAny>> = (0..self.slots.len())
            .map(|i| (u128::MAX - i as u128).into_pyobject(py).expect("an int").into_any())
            .collect();
        let values: [Bound<'_, PyAny>; FIELD_COUNT] =
            values.try_into().expect("one value per slot");
        let probe = self.make(py, values.clone())?;
        for (slot, value) in self.slots.iter().zip(&values) {
            let within = slot.offset >= std::mem::size_of::<ffi::PyObject>()
                && slot.offset + std::mem::size_of::<*mut ffi::PyObject>() <= size;
            // SAFETY: the offset lies within the instance, checked just before.
            let found = within && unsafe { slot_value(&probe, slot.offset) } == value.as_ptr();
            assert!(found, "{name}.{} keeps its value at offset {}", slot.name, slot.offset);
        }
        Ok(())
    }

    /// A record of the class with these field values, in record order: `object.__new__` and a
    /// set through each slot's descriptor, which is what the dataclass's `__init__` does (a
    /// frozen one through `object.__setattr__`), without running it in Python: about six times
    /// faster, for queries that return hundreds of records.
    fn make<'py>(
        &self,
        py: Python<'py>,
        values: [Bound<'py, PyAny>; FIELD_COUNT],
    ) -> PyResult<Bound<'py, PyAny>> {
        let class = self.class.bind(py).as_type_ptr();
        let no_arguments = PyTuple::empty(py);
        // SAFETY: `object.__new__` takes a type and an empty argument tuple, and returns a new
        // reference or NULL with an error set.
        let record = unsafe {
            let made = (self.object_new)(class, no_arguments.as_ptr(), std::ptr::null_mut());
            Bound::from_owned_ptr_or_err(py, made)?
        };
        for (slot, value) in self.slots.iter().zip(values) {
            // SAFETY: `record` is an instance of the class whose descriptor `slot` is; the
            // setter takes its own reference to `value` and returns -1 with an error set.
            let failed = unsafe {
                (slot.set)(slot.descriptor.as_ptr(), record.as_ptr(), value.as_ptr()) != 0
            };
            if failed {
                return Err(PyErr::fetch(py));
            }
        }
        Ok(record)
    }

    /// Reads every field of `record` in record order, refusing what `_check.check_records`
    /// refuses, with its message. `fields` are the class's fields, whose widths are constants
    /// where this is inlined: the check of each width then costs nothing.
    #[inline(always)]
    fn read(
        &self,
        record: &Bound<'_, PyAny>,
        fields: &[(&'static str, u32); FIELD_COUNT],
        kind: &str,
        index: usize,
    ) -> PyResult<[u128; FIELD_COUNT]> {
        // SAFETY: `record` is a live object; its type is only compared.
        if unsafe { ffi::Py_TYPE(record.as_ptr()) } != self.class.as_ptr().cast() {
            check_record_type(record, self.class.bind(record.py()), kind, index)?;
        }
        let mut values = [0u128; FIELD_COUNT];
        for (i, value) in values.iter_mut().enumerate() {
            let slot = &self.slots[i];
            // SAFETY: `record` is exactly of the class, whose instances keep the slot's value
            // at `slot.offset` (checked at load). The value is only borrowed: the fast path
            // runs no Python code and allocates no object, so nothing can change the slot
            // meanwhile.
            let borrowed = unsafe { slot_value(record, slot.offset) };
            *value = match small_unsigned(borrowed, fields[i].1) {
                Some(number) => number,
                None => self.read_slowly(record, slot, kind, index)?,
            };
        }
        Ok(values)
    }

    /// Reads a field whose value is not a small plain int, or is unset, through the slot's
    /// descriptor, which holds a reference to the value and raises what `getattr` raises.
    #[cold]
    #[inline(never)]
    fn read_slowly(
        &self,
        record: &Bound<'_, PyAny>,
        slot: &Slot,
        kind: &str,
        index: usize,
    ) -> PyResult<u128> {
        let py = record.py();
        // SAFETY: `record` is exactly of the class, and `slot.descriptor` is that class's
        // descriptor of the field; the call returns a new reference or NULL with an error.
        let field = unsafe {
            let raw = (slot.get)(slot.descriptor.as_ptr(), record.as_ptr(), self.class.as_ptr());
            Bound::from_owned_ptr_or_err(py, raw)?
        };
        unsigned(&field, &Place { kind, index, field: Some(slot.name) }, slot.bits)
    }
}

/// The pointer that `record` keeps at byte `offset`, borrowed; NULL for an unset slot.
///
/// # Safety
///
/// `offset` must be the offset of a slot of `record`'s class, as `RecordClass` checks.
unsafe fn slot_value(record: &Bound<'_, PyAny>, offset: usize) -> *mut ffi::PyObject {
    // SAFETY: the caller's promise: the instance holds an object pointer at `offset`.
    unsafe { record.as_ptr().cast::<u8>().add(offset).cast::<*mut ffi::PyObject>().read() }
}

/// The byte offset of the slot `field` of `class`, from the class's member table (the
/// `__slots__` that the dataclass declares); refuses a field that is no such slot.
fn member_offset(class: &Bound<'_, PyType>, name: &str, field: &str) -> PyResult<usize> {
    // SAFETY: any type answers PyType_GetSlot; the member table of a type is an array of
    // `PyMemberDef` ended by one with a NULL name, which lives as long as the class.
    unsafe {
        let members = ffi::PyType_GetSlot(class.as_type_ptr(), ffi::Py_tp_members);
        let mut member = members.cast::<ffi::PyMemberDef>().cast_const();
        while !member.is_null() && !(*member).name.is_null() {
            let found = std::ffi::CStr::from_ptr((*member).name).to_bytes() == field.as_bytes();
            if found && (*member).type_code == ffi::Py_T_OBJECT_EX {
                if let Ok(offset) = usize::try_from((*member).offset) {
                    return Ok(offset);
                }
            }
            member = member.add(1);
        }
    }
    let message = format!("{name}.{field} is not a slot of the record class");
    Err(pyo3::exceptions::PyTypeError::new_err(message))
}

/// The value of a field of `bits` bits when it is a plain int in `0..2**63` that fits them,
/// read without a reference, an allocation or a call into Python code; None for any other
/// value (an unset slot included), which `unsigned` reads or refuses.
fn small_unsigned(value: *mut ffi::PyObject, bits: u32) -> Option<u128> {
    // SAFETY: a non-NULL slot value is a live object, kept by the record that the caller
    // holds; an exact int is only read.
    unsafe {
        if value.is_null() || ffi::PyLong_CheckExact(value) == 0 {
            return None;
        }
        let mut overflow: c_int = 0;
        let small = ffi::PyLong_AsLongLongAndOverflow(value, &mut overflow);
        let number = u128::try_from(small).ok().filter(|_| overflow == 0)?;
        (bits == 128 || number >> bits == 0).then_some(number)
    }
}

fn account_class(py: Python<'_>) -> PyResult<&RecordClass> {
    ACCOUNT_CLASS.get_or_try_init(py, || {
        RecordClass::load(py, "Account", "ACCOUNT_FIELD_BITS", &ACCOUNT_FIELDS)
    })
}

fn transfer_class(py: Python<'_>) -> PyResult<&RecordClass> {
    TRANSFER_CLASS.get_or_try_init(py, || {
        RecordClass::load(py, "Transfer", "TRANSFER_FIELD_BITS", &TRANSFER_FIELDS)
    })
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
pub fn check_batch<'py>(
    events: &Bound<'py, PyAny>,
    kind: &str,
    limit: usize,
) -> PyResult<Bound<'py, PyList>> {
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
    check_count(events.len(), kind, limit)?;
    Ok(events)
}

/// Refuses a batch of more than `limit` events, as `_check.check_count`.
fn check_count(count: usize, kind: &str, limit: usize) -> PyResult<()> {
    if count <= limit {
        return Ok(());
    }
    Err(BatchTooLargeError::new_err(format!(
        "a batch holds at most {limit} events, got {count}: split {kind} into chunks of at most \
         {limit}"
    )))
}

/// Reads an unsigned integer of `bits` bits from its exact value (`exact_int`), refusing what
/// `_check` refuses: a non-int (an int subclass such as `IntFlag` is welcome, `bool` is not), a
/// negative value, a value too wide.
fn unsigned(value: &Bound<'_, PyAny>, place: &Place<'_>, bits: u32) -> PyResult<u128> {
    debug_assert!(bits <= 128);
    if !value.is_exact_instance_of::<PyInt>()
        && (!value.is_instance_of::<PyInt>() || value.is_instance_of::<PyBool>())
    {
        let name = type_name(value)?;
        return Err(RecordTypeError::new_err(format!("{place} must be an int, not {name}")));
    }
    let exact = exact_int(value)?;
    let value = &exact;
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

/// The exact value of an int: the int itself, or for an instance of a subclass a plain int of
/// its value, read without calling any of its methods (`PyNumber_Index`). A subclass may
/// override the operators that reading a wide int goes through (the `>>` of PyO3's 128-bit
/// conversion), and its own `__index__`; the copy has int's own.
fn exact_int<'py>(value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if value.is_exact_instance_of::<PyInt>() {
        return Ok(value.clone());
    }
    // SAFETY: `value` is a live object; the call returns a new reference or NULL with an error.
    unsafe { Bound::from_owned_ptr_or_err(value.py(), ffi::PyNumber_Index(value.as_ptr())) }
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

// The casts below are exact: `RecordClass::read` has checked every field against its width.
fn account_from(record: &Bound<'_, PyAny>, index: usize) -> PyResult<Account> {
    let v = account_class(record.py())?.read(record, &ACCOUNT_FIELDS, "accounts", index)?;
    Ok(Account {
        id: v[0],
        debits_pending: v[1],
        debits_posted: v[2],
        credits_pending: v[3],
        credits_posted: v[4],
        user_data_128: v[5],
        user_data_64: v[6] as u64,
        user_data_32: v[7] as u32,
        reserved: v[8] as u32,
        ledger: v[9] as u32,
        code: v[10] as u16,
        flags: v[11] as u16,
        timestamp: v[12] as u64,
    })
}

fn transfer_from(record: &Bound<'_, PyAny>, index: usize) -> PyResult<Transfer> {
    let v = transfer_class(record.py())?.read(record, &TRANSFER_FIELDS, "transfers", index)?;
    Ok(Transfer {
        id: v[0],
        debit_account_id: v[1],
        credit_account_id: v[2],
        amount: v[3],
        pending_id: v[4],
        user_data_128: v[5],
        user_data_64: v[6] as u64,
        user_data_32: v[7] as u32,
        timeout: v[8] as u32,
        ledger: v[9] as u32,
        code: v[10] as u16,
        flags: v[11] as u16,
        timestamp: v[12] as u64,
    })
}

/// Converts a whole batch of accounts into `into` (cleared first), or refuses it.
pub fn accounts(events: &Bound<'_, PyAny>, into: &mut Vec<Account>) -> PyResult<()> {
    let events = check_batch(events, "accounts", BATCH_MAX)?;
    into.clear();
    for (index, record) in events.iter().enumerate() {
        into.push(account_from(&record, index)?);
    }
    Ok(())
}

/// Converts a whole batch of transfers into `into` (cleared first), or refuses it.
pub fn transfers(events: &Bound<'_, PyAny>, into: &mut Vec<Transfer>) -> PyResult<()> {
    let events = check_batch(events, "transfers", BATCH_MAX)?;
    into.clear();
    for (index, record) in events.iter().enumerate() {
        into.push(transfer_from(&record, index)?);
    }
    Ok(())
}

/// Packs a list of accounts into 128-byte records, refusing what `accounts` refuses, with no
/// limit on their number (an engine state packs every account).
pub fn pack_accounts<'py>(events: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let events = check_batch(events, "accounts", usize::MAX)?;
    pack(&events, |record, index| Ok(account_from(record, index)?.to_bytes()))
}

/// Packs a list of transfers into 128-byte records, refusing what `transfers` refuses.
pub fn pack_transfers<'py>(events: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let events = check_batch(events, "transfers", usize::MAX)?;
    pack(&events, |record, index| Ok(transfer_from(record, index)?.to_bytes()))
}

/// Records written one after another straight into a new `bytes`, for packed lookups.
pub fn packed_records<'py, R>(
    py: Python<'py>,
    records: &[R],
    to_bytes: impl Fn(&R) -> [u8; RECORD_SIZE],
) -> Bound<'py, PyBytes> {
    PyBytes::new_with(py, records.len() * RECORD_SIZE, |bytes| {
        for (record, into) in records.iter().zip(bytes.chunks_exact_mut(RECORD_SIZE)) {
            into.copy_from_slice(&to_bytes(record));
        }
        Ok(())
    })
    .expect("filling a new bytes object cannot fail")
}

/// Writes the record of each event, converted by `record_of`, straight into a new `bytes`.
fn pack<'py>(
    events: &Bound<'py, PyList>,
    record_of: impl Fn(&Bound<'py, PyAny>, usize) -> PyResult<[u8; RECORD_SIZE]>,
) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(events.py(), events.len() * RECORD_SIZE, |bytes| {
        for (index, (event, into)) in
            events.iter().zip(bytes.chunks_exact_mut(RECORD_SIZE)).enumerate()
        {
            into.copy_from_slice(&record_of(&event, index)?);
        }
        Ok(())
    })
}

/// Converts a list of ids named `kind`, at most `limit` of them, as `_check.check_ids`.
pub fn ids(ids: &Bound<'_, PyAny>, kind: &str, limit: usize) -> PyResult<Vec<u128>> {
    let ids = check_batch(ids, kind, limit)?;
    let mut converted = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        converted.push(unsigned(&id, &Place { kind, index, field: None }, 128)?);
    }
    Ok(converted)
}

/// The buffer of a packed batch, checked: C-contiguous, whole 128-byte records, at most
/// `BATCH_MAX` of them.
pub fn packed_buffer(records: &Bound<'_, PyAny>, kind: &str) -> PyResult<PyBuffer<u8>> {
    let buffer = PyBuffer::<u8>::get(records)?;
    if !buffer.is_c_contiguous() {
        let message = format!("a packed batch of {kind} must be C-contiguous");
        return Err(RecordTypeError::new_err(message));
    }
    let length = buffer.item_count();
    if length % RECORD_SIZE != 0 {
        let (count, rest) = (length / RECORD_SIZE, length % RECORD_SIZE);
        return Err(RecordTypeError::new_err(format!(
            "a packed batch of {kind} must be whole {RECORD_SIZE}-byte records: {length} bytes \
             is {count} records and {rest} bytes"
        )));
    }
    check_count(length / RECORD_SIZE, kind, BATCH_MAX)?;
    Ok(buffer)
}

/// The `bytes` object whose bytes are exactly those of `buffer`, the buffer of `records`, if
/// there is one: `records` itself, or the object that the memoryview `records` views whole.
/// A `bytes` object never changes, so the core may read it in place without the GIL.
pub fn bytes_behind<'py>(
    records: &Bound<'py, PyAny>,
    buffer: &PyBuffer<u8>,
) -> Option<Bound<'py, PyBytes>> {
    let owner = match records.cast::<PyMemoryView>() {
        Ok(view) => view.getattr(pyo3::intern!(records.py(), "obj")).ok()?,
        Err(_) => records.clone(),
    };
    let bytes = owner.cast_into_exact::<PyBytes>().ok()?;
    let data = bytes.as_bytes();
    let whole =
        data.as_ptr() == buffer.buf_ptr().cast_const().cast() && data.len() == buffer.item_count();
    whole.then_some(bytes)
}

/// Reads a packed batch, checked by `packed_buffer`, into `into` (cleared first).
pub fn packed<R>(
    records: &Bound<'_, PyAny>,
    kind: &str,
    from_bytes: fn(&[u8; RECORD_SIZE]) -> R,
    into: &mut Vec<R>,
) -> PyResult<()> {
    copy_records(&packed_buffer(records, kind)?, from_bytes, into);
    Ok(())
}

/// Copies the records of a packed batch's `buffer` (see `packed_buffer`), decoded, into `into`
/// (cleared first).
pub fn copy_records<R>(
    buffer: &PyBuffer<u8>,
    from_bytes: fn(&[u8; RECORD_SIZE]) -> R,
    into: &mut Vec<R>,
) {
    into.clear();
    let start = buffer.buf_ptr().cast::<[u8; RECORD_SIZE]>().cast_const();
    into.extend((0..buffer.item_count() / RECORD_SIZE).map(|i| {
        // SAFETY: the buffer is contiguous and holds whole records, and `buffer` keeps it
        // exported (and so alive and unmoved) while it lives; a record has no alignment. The
        // GIL is held, so no Python code writes to it meanwhile.
        from_bytes(unsafe { &*start.add(i) })
    }));
}

/// The results of a packed batch as two packed columns: the statuses (u32) and the
/// timestamps (u64), little-endian.
pub fn packed_results<'py, S: BatchStatus>(
    py: Python<'py>,
    results: &[(S, u64)],
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let statuses = PyBytes::new_with(py, results.len() * 4, |column| {
        for (field, (status, _)) in column.chunks_exact_mut(4).zip(results) {
            field.copy_from_slice(&status.code().to_le_bytes());
        }
        Ok(())
    })?;
    let timestamps = PyBytes::new_with(py, results.len() * 8, |column| {
        for (field, (_, timestamp)) in column.chunks_exact_mut(8).zip(results) {
            field.copy_from_slice(&timestamp.to_le_bytes());
        }
        Ok(())
    })?;
    Ok((statuses, timestamps))
}

/// `f.<name>` as the unsigned type it is assigned to, read from its exact value (see
/// `exact_int`); the facade has checked the filter's fields.
macro_rules! filter_field {
    ($f:expr, $name:literal) => {
        exact_int(&$f.getattr(pyo3::intern!($f.py(), $name))?)?.extract()?
    };
}

pub fn account_filter(f: &Bound<'_, PyAny>) -> PyResult<AccountFilter> {
    Ok(AccountFilter {
        account_id: filter_field!(f, "account_id"),
        user_data_128: filter_field!(f, "user_data_128"),
        user_data_64: filter_field!(f, "user_data_64"),
        user_data_32: filter_field!(f, "user_data_32"),
        code: filter_field!(f, "code"),
        timestamp_min: filter_field!(f, "timestamp_min"),
        timestamp_max: filter_field!(f, "timestamp_max"),
        limit: filter_field!(f, "limit"),
        flags: filter_field!(f, "flags"),
    })
}

pub fn query_filter(f: &Bound<'_, PyAny>) -> PyResult<QueryFilter> {
    Ok(QueryFilter {
        user_data_128: filter_field!(f, "user_data_128"),
        user_data_64: filter_field!(f, "user_data_64"),
        user_data_32: filter_field!(f, "user_data_32"),
        ledger: filter_field!(f, "ledger"),
        code: filter_field!(f, "code"),
        timestamp_min: filter_field!(f, "timestamp_min"),
        timestamp_max: filter_field!(f, "timestamp_max"),
        limit: filter_field!(f, "limit"),
        flags: filter_field!(f, "flags"),
    })
}

/// `AccountBalance(...)` with its fields positionally.
pub fn balance_object<'py>(py: Python<'py>, b: &AccountBalance) -> PyResult<Bound<'py, PyAny>> {
    let class = ACCOUNT_BALANCE_CLASS.import(py, "fastledger._types", "AccountBalance")?;
    let fields = [
        int(py, b.debits_pending),
        int(py, b.debits_posted),
        int(py, b.credits_pending),
        int(py, b.credits_posted),
        int(py, b.timestamp.into()),
    ];
    class.call1(PyTuple::new(py, fields)?)
}

/// The answer of `balances_at` as the reference engine gives it: five packed u128 columns
/// (account ids, then the four balances) and the four column sums as ints.
pub fn balances_at_object<'py>(py: Python<'py>, at: &BalancesAt) -> PyResult<Bound<'py, PyTuple>> {
    let column = |values: &[u128]| {
        PyBytes::new_with(py, values.len() * 16, |bytes| {
            for (into, value) in bytes.chunks_exact_mut(16).zip(values) {
                into.copy_from_slice(&value.to_le_bytes());
            }
            Ok(())
        })
    };
    let columns = PyTuple::new(
        py,
        [
            column(&at.account_ids)?,
            column(&at.debits_pending)?,
            column(&at.debits_posted)?,
            column(&at.credits_pending)?,
            column(&at.credits_posted)?,
        ],
    )?;
    let totals: Vec<Bound<'py, PyAny>> =
        at.totals.iter().map(|sum| wide_int(py, sum)).collect::<PyResult<_>>()?;
    PyTuple::new(py, [columns.into_any(), PyTuple::new(py, totals)?.into_any()])
}

/// `high * 2**128 + low` as a Python int.
fn wide_int<'py>(py: Python<'py>, sum: &WideSum) -> PyResult<Bound<'py, PyAny>> {
    let low = int(py, sum.low);
    if sum.high == 0 {
        return Ok(low);
    }
    let high = int(py, sum.high.into());
    high.lshift(128)?.add(low)
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
    account_class(py)?.make(py, fields)
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
    transfer_class(py)?.make(py, fields)
}

/// A result class of `fastledger._types` (`CreateAccountResult` or `CreateTransferResult`, a
/// named tuple of the status and the timestamp) and the members of its status enum by code.
///
/// The binding makes the result records itself: made by the facade from tuples of ints, each
/// cost a tuple, a dict lookup and a Python-level constructor more.
struct ResultClass {
    class: Py<PyType>,
    /// The class's allocator (the one `tuple.__new__` ends in): a tuple of the class with
    /// empty items, which `make` fills.
    alloc: ffi::allocfunc,
    /// The status members whose codes are below `members.len()`, by code; `CREATED` apart.
    members: Vec<Option<Py<PyAny>>>,
    created: Py<PyAny>,
}

/// Status codes are small, but for `CREATED` (`0xFFFF_FFFF`).
const SMALL_CODES: u32 = 256;

impl ResultClass {
    fn load(py: Python<'_>, result: &str, status: &str, created_code: u32) -> PyResult<Self> {
        let types = py.import("fastledger._types")?;
        let class = types.getattr(result)?.cast_into::<PyType>()?;
        let mut members: Vec<Option<Py<PyAny>>> = (0..SMALL_CODES).map(|_| None).collect();
        let mut created = None;
        for member in types.getattr(status)?.try_iter()? {
            let member = member?;
            let code: u32 = member.extract()?;
            if code == created_code {
                created = Some(member.unbind());
            } else {
                assert!(code < SMALL_CODES, "{status} {code} is a small code");
                members[code as usize] = Some(member.unbind());
            }
        }
        assert!(class.is_subclass_of::<PyTuple>()?, "{result} is a named tuple");
        // SAFETY: the class is live; every type has a `tp_alloc` slot, inherited if not its own.
        let alloc = unsafe {
            let slot = ffi::PyType_GetSlot(class.as_type_ptr(), ffi::Py_tp_alloc);
            assert!(!slot.is_null(), "{result} has an allocator");
            std::mem::transmute::<*mut std::os::raw::c_void, ffi::allocfunc>(slot)
        };
        let created = created.expect("the status enum has CREATED");
        Ok(Self { class: class.unbind(), alloc, members, created })
    }

    fn member<'a, S: BatchStatus>(&'a self, py: Python<'a>, status: S) -> &'a Bound<'a, PyAny> {
        if status == S::CREATED {
            return self.created.bind(py);
        }
        let member = self.members.get(status.code() as usize).and_then(Option::as_ref);
        member.expect("every status the core returns is a member of the enum").bind(py)
    }

    /// A result `(status, timestamp)` of the class, as the named tuple's constructor makes it
    /// (a tuple of the class holding the two), left untracked by the garbage collector.
    ///
    /// A result holds an int and a status enum member, which its class keeps alive, so no
    /// reference cycle runs through it (short of storing a result on the enum itself): CPython
    /// untracks tuples of ints for that reason, and cannot see that a member is as harmless.
    /// Tracked, a batch of 8189 results would live through young collections into the oldest
    /// generation and set off full collections, which walk every object of the process (the
    /// caller's million transfers, say) and cost more than making the results.
    fn make<'py, S: BatchStatus>(
        &self,
        py: Python<'py>,
        status: S,
        timestamp: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let class = self.class.as_ptr().cast::<ffi::PyTypeObject>();
        // SAFETY: the allocator of a tuple class returns a new reference to a tuple of that
        // class with two empty items, or NULL with an error set.
        let made = unsafe { Bound::from_owned_ptr_or_err(py, (self.alloc)(class, 2))? };
        let items = [self.member(py, status).clone(), int(py, timestamp.into())];
        for (index, item) in items.into_iter().enumerate() {
            // SAFETY: `made` is a new tuple that nothing else references yet, as setting an
            // item requires; the call takes over the item's reference.
            let failed =
                unsafe { ffi::PyTuple_SetItem(made.as_ptr(), index as isize, item.into_ptr()) };
            if failed != 0 {
                return Err(PyErr::fetch(py));
            }
        }
        // SAFETY: `made` is a live object of a collected type; untracking it is always allowed.
        unsafe { ffi::PyObject_GC_UnTrack(made.as_ptr().cast()) };
        Ok(made)
    }
}

fn account_result_class(py: Python<'_>) -> PyResult<&ResultClass> {
    ACCOUNT_RESULT_CLASS.get_or_try_init(py, || {
        let created = fastledger_core::CreateAccountStatus::Created.code();
        ResultClass::load(py, "CreateAccountResult", "CreateAccountStatus", created)
    })
}

fn transfer_result_class(py: Python<'_>) -> PyResult<&ResultClass> {
    TRANSFER_RESULT_CLASS.get_or_try_init(py, || {
        let created = fastledger_core::CreateTransferStatus::Created.code();
        ResultClass::load(py, "CreateTransferResult", "CreateTransferStatus", created)
    })
}

fn results<'py, S: BatchStatus>(
    py: Python<'py>,
    class: &ResultClass,
    results: &[(S, u64)],
) -> PyResult<Bound<'py, PyList>> {
    let _paused = CollectorPause::new(py);
    // Each result goes straight into its place in the list, rather than into a Vec that a
    // second loop then moves into the list: about a quarter of the cost of the results.
    let length = isize::try_from(results.len()).expect("a batch is far shorter than isize::MAX");
    // SAFETY: PyList_New returns a new list of `length` empty items, or NULL with an error.
    let list = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyList_New(length))? };
    for (index, &(status, timestamp)) in (0..length).zip(results) {
        let made = class.make(py, status, timestamp)?;
        // SAFETY: `index` is within the new list, whose item there is still empty; the call
        // takes over the reference to `made`. A list left with empty items when an error
        // returns early is freed unseen, and freeing a list skips empty items.
        unsafe { ffi::PyList_SetItem(list.as_ptr(), index, made.into_ptr()) };
    }
    // SAFETY: PyList_New made a list.
    Ok(unsafe { list.cast_into_unchecked() })
}

/// Pauses CPython's cyclic garbage collector until dropped, for making a batch's results.
///
/// The collector runs a young collection for every 700 objects allocated, untracked ones
/// included, and an older one for every ten of those: making 8189 results set off a dozen
/// collections that walked the caller's young objects (the batch of transfers it had just
/// built, say), about a third of the time of a batch of objects. The results cannot form a
/// cycle, so nothing is lost by letting the allocations after the batch count towards one
/// collection instead. The pause is invisible to other threads: it ends before this thread
/// runs Python code or lets go of the GIL.
struct CollectorPause {
    was_enabled: bool,
}

impl CollectorPause {
    fn new(_py: Python<'_>) -> Self {
        // SAFETY: the GIL is held, as the `Python` token proves.
        let was_enabled = unsafe { ffi::PyGC_Disable() } != 0;
        Self { was_enabled }
    }
}

impl Drop for CollectorPause {
    fn drop(&mut self) {
        if self.was_enabled {
            // SAFETY: the GIL is still held: the pause lives within a call holding it.
            unsafe { ffi::PyGC_Enable() };
        }
    }
}

/// The results of an accounts batch: a list of `CreateAccountResult`.
pub fn account_results<'py>(
    py: Python<'py>,
    statuses: &[(fastledger_core::CreateAccountStatus, u64)],
) -> PyResult<Bound<'py, PyList>> {
    results(py, account_result_class(py)?, statuses)
}

/// The results of a transfers batch: a list of `CreateTransferResult`.
pub fn transfer_results<'py>(
    py: Python<'py>,
    statuses: &[(fastledger_core::CreateTransferStatus, u64)],
) -> PyResult<Bound<'py, PyList>> {
    results(py, transfer_result_class(py)?, statuses)
}
