"""Money helpers: exact conversion between Decimal amounts and minor units, ISO 4217 scales.

The properties are stated in the test names: exact amounts round-trip, sub-unit precision is
refused unless a rounding mode is named, rounding agrees with `Decimal.quantize`, and the limits
(0 to 2**128 - 1 minor units, no floats, no NaN) hold at every scale.
"""

from __future__ import annotations

import dataclasses
import decimal
import importlib.util
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastledger._iso4217 import CURRENCIES, NO_MINOR_UNITS, PUBLISHED
from fastledger.errors import FastledgerError, InvalidAmountError
from fastledger.money import Asset, asset, currency, to_decimal, to_minor

AMOUNT_MAX = 2**128 - 1

ROUNDING_MODES = [
    decimal.ROUND_05UP,
    decimal.ROUND_CEILING,
    decimal.ROUND_DOWN,
    decimal.ROUND_FLOOR,
    decimal.ROUND_HALF_DOWN,
    decimal.ROUND_HALF_EVEN,
    decimal.ROUND_HALF_UP,
    decimal.ROUND_UP,
]

# The oracle: a context wide enough that quantizing any generated amount is exact.
ORACLE = decimal.Context(
    prec=200,
    Emin=decimal.MIN_EMIN,
    Emax=decimal.MAX_EMAX,
    traps=[decimal.InvalidOperation, decimal.Overflow],
)

scales = st.integers(min_value=0, max_value=18)
minor_units = st.integers(min_value=0, max_value=AMOUNT_MAX)
rounding_modes = st.sampled_from(ROUNDING_MODES)


def exact_amount(minor: int, scale: int) -> Decimal:
    """`minor` minor units at `scale` as a Decimal, built without any context."""
    return Decimal((0, tuple(int(digit) for digit in str(minor)), -scale))


def make_token(scale: int) -> Asset:
    """A user-defined asset with `scale` decimal places."""
    return asset("TOKEN", scale)


# Properties.


@given(minor=minor_units, scale=scales)
def test_to_decimal_of_to_minor_is_the_amount_for_exact_amounts(minor: int, scale: int) -> None:
    token = make_token(scale)
    amount = exact_amount(minor, scale)
    assert token.to_minor(amount) == minor
    assert token.to_decimal(minor) == amount
    assert token.to_decimal(minor).as_tuple().exponent == -scale
    assert token.to_minor(token.to_decimal(minor)) == minor


@given(minor=minor_units, scale=scales, trailing_zeros=st.integers(min_value=0, max_value=5))
def test_to_minor_parses_strings_exactly_whatever_their_notation(
    minor: int, scale: int, trailing_zeros: int
) -> None:
    token = make_token(scale)
    amount = exact_amount(minor, scale)
    fixed = f"{amount:f}"
    if trailing_zeros:
        fixed += ("" if "." in fixed else ".") + "0" * trailing_zeros
    assert token.to_minor(fixed) == minor
    assert token.to_minor(str(amount)) == minor
    assert token.to_minor(f"{amount:e}") == minor


@given(
    minor=minor_units,
    scale=scales,
    extra_places=st.integers(min_value=1, max_value=20),
    last_digit=st.integers(min_value=1, max_value=9),
)
def test_sub_unit_precision_is_refused_without_a_rounding_mode(
    minor: int, scale: int, extra_places: int, last_digit: int
) -> None:
    token = make_token(scale)
    finer = exact_amount(minor * 10**extra_places + last_digit, scale + extra_places)
    with pytest.raises(InvalidAmountError, match=rf"scale {scale}\b.*rounding="):
        token.to_minor(finer)
    with pytest.raises(InvalidAmountError, match="rounding="):
        token.to_minor(str(finer))


