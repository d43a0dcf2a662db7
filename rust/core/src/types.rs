//! The records and flags of the ledger, as `python/fastledger/_types.py` has
//! them. An `Account` and a `Transfer` are each one 128-byte record with TigerBeetle's field
//! order; `from_bytes`/`to_bytes` read and write that little-endian layout.

use core::mem::size_of;

/// Size in bytes of one account or transfer record.
pub const RECORD_SIZE: usize = 128;

/// Returns how many whole records a buffer of `len_bytes` bytes holds, or `None` when the length
/// is not a multiple of [`RECORD_SIZE`]: a packed batch with a partial record is rejected whole
/// rather than read up to its last complete record.
pub(crate) fn record_count(len_bytes: usize) -> Option<usize> {
    if len_bytes % RECORD_SIZE == 0 {
        Some(len_bytes / RECORD_SIZE)
    } else {
        None
    }
}

pub const U128_MAX: u128 = u128::MAX;

/// Posting a pending transfer with this amount posts the whole pending amount.
pub const AMOUNT_MAX: u128 = U128_MAX;

/// The most events one call accepts, as TigerBeetle's default message size allows.
pub const BATCH_MAX: usize = 8189;

/// User-defined timestamps of imported events must lie in `[1, TIMESTAMP_MAX]`.
pub const TIMESTAMP_MAX: u64 = (1 << 63) - 1;

pub mod account_flags {
    pub const LINKED: u16 = 1 << 0;
    pub const DEBITS_MUST_NOT_EXCEED_CREDITS: u16 = 1 << 1;
    pub const CREDITS_MUST_NOT_EXCEED_DEBITS: u16 = 1 << 2;
    pub const HISTORY: u16 = 1 << 3;
    pub const IMPORTED: u16 = 1 << 4;
    pub const CLOSED: u16 = 1 << 5;
    /// Every bit that an account's flags may carry; any other bit is a reserved flag.
    pub const KNOWN: u16 = LINKED
        | DEBITS_MUST_NOT_EXCEED_CREDITS
        | CREDITS_MUST_NOT_EXCEED_DEBITS
        | HISTORY
        | IMPORTED
        | CLOSED;
}

pub mod transfer_flags {
    pub const LINKED: u16 = 1 << 0;
    pub const PENDING: u16 = 1 << 1;
    pub const POST_PENDING_TRANSFER: u16 = 1 << 2;
    pub const VOID_PENDING_TRANSFER: u16 = 1 << 3;
    pub const BALANCING_DEBIT: u16 = 1 << 4;
    pub const BALANCING_CREDIT: u16 = 1 << 5;
    pub const CLOSING_DEBIT: u16 = 1 << 6;
    pub const CLOSING_CREDIT: u16 = 1 << 7;
    pub const IMPORTED: u16 = 1 << 8;
    /// Every bit that a transfer's flags may carry; any other bit is a reserved flag.
    pub const KNOWN: u16 = LINKED
        | PENDING
        | POST_PENDING_TRANSFER
        | VOID_PENDING_TRANSFER
        | BALANCING_DEBIT
        | BALANCING_CREDIT
        | CLOSING_DEBIT
        | CLOSING_CREDIT
        | IMPORTED;
}

/// An account. Balances are maintained by the ledger and are 0 at creation; `reserved` must be
/// 0 (else `RESERVED_FIELD`).
///
/// Aligned to a cache line, as a transfer is, so that a record in a log is two whole lines: the
/// batch loop prefetches both, and one record never shares a line with the next.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Account {
    pub id: u128,
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    pub reserved: u32,
    pub ledger: u32,
    pub code: u16,
    pub flags: u16,
    pub timestamp: u64,
}

/// An immutable movement of `amount` from the debit account to the credit account.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    pub id: u128,
    pub debit_account_id: u128,
    pub credit_account_id: u128,
    pub amount: u128,
    pub pending_id: u128,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    pub timeout: u32,
    pub ledger: u32,
    pub code: u16,
    pub flags: u16,
    pub timestamp: u64,
}

/// An account's balances as of `timestamp`: an entry of its history, or a point-in-time answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountBalance {
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
    pub timestamp: u64,
}

impl AccountBalance {
    pub fn of(a: &Account, timestamp: u64) -> Self {
        Self {
            debits_pending: a.debits_pending,
            debits_posted: a.debits_posted,
            credits_pending: a.credits_pending,
            credits_posted: a.credits_posted,
            timestamp,
        }
    }
}

