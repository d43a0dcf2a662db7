//! The outcome of one create: TigerBeetle 0.17's statuses, written once, here.
//!
//! Each table below is the whole truth about its statuses: their order is the precedence order
//! (when several apply, the first listed is returned), their values are TigerBeetle's wire
//! codes, and each row says whether the status is transient: whether it depends on the ledger's
//! state at the time rather than on the event alone. A transfer id that failed with a transient
//! status can never be used again (`IdAlreadyFailed`), so that a retry with the same id cannot
//! succeed later by accident.
//!
//! `python/fastledger/_statuses.py` is generated from these tables by `tools/gen_statuses.py`,
//! and `tests/test_status_table.py` fails, with the difference, when the two disagree. A row
//! without its classification does not compile: adding a status is a row here, its guard in
//! each engine, and its tests.

/// Whether a failure depends on the ledger's state at the time (see the module's comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// The event alone decides it: the same event fails the same way in any state.
    Permanent,
    /// The state at the time decides it: the event's id is spent, never to be used again.
    Transient,
}

/// Declares a status enum from its table: one row `Name = code, Persistence;` per status, in
/// precedence order. It derives everything else from the rows, so that nothing about a status
/// is written twice: `ALL` in precedence order, `name` and the exhaustive `persistence`.
macro_rules! status_table {
    (
        $(#[$meta:meta])*
        pub enum $enum:ident {
            $($status:ident = $code:literal, $persistence:ident;)*
        }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $enum {
            $($status = $code,)*
        }

        impl $enum {
            /// Every status, in precedence order.
            pub const ALL: &'static [Self] = &[$(Self::$status,)*];

            /// The status's name as the table spells it.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$status => stringify!($status),)*
                }
            }

            /// Whether the status depends on the ledger's state at the time.
            pub const fn persistence(self) -> Persistence {
                match self {
                    $(Self::$status => Persistence::$persistence,)*
                }
            }
        }
    };
}

status_table! {
    /// The outcome of one account create, in precedence order.
    pub enum CreateAccountStatus {
        Created = 0xFFFF_FFFF, Permanent;
        LinkedEventFailed = 1, Permanent;
        LinkedEventChainOpen = 2, Permanent;
        ImportedEventExpected = 22, Permanent;
        ImportedEventNotExpected = 23, Permanent;
        TimestampMustBeZero = 3, Permanent;
        ImportedEventTimestampOutOfRange = 24, Permanent;
        ImportedEventTimestampMustNotAdvance = 25, Permanent;
        ReservedField = 4, Permanent;
        ReservedFlag = 5, Permanent;
        IdMustNotBeZero = 6, Permanent;
        IdMustNotBeIntMax = 7, Permanent;
        ExistsWithDifferentFlags = 15, Permanent;
        ExistsWithDifferentUserData128 = 16, Permanent;
        ExistsWithDifferentUserData64 = 17, Permanent;
        ExistsWithDifferentUserData32 = 18, Permanent;
        ExistsWithDifferentLedger = 19, Permanent;
        ExistsWithDifferentCode = 20, Permanent;
        Exists = 21, Permanent;
        FlagsAreMutuallyExclusive = 8, Permanent;
        DebitsPendingMustBeZero = 9, Permanent;
        DebitsPostedMustBeZero = 10, Permanent;
        CreditsPendingMustBeZero = 11, Permanent;
        CreditsPostedMustBeZero = 12, Permanent;
        LedgerMustNotBeZero = 13, Permanent;
        CodeMustNotBeZero = 14, Permanent;
        ImportedEventTimestampMustNotRegress = 26, Permanent;
    }
}

