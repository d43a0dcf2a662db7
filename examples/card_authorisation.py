"""Card authorisations as two-phase transfers: hold, capture part, void, and expiry.

An authorisation reserves money with a PENDING transfer: the amount counts against the
cardholder's limit at once but is not yet posted. Later a second transfer resolves it:

- POST_PENDING_TRANSFER captures all of it or less; what is not captured is released;
- VOID_PENDING_TRANSFER releases all of it;
- if nothing resolves it within `timeout` seconds, the hold expires and is released, and a
  late capture is refused with PENDING_TRANSFER_EXPIRED.

The ledger reads time from a clock that this example moves by hand, so the expiry happens
without waiting. Run it with `python examples/card_authorisation.py`.
"""

from __future__ import annotations

from fastledger import (
    AMOUNT_MAX,
    Account,
    AccountFlags,
    CreateAccountStatus,
    CreateTransferStatus,
    Ledger,
    Transfer,
    TransferFlags,
)
from fastledger.money import currency

USD = currency("USD")
LEDGER_USD = 1
CODE_BANK = 100
CODE_CARDHOLDER = 200
CODE_MERCHANT = 300
CODE_FUNDING = 1
CODE_CARD_PAYMENT = 2

NS_PER_S = 1_000_000_000
HOLD_TIMEOUT_S = 7 * 24 * 3600
SHORT_HOLD_TIMEOUT_S = 60

BANK = 1
CARDHOLDER = 2
MERCHANT = 3


class ManualClock:
    """A clock in nanoseconds since the epoch that only moves when told to."""

    def __init__(self, start_ns: int) -> None:
        self.now_ns = start_ns

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, seconds: int) -> None:
        self.now_ns += seconds * NS_PER_S


def open_accounts(ledger: Ledger) -> None:
    results = ledger.create_accounts(
        [
            Account(id=BANK, ledger=LEDGER_USD, code=CODE_BANK),
            Account(
                id=CARDHOLDER,
                ledger=LEDGER_USD,
                code=CODE_CARDHOLDER,
                flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
            ),
            Account(id=MERCHANT, ledger=LEDGER_USD, code=CODE_MERCHANT),
        ]
    )
    assert all(r.status == CreateAccountStatus.CREATED for r in results), results
    funding = Transfer(
        id=1,
        debit_account_id=BANK,
        credit_account_id=CARDHOLDER,
        amount=USD.to_minor("200.00"),
        ledger=LEDGER_USD,
        code=CODE_FUNDING,
    )
    status = create(ledger, funding)
    assert status == CreateTransferStatus.CREATED, status


def create(ledger: Ledger, transfer: Transfer) -> CreateTransferStatus:
    (result,) = ledger.create_transfers([transfer])
    return result.status


def hold(transfer_id: int, amount: str, timeout_s: int) -> Transfer:
    """An authorisation: reserves `amount` USD on the card for the merchant."""
    return Transfer(
        id=transfer_id,
        debit_account_id=CARDHOLDER,
        credit_account_id=MERCHANT,
        amount=USD.to_minor(amount),
        timeout=timeout_s,
        ledger=LEDGER_USD,
        code=CODE_CARD_PAYMENT,
        flags=TransferFlags.PENDING,
    )


def resolve(transfer_id: int, pending_id: int, flags: TransferFlags, amount: int) -> Transfer:
    """A capture or a void of a hold: the accounts, ledger and code are the hold's (0 = same)."""
    return Transfer(id=transfer_id, pending_id=pending_id, amount=amount, flags=flags)


def show_card(ledger: Ledger, when: str) -> tuple[int, int]:
    """Prints and returns the card's held and spent amounts (minor units)."""
    (card,) = ledger.lookup_accounts([CARDHOLDER])
    available = card.credits_posted - card.debits_posted - card.debits_pending
    print(
        f"  {when}: held {USD.format(card.debits_pending)}, "
        f"spent {USD.format(card.debits_posted)}, available {USD.format(available)}"
    )
    return card.debits_pending, card.debits_posted