@given(
    coefficient=st.integers(min_value=0, max_value=10**45),
    exponent=st.integers(min_value=-45, max_value=5),
    scale=scales,
    rounding=rounding_modes,
)
def test_rounding_agrees_with_decimal_quantize(
    coefficient: int, exponent: int, scale: int, rounding: str
) -> None:
    amount = Decimal(coefficient).scaleb(exponent, context=ORACLE)
    quantized = amount.quantize(Decimal(1).scaleb(-scale), rounding=rounding, context=ORACLE)
    expected = int(quantized.scaleb(scale, context=ORACLE))
    token = make_token(scale)
    if expected > AMOUNT_MAX:
        with pytest.raises(InvalidAmountError, match="largest ledger amount"):
            token.to_minor(amount, rounding=rounding)
    else:
        assert token.to_minor(amount, rounding=rounding) == expected


@given(minor=minor_units, scale=scales, rounding=rounding_modes)
def test_rounding_leaves_exact_amounts_unchanged(minor: int, scale: int, rounding: str) -> None:
    assert make_token(scale).to_minor(exact_amount(minor, scale), rounding=rounding) == minor


@given(scale=st.integers(min_value=0, max_value=38))
def test_amount_max_is_accepted_and_one_more_is_refused_at_every_scale(scale: int) -> None:
    token = make_token(scale)
    assert token.to_minor(exact_amount(AMOUNT_MAX, scale)) == AMOUNT_MAX
    assert token.to_decimal(AMOUNT_MAX) == exact_amount(AMOUNT_MAX, scale)
    with pytest.raises(InvalidAmountError, match="largest ledger amount"):
        token.to_minor(exact_amount(AMOUNT_MAX + 1, scale))
    with pytest.raises(InvalidAmountError, match=r"outside 0\.\.2\*\*128 - 1"):
        token.to_decimal(AMOUNT_MAX + 1)


@given(scale=scales)
def test_rounding_just_above_amount_max_is_refused_only_when_it_rounds_up(scale: int) -> None:
    token = make_token(scale)
    above = exact_amount(AMOUNT_MAX * 10 + 1, scale + 1)
    assert token.to_minor(above, rounding=decimal.ROUND_DOWN) == AMOUNT_MAX
    with pytest.raises(InvalidAmountError, match="largest ledger amount"):
        token.to_minor(above, rounding=decimal.ROUND_UP)


@given(
    magnitude=st.decimals(min_value=Decimal("1E-30"), allow_nan=False, allow_infinity=False),
    scale=scales,
    rounding=st.none() | rounding_modes,
)
def test_negative_amounts_are_refused(magnitude: Decimal, scale: int, rounding: str | None) -> None:
    with pytest.raises(InvalidAmountError, match=r"negative.*opposite direction"):
        make_token(scale).to_minor(-magnitude, rounding=rounding)


@given(minor=st.integers(max_value=-1), scale=scales)
def test_negative_minor_units_are_refused(minor: int, scale: int) -> None:
    with pytest.raises(InvalidAmountError, match="outside"):
        make_token(scale).to_decimal(minor)


@given(amount=st.floats(), scale=scales, rounding=st.none() | rounding_modes)
def test_floats_are_refused(amount: float, scale: int, rounding: str | None) -> None:
    with pytest.raises(InvalidAmountError, match="float"):
        make_token(scale).to_minor(amount, rounding=rounding)  # type: ignore[arg-type]


@given(minor=minor_units, scale=scales, rounding=rounding_modes)
def test_results_do_not_depend_on_the_global_decimal_context(
    minor: int, scale: int, rounding: str
) -> None:
    token = make_token(scale)
    amount = exact_amount(minor, scale)
    with decimal.localcontext() as hostile:
        hostile.prec = 3
        hostile.rounding = decimal.ROUND_UP
        hostile.Emax = 5
        hostile.Emin = -5
        hostile.traps[decimal.Inexact] = True
        hostile.traps[decimal.Rounded] = True
        assert token.to_minor(amount) == minor
        assert token.to_minor(str(amount), rounding=rounding) == minor
        assert token.to_decimal(minor) == amount
        with pytest.raises(InvalidAmountError, match="not a decimal number"):
            token.to_minor("12,34")


# NaN, infinities, malformed input and wrong types.