status_table! {
    /// The outcome of one transfer create, in precedence order.
    pub enum CreateTransferStatus {
        Created = 0xFFFF_FFFF, Permanent;
        LinkedEventFailed = 1, Permanent;
        LinkedEventChainOpen = 2, Permanent;
        ImportedEventExpected = 56, Permanent;
        ImportedEventNotExpected = 57, Permanent;
        TimestampMustBeZero = 3, Permanent;
        ImportedEventTimestampOutOfRange = 58, Permanent;
        ImportedEventTimestampMustNotAdvance = 59, Permanent;
        ReservedFlag = 4, Permanent;
        IdMustNotBeZero = 5, Permanent;
        IdMustNotBeIntMax = 6, Permanent;
        ExistsWithDifferentFlags = 36, Permanent;
        ExistsWithDifferentPendingId = 40, Permanent;
        ExistsWithDifferentTimeout = 44, Permanent;
        ExistsWithDifferentDebitAccountId = 37, Permanent;
        ExistsWithDifferentCreditAccountId = 38, Permanent;
        ExistsWithDifferentAmount = 39, Permanent;
        ExistsWithDifferentUserData128 = 41, Permanent;
        ExistsWithDifferentUserData64 = 42, Permanent;
        ExistsWithDifferentUserData32 = 43, Permanent;
        ExistsWithDifferentLedger = 67, Permanent;
        ExistsWithDifferentCode = 45, Permanent;
        Exists = 46, Permanent;
        IdAlreadyFailed = 68, Permanent;
        FlagsAreMutuallyExclusive = 7, Permanent;
        DebitAccountIdMustNotBeZero = 8, Permanent;
        DebitAccountIdMustNotBeIntMax = 9, Permanent;
        CreditAccountIdMustNotBeZero = 10, Permanent;
        CreditAccountIdMustNotBeIntMax = 11, Permanent;
        AccountsMustBeDifferent = 12, Permanent;
        PendingIdMustBeZero = 13, Permanent;
        PendingIdMustNotBeZero = 14, Permanent;
        PendingIdMustNotBeIntMax = 15, Permanent;
        PendingIdMustBeDifferent = 16, Permanent;
        TimeoutReservedForPendingTransfer = 17, Permanent;
        ClosingTransferMustBePending = 64, Permanent;
        LedgerMustNotBeZero = 19, Permanent;
        CodeMustNotBeZero = 20, Permanent;
        DebitAccountNotFound = 21, Transient;
        CreditAccountNotFound = 22, Transient;
        AccountsMustHaveTheSameLedger = 23, Permanent;
        TransferMustHaveTheSameLedgerAsAccounts = 24, Permanent;
        PendingTransferNotFound = 25, Transient;
        PendingTransferNotPending = 26, Permanent;
        PendingTransferHasDifferentDebitAccountId = 27, Permanent;
        PendingTransferHasDifferentCreditAccountId = 28, Permanent;
        PendingTransferHasDifferentLedger = 29, Permanent;
        PendingTransferHasDifferentCode = 30, Permanent;
        ExceedsPendingTransferAmount = 31, Permanent;
        PendingTransferHasDifferentAmount = 32, Permanent;
        PendingTransferAlreadyPosted = 33, Permanent;
        PendingTransferAlreadyVoided = 34, Permanent;
        PendingTransferExpired = 35, Permanent;
        ImportedEventTimestampMustNotRegress = 60, Permanent;
        ImportedEventTimestampMustPostdateDebitAccount = 61, Permanent;
        ImportedEventTimestampMustPostdateCreditAccount = 62, Permanent;
        ImportedEventTimeoutMustBeZero = 63, Permanent;
        DebitAccountAlreadyClosed = 65, Transient;
        CreditAccountAlreadyClosed = 66, Transient;
        OverflowsDebitsPending = 47, Permanent;
        OverflowsCreditsPending = 48, Permanent;
        OverflowsDebitsPosted = 49, Permanent;
        OverflowsCreditsPosted = 50, Permanent;
        OverflowsDebits = 51, Permanent;
        OverflowsCredits = 52, Permanent;
        OverflowsTimeout = 53, Permanent;
        ExceedsCredits = 54, Transient;
        ExceedsDebits = 55, Transient;
    }
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

    /// Whether a failure with this status spends the event's id (see `Persistence`).
    fn is_transient(self) -> bool;
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

            fn is_transient(self) -> bool {
                self.persistence() == Persistence::Transient
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
    fn wire_codes_are_unique() {
        let mut accounts: Vec<u32> = CreateAccountStatus::ALL.iter().map(|s| s.code()).collect();
        let mut transfers: Vec<u32> = CreateTransferStatus::ALL.iter().map(|s| s.code()).collect();
        accounts.sort_unstable();
        accounts.dedup();
        transfers.sort_unstable();
        transfers.dedup();
        assert_eq!(accounts.len(), CreateAccountStatus::ALL.len());
        assert_eq!(transfers.len(), CreateTransferStatus::ALL.len());
    }

    #[test]
    fn only_transfers_fail_transiently_and_created_never_does() {
        assert!(CreateAccountStatus::ALL.iter().all(|s| !s.is_transient()));
        assert!(!CreateTransferStatus::Created.is_transient());
        assert!(CreateTransferStatus::ExceedsCredits.is_transient());
        assert!(!CreateTransferStatus::LedgerMustNotBeZero.is_transient());
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
