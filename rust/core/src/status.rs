//! The outcome of one create, as `python/fastledger/_types.py` lists it: TigerBeetle 0.17's
//! statuses in its precedence order (when several apply, the first listed is returned), with
//! TigerBeetle's wire codes as discriminants.

/// The outcome of one account create, in precedence order.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CreateAccountStatus {
    Created = 0xFFFF_FFFF,
    LinkedEventFailed = 1,
    LinkedEventChainOpen = 2,
    ImportedEventExpected = 22,
    ImportedEventNotExpected = 23,
    TimestampMustBeZero = 3,
    ImportedEventTimestampOutOfRange = 24,
    ImportedEventTimestampMustNotAdvance = 25,
    ReservedField = 4,
    ReservedFlag = 5,
    IdMustNotBeZero = 6,
    IdMustNotBeIntMax = 7,
    ExistsWithDifferentFlags = 15,
    ExistsWithDifferentUserData128 = 16,
    ExistsWithDifferentUserData64 = 17,
    ExistsWithDifferentUserData32 = 18,
    ExistsWithDifferentLedger = 19,
    ExistsWithDifferentCode = 20,
    Exists = 21,
    FlagsAreMutuallyExclusive = 8,
    DebitsPendingMustBeZero = 9,
    DebitsPostedMustBeZero = 10,
    CreditsPendingMustBeZero = 11,
    CreditsPostedMustBeZero = 12,
    LedgerMustNotBeZero = 13,
    CodeMustNotBeZero = 14,
    ImportedEventTimestampMustNotRegress = 26,
}

/// The outcome of one transfer create, in precedence order.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CreateTransferStatus {
    Created = 0xFFFF_FFFF,
    LinkedEventFailed = 1,
    LinkedEventChainOpen = 2,
    ImportedEventExpected = 56,
    ImportedEventNotExpected = 57,
    TimestampMustBeZero = 3,
    ImportedEventTimestampOutOfRange = 58,
    ImportedEventTimestampMustNotAdvance = 59,
    ReservedFlag = 4,
    IdMustNotBeZero = 5,
    IdMustNotBeIntMax = 6,
    ExistsWithDifferentFlags = 36,
    ExistsWithDifferentPendingId = 40,
    ExistsWithDifferentTimeout = 44,
    ExistsWithDifferentDebitAccountId = 37,
    ExistsWithDifferentCreditAccountId = 38,
    ExistsWithDifferentAmount = 39,
    ExistsWithDifferentUserData128 = 41,
    ExistsWithDifferentUserData64 = 42,
    ExistsWithDifferentUserData32 = 43,
    ExistsWithDifferentLedger = 67,
    ExistsWithDifferentCode = 45,
    Exists = 46,
    IdAlreadyFailed = 68,
    FlagsAreMutuallyExclusive = 7,
    DebitAccountIdMustNotBeZero = 8,
    DebitAccountIdMustNotBeIntMax = 9,
    CreditAccountIdMustNotBeZero = 10,
    CreditAccountIdMustNotBeIntMax = 11,
    AccountsMustBeDifferent = 12,
    PendingIdMustBeZero = 13,
    PendingIdMustNotBeZero = 14,
    PendingIdMustNotBeIntMax = 15,
    PendingIdMustBeDifferent = 16,
    TimeoutReservedForPendingTransfer = 17,
    ClosingTransferMustBePending = 64,
    LedgerMustNotBeZero = 19,
    CodeMustNotBeZero = 20,
    DebitAccountNotFound = 21,
    CreditAccountNotFound = 22,
    AccountsMustHaveTheSameLedger = 23,
    TransferMustHaveTheSameLedgerAsAccounts = 24,
    PendingTransferNotFound = 25,
    PendingTransferNotPending = 26,
    PendingTransferHasDifferentDebitAccountId = 27,
    PendingTransferHasDifferentCreditAccountId = 28,
    PendingTransferHasDifferentLedger = 29,
    PendingTransferHasDifferentCode = 30,
    ExceedsPendingTransferAmount = 31,
    PendingTransferHasDifferentAmount = 32,
    PendingTransferAlreadyPosted = 33,
    PendingTransferAlreadyVoided = 34,
    PendingTransferExpired = 35,
    ImportedEventTimestampMustNotRegress = 60,
    ImportedEventTimestampMustPostdateDebitAccount = 61,
    ImportedEventTimestampMustPostdateCreditAccount = 62,
    ImportedEventTimeoutMustBeZero = 63,
    DebitAccountAlreadyClosed = 65,
    CreditAccountAlreadyClosed = 66,
    OverflowsDebitsPending = 47,
    OverflowsCreditsPending = 48,
    OverflowsDebitsPosted = 49,
    OverflowsCreditsPosted = 50,
    OverflowsDebits = 51,
    OverflowsCredits = 52,
    OverflowsTimeout = 53,
    ExceedsCredits = 54,
    ExceedsDebits = 55,
}

/// The statuses that the batch loop decides for either kind of event, before the create itself
/// runs: linked chains and imported batches work the same for accounts and transfers.
pub trait BatchStatus: Copy + Eq + core::fmt::Debug {
    const CREATED: Self;
    const EXISTS: Self;
    const LINKED_EVENT_FAILED: Self;
    const LINKED_EVENT_CHAIN_OPEN: Self;
    const IMPORTED_EVENT_EXPECTED: Self;
    const IMPORTED_EVENT_NOT_EXPECTED: Self;
    const TIMESTAMP_MUST_BE_ZERO: Self;
    const IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE: Self;
    const IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE: Self;

    /// The wire code.
    fn code(self) -> u32;
}

/// Both status enums answer the batch loop's statuses with their own variants of one name.
macro_rules! batch_status {
    ($status:ty) => {
        impl BatchStatus for $status {
            const CREATED: Self = Self::Created;
            const EXISTS: Self = Self::Exists;
            const LINKED_EVENT_FAILED: Self = Self::LinkedEventFailed;
            const LINKED_EVENT_CHAIN_OPEN: Self = Self::LinkedEventChainOpen;
            const IMPORTED_EVENT_EXPECTED: Self = Self::ImportedEventExpected;
            const IMPORTED_EVENT_NOT_EXPECTED: Self = Self::ImportedEventNotExpected;
            const TIMESTAMP_MUST_BE_ZERO: Self = Self::TimestampMustBeZero;
            const IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE: Self =
                Self::ImportedEventTimestampOutOfRange;
            const IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE: Self =
                Self::ImportedEventTimestampMustNotAdvance;

            fn code(self) -> u32 {
                self as u32
            }
        }
    };
}

batch_status!(CreateAccountStatus);
batch_status!(CreateTransferStatus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_is_the_all_ones_wire_code() {
        assert_eq!(CreateAccountStatus::Created.code(), 0xFFFF_FFFF);
        assert_eq!(CreateTransferStatus::Created.code(), 0xFFFF_FFFF);
    }

    #[test]
    fn wire_codes_are_tigerbeetles() {
        assert_eq!(CreateAccountStatus::Exists.code(), 21);
        assert_eq!(CreateAccountStatus::ImportedEventTimestampMustNotRegress.code(), 26);
        assert_eq!(CreateTransferStatus::IdAlreadyFailed.code(), 68);
        assert_eq!(CreateTransferStatus::ExceedsDebits.code(), 55);
        assert_eq!(CreateTransferStatus::ExistsWithDifferentLedger.code(), 67);
    }
}