/// A record with a timestamp: the logs of accounts and transfers are sorted by it.
pub trait Timestamped {
    fn timestamp(&self) -> u64;
}

impl Timestamped for Account {
    fn timestamp(&self) -> u64 {
        self.timestamp
    }
}

impl Timestamped for Transfer {
    fn timestamp(&self) -> u64 {
        self.timestamp
    }
}

// The in-memory layout is the wire layout: no padding, TigerBeetle's size, two cache lines.
const _: () = assert!(size_of::<Account>() == RECORD_SIZE);
const _: () = assert!(size_of::<Transfer>() == RECORD_SIZE);

// SAFETY: the fields of a transfer tile its 128 bytes exactly (the size asserted above), and it
// is aligned to 64 bytes.
unsafe impl crate::memory::Plain for Transfer {}

/// A transfer as a packed batch holds it: its 128 little-endian bytes, read in place (a record
/// of a buffer has no alignment). The engine reads the fields it looks ahead at straight from
/// the bytes and decodes the whole record when the transfer's turn comes.
#[repr(transparent)]
#[derive(Clone, Copy, Debug)]
pub struct TransferRecord(pub [u8; RECORD_SIZE]);

impl TransferRecord {
    /// The whole records of `bytes`, in place, or `None` if its length is not a multiple of
    /// `RECORD_SIZE`.
    pub fn records_of(bytes: &[u8]) -> Option<&[TransferRecord]> {
        let count = record_count(bytes.len())?;
        // SAFETY: a record is `repr(transparent)` over 128 bytes, with an alignment of 1, and
        // `bytes` holds `count` whole records, borrowed for as long as the records are.
        Some(unsafe { core::slice::from_raw_parts(bytes.as_ptr().cast(), count) })
    }

    pub fn transfer(&self) -> Transfer {
        Transfer::from_bytes(&self.0)
    }
}

impl Timestamped for TransferRecord {
    fn timestamp(&self) -> u64 {
        u64::from_le_bytes(self.0[120..].try_into().expect("the last field of a record"))
    }
}

/// Reads little-endian fields one after another from a record.
struct Reader<'a> {
    bytes: &'a [u8; RECORD_SIZE],
    offset: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let field: [u8; N] = self.bytes[self.offset..self.offset + N]
            .try_into()
            .expect("a field lies inside its record");
        self.offset += N;
        field
    }
    fn u128(&mut self) -> u128 {
        u128::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
}

/// Writes little-endian fields one after another into a record. It borrows the record rather
/// than owning it, so that each field is written in place, not the record moved per field.
struct Writer<'a> {
    bytes: &'a mut [u8; RECORD_SIZE],
    offset: usize,
}

impl Writer<'_> {
    fn put(&mut self, field: &[u8]) -> &mut Self {
        self.bytes[self.offset..self.offset + field.len()].copy_from_slice(field);
        self.offset += field.len();
        self
    }
    fn finish(&self) {
        assert_eq!(self.offset, RECORD_SIZE, "every byte of a record is written");
    }
}

impl Account {
    pub fn from_bytes(bytes: &[u8; RECORD_SIZE]) -> Self {
        let mut r = Reader { bytes, offset: 0 };
        let account = Self {
            id: r.u128(),
            debits_pending: r.u128(),
            debits_posted: r.u128(),
            credits_pending: r.u128(),
            credits_posted: r.u128(),
            user_data_128: r.u128(),
            user_data_64: r.u64(),
            user_data_32: r.u32(),
            reserved: r.u32(),
            ledger: r.u32(),
            code: r.u16(),
            flags: r.u16(),
            timestamp: r.u64(),
        };
        assert_eq!(r.offset, RECORD_SIZE, "every byte of a record is read");
        account
    }

    pub fn to_bytes(&self) -> [u8; RECORD_SIZE] {
        let mut bytes = [0; RECORD_SIZE];
        Writer { bytes: &mut bytes, offset: 0 }
            .put(&self.id.to_le_bytes())
            .put(&self.debits_pending.to_le_bytes())
            .put(&self.debits_posted.to_le_bytes())
            .put(&self.credits_pending.to_le_bytes())
            .put(&self.credits_posted.to_le_bytes())
            .put(&self.user_data_128.to_le_bytes())
            .put(&self.user_data_64.to_le_bytes())
            .put(&self.user_data_32.to_le_bytes())
            .put(&self.reserved.to_le_bytes())
            .put(&self.ledger.to_le_bytes())
            .put(&self.code.to_le_bytes())
            .put(&self.flags.to_le_bytes())
            .put(&self.timestamp.to_le_bytes())
            .finish();
        bytes
    }
}