@pytest.mark.parametrize(
    "amount",
    [
        *("NaN", "nan", "sNaN", "-NaN", "Infinity", "inf", "-Infinity"),
        *(Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity")),
    ],
)
def test_nan_and_infinity_are_refused(amount: str | Decimal) -> None:
    with pytest.raises(InvalidAmountError, match="not a finite number"):
        to_minor(amount, "USD")


@pytest.mark.parametrize(
    "text",
    ["", " ", "abc", "12,34", "1.2.3", "1e", "0x10", "$12", "12 USD", "1e99999999999999999999"],
)
def test_malformed_strings_are_refused(text: str) -> None:
    with pytest.raises(InvalidAmountError, match="not a decimal number"):
        to_minor(text, "USD")


@pytest.mark.parametrize("amount", [True, False, None, [1], b"12", object()])
def test_amounts_of_other_types_are_refused(amount: object) -> None:
    with pytest.raises(InvalidAmountError, match="has type"):
        to_minor(amount, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize("minor", [True, 1.0, Decimal(1), "1", None])
def test_minor_units_must_be_an_int(minor: object) -> None:
    with pytest.raises(InvalidAmountError, match="pass an int count of minor units"):
        to_decimal(minor, "USD")  # type: ignore[arg-type]


def test_extreme_exponents_are_refused_or_rounded_without_expanding_them() -> None:
    with pytest.raises(InvalidAmountError, match="largest ledger amount"):
        to_minor("1e999999999999999", "USD", rounding=decimal.ROUND_DOWN)
    with pytest.raises(InvalidAmountError, match="finer than one minor unit"):
        to_minor("1e-999999999999999", "USD")
    assert to_minor("1e-999999999999999", "USD", rounding=decimal.ROUND_UP) == 1
    assert to_minor("1e-999999999999999", "USD", rounding=decimal.ROUND_HALF_EVEN) == 0


def test_an_unknown_rounding_mode_is_refused() -> None:
    with pytest.raises(InvalidAmountError, match="ROUND_HALF_EVEN"):
        to_minor("1.005", "USD", rounding="nearest")


# Examples.


def test_usd_has_cents() -> None:
    assert currency("USD") == Asset("USD", 2)
    assert to_minor("12.34", "USD") == 1234
    assert to_minor(Decimal("12.34"), "USD") == 1234
    assert to_decimal(1234, "USD") == Decimal("12.34")


def test_jpy_has_no_minor_units() -> None:
    assert to_minor("1500", "JPY") == 1500
    with pytest.raises(InvalidAmountError, match="scale 0"):
        to_minor("1500.5", "JPY")


def test_bhd_has_three_decimal_places_and_clf_four() -> None:
    assert to_minor("1.234", "BHD") == 1234
    assert to_minor("1.2345", "CLF") == 12345
    assert to_decimal(1, "CLF") == Decimal("0.0001")


def test_a_crypto_asset_keeps_18_decimal_places() -> None:
    eth = asset("ETH", 18)
    assert eth.to_minor("1.000000000000000001") == 10**18 + 1
    assert eth.to_decimal(1) == Decimal("1E-18")
    assert eth.format(1) == "0.000000000000000001 ETH"


def test_int_amounts_are_whole_units() -> None:
    assert to_minor(12, "USD") == 1200
    assert to_minor(12, "JPY") == 12


def test_trailing_zeros_are_not_sub_unit_precision() -> None:
    assert to_minor("12.3400", "USD") == 1234


def test_negative_zero_is_zero() -> None:
    assert to_minor("-0.00", "USD") == 0


def test_format_shows_every_decimal_place_and_the_code() -> None:
    assert currency("USD").format(1200) == "12.00 USD"
    assert currency("USD").format(0) == "0.00 USD"
    assert currency("JPY").format(1500) == "1500 JPY"
    assert currency("BHD").format(5) == "0.005 BHD"


def test_sub_unit_refusal_names_the_amount_the_scale_and_the_fix() -> None:
    with pytest.raises(InvalidAmountError) as refusal:
        to_minor("12.345", "USD")
    message = str(refusal.value)
    assert "12.345" in message
    assert "scale 2" in message
    assert "rounding=decimal.ROUND_HALF_EVEN" in message


def test_rounding_modes_round_half_cents_as_named() -> None:
    assert to_minor("0.125", "USD", rounding=decimal.ROUND_HALF_EVEN) == 12
    assert to_minor("0.135", "USD", rounding=decimal.ROUND_HALF_EVEN) == 14
    assert to_minor("0.125", "USD", rounding=decimal.ROUND_HALF_UP) == 13
    assert to_minor("0.129", "USD", rounding=decimal.ROUND_DOWN) == 12
    assert to_minor("1E-999999", "USD", rounding=decimal.ROUND_UP) == 1


def test_negative_amount_refusal_says_to_use_the_opposite_direction() -> None:
    with pytest.raises(InvalidAmountError, match="swap the debit and credit accounts"):
        to_minor("-12.34", "USD")


def test_a_float_refusal_suggests_a_decimal() -> None:
    with pytest.raises(InvalidAmountError, match=r"Decimal\('0\.1'\)"):
        to_minor(0.1, "USD")  # type: ignore[arg-type]


def test_currency_codes_are_case_insensitive() -> None:
    assert currency("usd") is currency("USD")
    assert currency("Eur") == Asset("EUR", 2)
    assert to_minor("1", "eur") == 100


def test_an_unknown_currency_code_is_refused_with_a_way_out() -> None:
    with pytest.raises(InvalidAmountError, match=r"not an ISO 4217 currency code.*asset\('XYZ'"):
        currency("XYZ")
    with pytest.raises(InvalidAmountError, match="not an ISO 4217"):
        to_minor("1", "ETH")
    with pytest.raises(InvalidAmountError, match="has type int"):
        currency(840)  # type: ignore[arg-type]


@pytest.mark.parametrize("code", sorted(NO_MINOR_UNITS))
def test_codes_without_minor_units_are_not_currencies(code: str) -> None:
    with pytest.raises(InvalidAmountError, match=rf"no minor units for {code}.*asset\("):
        currency(code.lower())


def test_gold_is_a_user_defined_asset_with_its_own_scale() -> None:
    gold = asset("XAU", 6)
    assert gold.to_minor("1.5") == 1_500_000


def test_module_functions_accept_an_asset_or_a_code() -> None:
    eth = asset("ETH", 18)
    assert to_minor("2", eth) == 2 * 10**18
    assert to_decimal(2 * 10**18, eth) == Decimal(2)
    assert to_minor("2", currency("USD")) == to_minor("2", "USD")


@pytest.mark.parametrize("scale", [-1, 39, True, 2.0, "2", None])
def test_a_scale_outside_0_to_38_or_not_an_int_is_refused(scale: object) -> None:
    with pytest.raises(InvalidAmountError, match="scale of TOKEN"):
        asset("TOKEN", scale)  # type: ignore[arg-type]


def test_scale_38_holds_amount_max() -> None:
    tiny = asset("TINY", 38)
    assert tiny.to_minor(tiny.to_decimal(AMOUNT_MAX)) == AMOUNT_MAX


@pytest.mark.parametrize("code", ["", "U SD", "USD\n", "X" * 33, 5, None])
def test_an_asset_code_must_be_short_printable_text(code: object) -> None:
    with pytest.raises(InvalidAmountError, match="asset code"):
        asset(code, 2)  # type: ignore[arg-type]


def test_an_asset_is_an_immutable_value() -> None:
    usd = currency("USD")
    assert usd == asset("USD", 2)
    assert hash(usd) == hash(asset("USD", 2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        usd.scale = 3  # type: ignore[misc]


def test_money_errors_are_fastledger_value_errors() -> None:
    with pytest.raises(FastledgerError):
        to_minor(0.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        to_minor("-1", "USD")


# The ISO 4217 table.

WELL_KNOWN_MINOR_UNITS = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CHF": 2,
    "JPY": 0,
    "KRW": 0,
    "CLP": 0,
    "ISK": 0,
    "VND": 0,
    "XOF": 0,
    "BHD": 3,
    "KWD": 3,
    "JOD": 3,
    "OMR": 3,
    "TND": 3,
    "LYD": 3,
    "IQD": 3,
    "CLF": 4,
    "UYW": 4,
}


@pytest.mark.parametrize(("code", "minor_units"), sorted(WELL_KNOWN_MINOR_UNITS.items()))
def test_well_known_currencies_have_their_iso_4217_minor_units(code: str, minor_units: int) -> None:
    assert CURRENCIES[code][1] == minor_units
    assert currency(code).scale == minor_units


def test_well_known_currencies_have_their_iso_4217_numeric_codes() -> None:
    assert CURRENCIES["USD"][0] == 840
    assert CURRENCIES["EUR"][0] == 978
    assert CURRENCIES["JPY"][0] == 392
    assert CURRENCIES["ALL"][0] == 8


def test_the_iso_4217_table_has_the_size_of_list_one() -> None:
    # Regenerating the table from a newer list one changes these on purpose: review the diff.
    assert PUBLISHED == "2026-01-01"
    assert len(CURRENCIES) == 165
    assert len(NO_MINOR_UNITS) == 13
    assert {"XAU", "XAG", "XPT", "XPD", "XDR", "XTS", "XXX"} <= NO_MINOR_UNITS


def test_every_iso_4217_entry_is_well_formed() -> None:
    numeric_codes = [numeric for numeric, _ in CURRENCIES.values()]
    assert len(set(numeric_codes)) == len(numeric_codes)
    assert not NO_MINOR_UNITS & CURRENCIES.keys()
    for code, (numeric, minor_units) in CURRENCIES.items():
        assert len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()
        assert 1 <= numeric <= 999
        assert 0 <= minor_units <= 4


GENERATOR = Path(__file__).resolve().parent.parent / "tools" / "gen_iso4217.py"

LIST_ONE_SAMPLE = b"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<ISO_4217 Pblshd="2026-01-01">
  <CcyTbl>
    <CcyNtry><CtryNm>ALBANIA</CtryNm><CcyNm>Lek</CcyNm><Ccy>ALL</Ccy>
      <CcyNbr>008</CcyNbr><CcyMnrUnts>2</CcyMnrUnts></CcyNtry>
    <CcyNtry><CtryNm>ANTARCTICA</CtryNm><CcyNm>No universal currency</CcyNm></CcyNtry>
    <CcyNtry><CtryNm>CHILE</CtryNm><CcyNm IsFund="true">Unidad de Fomento</CcyNm><Ccy>CLF</Ccy>
      <CcyNbr>990</CcyNbr><CcyMnrUnts>4</CcyMnrUnts></CcyNtry>
    <CcyNtry><CtryNm>ZZ08_Gold</CtryNm><CcyNm>Gold</CcyNm><Ccy>XAU</Ccy>
      <CcyNbr>959</CcyNbr><CcyMnrUnts>N.A.</CcyMnrUnts></CcyNtry>
    <CcyNtry><CtryNm>KOSOVO</CtryNm><CcyNm>Euro</CcyNm><Ccy>EUR</Ccy>
      <CcyNbr>978</CcyNbr><CcyMnrUnts>2</CcyMnrUnts></CcyNtry>
    <CcyNtry><CtryNm>FRANCE</CtryNm><CcyNm>Euro</CcyNm><Ccy>EUR</Ccy>
      <CcyNbr>978</CcyNbr><CcyMnrUnts>2</CcyMnrUnts></CcyNtry>
  </CcyTbl>
</ISO_4217>
"""


@pytest.mark.skipif(not GENERATOR.exists(), reason="the source tree's tools/ is not here")
def test_the_generator_turns_list_one_into_the_table_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = importlib.util.spec_from_file_location("gen_iso4217", GENERATOR)
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    # Its dataclass looks its module up in sys.modules while the module runs.
    monkeypatch.setitem(sys.modules, "gen_iso4217", generator)
    spec.loader.exec_module(generator)
    published, entries = generator.parse_list_one(LIST_ONE_SAMPLE)
    namespace: dict[str, object] = {}
    exec(generator.render(published, "a test sample", entries), namespace)
    assert namespace["PUBLISHED"] == "2026-01-01"
    assert dict(namespace["CURRENCIES"]) == {  # type: ignore[call-overload]
        "ALL": (8, 2),
        "CLF": (990, 4),
        "EUR": (978, 2),
    }
    assert namespace["NO_MINOR_UNITS"] == frozenset({"XAU"})