def capture_part_of_a_hold(ledger: Ledger) -> None:
    status = create(ledger, hold(10, "50.00", HOLD_TIMEOUT_S))
    assert status == CreateTransferStatus.CREATED, status
    print(f"Hotel authorises 50.00 USD: {status.name}")
    assert show_card(ledger, "after hold") == (USD.to_minor("50.00"), 0)

    # The hold already counts against the card's limit: 180.00 more would overdraw it.
    status = create(ledger, hold(19, "180.00", HOLD_TIMEOUT_S))
    assert status == CreateTransferStatus.EXCEEDS_CREDITS, status
    print(f"Shop asks for 180.00 USD while 50.00 USD is held: {status.name}")

    capture = resolve(11, 10, TransferFlags.POST_PENDING_TRANSFER, USD.to_minor("42.50"))
    status = create(ledger, capture)
    assert status == CreateTransferStatus.CREATED, status
    print(f"Hotel captures 42.50 USD of it, the rest is released: {status.name}")
    assert show_card(ledger, "after capture") == (0, USD.to_minor("42.50"))

    status = create(ledger, resolve(12, 10, TransferFlags.POST_PENDING_TRANSFER, AMOUNT_MAX))
    assert status == CreateTransferStatus.PENDING_TRANSFER_ALREADY_POSTED, status
    print(f"A second capture of the same hold: {status.name}")


def void_a_hold(ledger: Ledger) -> None:
    status = create(ledger, hold(20, "20.00", HOLD_TIMEOUT_S))
    assert status == CreateTransferStatus.CREATED, status
    print(f"Fuel pump authorises 20.00 USD: {status.name}")
    assert show_card(ledger, "after hold") == (USD.to_minor("20.00"), USD.to_minor("42.50"))

    status = create(ledger, resolve(21, 20, TransferFlags.VOID_PENDING_TRANSFER, 0))
    assert status == CreateTransferStatus.CREATED, status
    print(f"The pump is not used and the hold is voided: {status.name}")
    assert show_card(ledger, "after void") == (0, USD.to_minor("42.50"))


def let_a_hold_expire(ledger: Ledger, clock: ManualClock) -> None:
    status = create(ledger, hold(30, "30.00", SHORT_HOLD_TIMEOUT_S))
    assert status == CreateTransferStatus.CREATED, status
    print(f"Kiosk authorises 30.00 USD for {SHORT_HOLD_TIMEOUT_S} s: {status.name}")
    assert show_card(ledger, "after hold") == (USD.to_minor("30.00"), USD.to_minor("42.50"))

    clock.advance(SHORT_HOLD_TIMEOUT_S + 1)
    print(f"{SHORT_HOLD_TIMEOUT_S + 1} s pass without a capture; the hold expires")
    assert show_card(ledger, "after expiry") == (0, USD.to_minor("42.50"))

    status = create(ledger, resolve(31, 30, TransferFlags.POST_PENDING_TRANSFER, AMOUNT_MAX))
    assert status == CreateTransferStatus.PENDING_TRANSFER_EXPIRED, status
    print(f"The kiosk's late capture: {status.name}")
    assert show_card(ledger, "after late capture") == (0, USD.to_minor("42.50"))


def main() -> None:
    clock = ManualClock(start_ns=1_750_000_000 * NS_PER_S)
    ledger = Ledger(clock=clock)
    open_accounts(ledger)
    print("A card with 200.00 USD")
    show_card(ledger, "opened")

    capture_part_of_a_hold(ledger)
    void_a_hold(ledger)
    let_a_hold_expire(ledger, clock)

    (merchant,) = ledger.lookup_accounts([MERCHANT])
    assert merchant.credits_pending == 0
    assert merchant.credits_posted == USD.to_minor("42.50")
    trial = ledger.trial_balance(LEDGER_USD)
    assert trial.balanced and trial.debits_pending == 0
    print(f"Merchants received {USD.format(merchant.credits_posted)}; nothing is left on hold")


if __name__ == "__main__":
    main()