impl Transfer {
    pub fn from_bytes(bytes: &[u8; RECORD_SIZE]) -> Self {
        let mut r = Reader { bytes, offset: 0 };
        let transfer = Self {
            id: r.u128(),
            debit_account_id: r.u128(),
            credit_account_id: r.u128(),
            amount: r.u128(),
            pending_id: r.u128(),
            user_data_128: r.u128(),
            user_data_64: r.u64(),
            user_data_32: r.u32(),
            timeout: r.u32(),
            ledger: r.u32(),
            code: r.u16(),
            flags: r.u16(),
            timestamp: r.u64(),
        };
        assert_eq!(r.offset, RECORD_SIZE, "every byte of a record is read");
        transfer
    }

    pub fn to_bytes(&self) -> [u8; RECORD_SIZE] {
        let mut bytes = [0; RECORD_SIZE];
        Writer { bytes: &mut bytes, offset: 0 }
            .put(&self.id.to_le_bytes())
            .put(&self.debit_account_id.to_le_bytes())
            .put(&self.credit_account_id.to_le_bytes())
            .put(&self.amount.to_le_bytes())
            .put(&self.pending_id.to_le_bytes())
            .put(&self.user_data_128.to_le_bytes())
            .put(&self.user_data_64.to_le_bytes())
            .put(&self.user_data_32.to_le_bytes())
            .put(&self.timeout.to_le_bytes())
            .put(&self.ledger.to_le_bytes())
            .put(&self.code.to_le_bytes())
            .put(&self.flags.to_le_bytes())
            .put(&self.timestamp.to_le_bytes())
            .finish();
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_transfer() -> Transfer {
        Transfer {
            id: 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10,
            debit_account_id: 2,
            credit_account_id: 3,
            amount: U128_MAX,
            pending_id: 5,
            user_data_128: 6,
            user_data_64: 7,
            user_data_32: 8,
            timeout: 9,
            ledger: 10,
            code: 11,
            flags: 12,
            timestamp: 13,
        }
    }

    #[test]
    fn transfer_bytes_round_trip_in_tigerbeetle_field_order() {
        let t = sample_transfer();
        let bytes = t.to_bytes();
        assert_eq!(bytes[0], 0x10, "the id is little-endian and comes first");
        assert_eq!(bytes[16], 2, "the debit account id follows at offset 16");
        assert_eq!(&bytes[48..64], &[0xff; 16], "the amount lies at offset 48");
        assert_eq!(bytes[108], 9, "the timeout lies at offset 108");
        assert_eq!(bytes[118], 12, "the flags lie at offset 118");
        assert_eq!(bytes[120], 13, "the timestamp is last, at offset 120");
        assert_eq!(Transfer::from_bytes(&bytes), t);
    }

    #[test]
    fn account_bytes_round_trip_in_tigerbeetle_field_order() {
        let a = Account {
            id: 1,
            credits_posted: 5,
            user_data_64: 7,
            reserved: 9,
            ledger: 10,
            code: 11,
            flags: account_flags::CLOSED,
            timestamp: u64::MAX,
            ..Account::default()
        };
        let bytes = a.to_bytes();
        assert_eq!(bytes[64], 5, "credits_posted lies at offset 64");
        assert_eq!(bytes[108], 9, "the reserved field lies at offset 108");
        assert_eq!(bytes[112], 10, "the ledger lies at offset 112");
        assert_eq!(&bytes[120..], &[0xff; 8]);
        assert_eq!(Account::from_bytes(&bytes), a);
    }

    #[test]
    fn known_flags_cover_every_named_bit() {
        assert_eq!(account_flags::KNOWN, 0b11_1111);
        assert_eq!(transfer_flags::KNOWN, 0b1_1111_1111);
    }

    #[test]
    fn record_count_of_an_empty_buffer_is_zero() {
        assert_eq!(record_count(0), Some(0));
    }

    #[test]
    fn record_count_counts_whole_records() {
        assert_eq!(record_count(RECORD_SIZE), Some(1));
        assert_eq!(record_count(8189 * RECORD_SIZE), Some(8189));
    }

    #[test]
    fn record_count_rejects_a_partial_record() {
        assert_eq!(record_count(1), None);
        assert_eq!(record_count(RECORD_SIZE - 1), None);
        assert_eq!(record_count(RECORD_SIZE + 1), None);
    }
}
