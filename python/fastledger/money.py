"""Money helpers: exact conversion between `Decimal` amounts and integer minor units.

A ledger amount is an unsigned 128-bit count of an asset's minor units. An `Asset` names the
asset and its scale, the number of decimal places of one minor unit: `currency("USD")` has scale
2, so 12.34 USD is 1234 minor units; `currency("JPY")` has scale 0; `asset("ETH", 18)` defines an
asset that ISO 4217 does not list.

Conversions are exact or refused, never silently lossy:

- A `Decimal`, an `int` (whole units) or a `str` (parsed exactly, by `Decimal`'s own grammar) is
  accepted. A `float` is refused: most decimal amounts have no exact float (0.1 is not 1/10).
  NaN and infinities are refused.
- An amount finer than the asset's minor unit is refused unless the caller names a `decimal`
  rounding mode (`rounding=decimal.ROUND_HALF_EVEN`); it is then rounded as `Decimal.quantize`
  rounds.
- A negative amount is refused: ledger amounts are unsigned, and money moving the other way is a
  transfer with the debit and credit accounts swapped.
- Minor units range from 0 to 2**128 - 1 (`AMOUNT_MAX`).

Every refusal, including a value of the wrong type and an unknown currency code, raises
`InvalidAmountError` (a `ValueError`) with a message that says what to do instead. ISO 4217
codes whose minor units are "N.A." (XAU, XDR, XXX, ...) are not currencies with a scale here:
`currency("XAU")` is refused; define such an asset with `asset("XAU", scale)`.

The arithmetic runs in a private `decimal` context, so the caller's context never changes a
result.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from fastledger._iso4217 import CURRENCIES, NO_MINOR_UNITS
from fastledger.errors import InvalidAmountError

__all__ = ["Asset", "asset", "currency", "to_decimal", "to_minor"]

_AMOUNT_MAX: Final = 2**128 - 1
_AMOUNT_MAX_DIGITS: Final = len(str(_AMOUNT_MAX))

# The largest scale at which AMOUNT_MAX minor units still hold one whole unit:
# 10**38 < 2**128 - 1 < 10**39.
_SCALE_MAX: Final = 38
_CODE_LENGTH_MAX: Final = 32

_ROUNDING_MODES: Final = frozenset(
    {
        decimal.ROUND_05UP,
        decimal.ROUND_CEILING,
        decimal.ROUND_DOWN,
        decimal.ROUND_FLOOR,
        decimal.ROUND_HALF_DOWN,
        decimal.ROUND_HALF_EVEN,
        decimal.ROUND_HALF_UP,
        decimal.ROUND_UP,
    }
)

# Operands are used exactly as given, and every result computed here (a quantized or a shifted
# amount) has at most AMOUNT_MAX's 39 digits plus one rounding carry, so 80 digits keep each result
# exact. Malformed strings and exponent overflow raise instead of yielding NaN.
_CONTEXT: Final = decimal.Context(
    prec=80,
    rounding=decimal.ROUND_HALF_EVEN,
    Emin=decimal.MIN_EMIN,
    Emax=decimal.MAX_EMAX,
    capitals=1,
    clamp=0,
    flags=[],
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)


@dataclass(frozen=True, slots=True)
class Asset:
    """An asset counted in integer minor units: its code and its scale.

    `scale` is the number of decimal places of one minor unit (0..38): 2 for USD (cents), 0 for
    JPY, 18 for an asset whose smallest unit is 10**-18 of a whole one.
    """

    code: str
    scale: int

    def __post_init__(self) -> None:
        _check_code(self.code)
        _check_scale(self.code, self.scale)

    def to_minor(self, amount: Decimal | int | str, *, rounding: str | None = None) -> int:
        """The number of minor units in `amount` (whole units of this asset).

        An amount finer than one minor unit is refused, unless `rounding` names a `decimal`
        rounding mode (`decimal.ROUND_HALF_EVEN`, ...) to round it with.
        """
        value = _parse_amount(amount)
        if value < 0:
            raise InvalidAmountError(
                f"amount {value} {self.code} is negative: ledger amounts are unsigned; "
                "record it in the opposite direction (swap the debit and credit accounts)"
            )
        # 10**39 minor units or more cannot round below AMOUNT_MAX; refusing them before any
        # arithmetic also keeps an exponent such as 1E+999999999 from being expanded.
        if not value.is_zero() and value.adjusted() + self.scale >= _AMOUNT_MAX_DIGITS:
            raise InvalidAmountError(self._too_large_message(value))
        minor_units = _scaled_to_minor(value, self.scale, rounding, self.code)
        if minor_units > _AMOUNT_MAX:
            raise InvalidAmountError(self._too_large_message(value))
        return minor_units

    def to_decimal(self, minor: int) -> Decimal:
        """The amount, in whole units, of `minor` minor units: exact, with `scale` places."""
        _check_minor(minor)
        return Decimal(minor).scaleb(-self.scale, context=_CONTEXT)

    def format(self, minor: int) -> str:
        """`minor` minor units as text for people, such as "12.34 USD"."""
        return f"{self.to_decimal(minor):f} {self.code}"

    def _too_large_message(self, value: Decimal) -> str:
        return (
            f"amount {value} {self.code} is more than the largest ledger amount, "
            f"2**128 - 1 minor units ({self.format(_AMOUNT_MAX)}): split it into several "
            "transfers"
        )


def currency(code: str) -> Asset:
    """The ISO 4217 currency with alphabetic code `code` (any case), such as "USD" or "jpy".

    An unknown code, or a code without minor units in ISO 4217 (XAU, XDR, XXX, ...), raises
    `InvalidAmountError`: define such an asset with `asset(code, scale)`.
    """
    if not isinstance(code, str):
        raise InvalidAmountError(
            f"currency code {code!r} has type {type(code).__name__}: pass an ISO 4217 code as a str"
        )
    found = _CURRENCY_ASSETS.get(code.upper())
    if found is not None:
        return found
    if code.upper() in NO_MINOR_UNITS:
        raise InvalidAmountError(
            f"ISO 4217 defines no minor units for {code.upper()}: define it with the scale the "
            f"ledger keeps, asset({code.upper()!r}, scale)"
        )
    raise InvalidAmountError(
        f"{code!r} is not an ISO 4217 currency code: for another asset, name its scale with "
        f"asset({code!r}, scale)"
    )


def asset(code: str, scale: int) -> Asset:
    """A user-defined asset, such as `asset("ETH", 18)`; ISO 4217 is not consulted."""
    return Asset(code, scale)


def to_minor(
    amount: Decimal | int | str, currency_or_asset: Asset | str, *, rounding: str | None = None
) -> int:
    """`Asset.to_minor` of `currency_or_asset`, an `Asset` or an ISO 4217 code."""
    return _resolve(currency_or_asset).to_minor(amount, rounding=rounding)


def to_decimal(minor: int, currency_or_asset: Asset | str) -> Decimal:
    """`Asset.to_decimal` of `currency_or_asset`, an `Asset` or an ISO 4217 code."""
    return _resolve(currency_or_asset).to_decimal(minor)


def _resolve(currency_or_asset: Asset | str) -> Asset:
    if isinstance(currency_or_asset, Asset):
        return currency_or_asset
    return currency(currency_or_asset)


def _parse_amount(amount: object) -> Decimal:
    """`amount` as a finite Decimal, or InvalidAmountError saying which input is accepted."""
    if isinstance(amount, Decimal):
        value = amount
    elif isinstance(amount, float):
        raise InvalidAmountError(
            f"amount {amount!r} is a float, which cannot hold most decimal amounts exactly: "
            f"pass a Decimal or a str instead, such as Decimal({str(amount)!r})"
        )
    elif isinstance(amount, int) and not isinstance(amount, bool):
        value = Decimal(amount)
    elif isinstance(amount, str):
        value = _parse_text(amount)
    else:
        raise InvalidAmountError(
            f"amount {amount!r} has type {type(amount).__name__}: pass a Decimal, an int or a str"
        )
    if not value.is_finite():
        raise InvalidAmountError(f"amount {amount!r} is not a finite number: pass a real amount")
    return value


def _parse_text(text: str) -> Decimal:
    try:
        return Decimal(text, context=_CONTEXT)
    except decimal.InvalidOperation:
        raise InvalidAmountError(
            f"amount {text!r} is not a decimal number (or its exponent is out of range): "
            "write it like '12.34'"
        ) from None


def _scaled_to_minor(value: Decimal, scale: int, rounding: str | None, code: str) -> int:
    """`value` in minor units of `scale`, rounded with `rounding`, or refused if inexact."""
    if rounding is not None and rounding not in _ROUNDING_MODES:
        raise InvalidAmountError(
            f"rounding {rounding!r} is not a decimal rounding mode: pass one of "
            f"{', '.join(sorted(_ROUNDING_MODES))} (the decimal module's constants)"
        )
    quantum = Decimal((0, (1,), -scale))
    rounded = value.quantize(quantum, rounding=rounding, context=_CONTEXT)
    if rounding is None and rounded != value:
        raise InvalidAmountError(
            f"amount {value} {code} is finer than one minor unit (scale {scale}: "
            f"{quantum} {code}): round it first, or pass a rounding mode such as "
            "rounding=decimal.ROUND_HALF_EVEN"
        )
    # `rounded` has exponent -scale and at most 40 digits, so this shift is exact.
    return int(rounded.scaleb(scale, context=_CONTEXT))


def _check_code(code: object) -> None:
    if not isinstance(code, str):
        raise InvalidAmountError(f"asset code {code!r} has type {type(code).__name__}: pass a str")
    if not 0 < len(code) <= _CODE_LENGTH_MAX or not code.isprintable() or " " in code:
        raise InvalidAmountError(
            f"asset code {code!r} must be 1 to {_CODE_LENGTH_MAX} printable characters "
            "without spaces, such as 'USD' or 'ETH'"
        )


def _check_scale(code: str, scale: object) -> None:
    if not isinstance(scale, int) or isinstance(scale, bool):
        raise InvalidAmountError(
            f"scale of {code} is {scale!r}: pass the number of decimal places as an int"
        )
    if not 0 <= scale <= _SCALE_MAX:
        raise InvalidAmountError(
            f"scale of {code} is {scale}: a scale is 0..{_SCALE_MAX} decimal places (above "
            f"{_SCALE_MAX}, 2**128 - 1 minor units would not hold one whole unit)"
        )


def _check_minor(minor: object) -> None:
    if not isinstance(minor, int) or isinstance(minor, bool):
        raise InvalidAmountError(
            f"minor units {minor!r} have type {type(minor).__name__}: pass an int count of minor "
            "units (convert a Decimal amount with to_minor)"
        )
    if not 0 <= minor <= _AMOUNT_MAX:
        raise InvalidAmountError(
            f"minor units {minor} are outside 0..2**128 - 1: a ledger amount is an unsigned "
            "128-bit integer"
        )


# One Asset per ISO 4217 currency, built once; it comes last because Asset validates itself with
# the helpers above.
_CURRENCY_ASSETS: Final = {
    code: Asset(code, minor_units) for code, (_numeric, minor_units) in CURRENCIES.items()
}
