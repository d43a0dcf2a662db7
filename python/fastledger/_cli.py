"""The `fastledger` command line: `demo` shows the ledger at work, `bench` measures it, and
`verify` checks a ledger directory.

`bench` is modelled on `tigerbeetle benchmark`, with its defaults where they make sense for an
embedded ledger: it loads random transfers between random accounts in full batches, then times
single-transfer batches and queries on the loaded ledger. Transfers are generated from a seed
before each batch is timed, so the figures are of posting alone, and one batch at a time, so
that ten million transfers do not have to fit in memory as Python objects at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import TextIO, TypeVar

from . import __version__, money
from ._copy import copy_main
from ._ledger import ENGINES, Ledger, rust_engine_available
from ._records import pack_transfers
from ._types import (
    BATCH_MAX,
    Account,
    AccountFilter,
    AccountFlags,
    CreateAccountStatus,
    CreateTransferResult,
    CreateTransferStatus,
    Transfer,
    TransferFlags,
)
from ._verify import verify_main
from .errors import EngineUnavailableError, JournalCorruptError
from .packed import PackedResults, transfers_from_columns

__all__ = ["main"]

_A = TypeVar("_A")

# A load batch as the benchmark passes it: a list of objects, or the same transfers packed.
_Batch = list[Transfer] | bytes
_BatchResults = list[CreateTransferResult] | PackedResults[CreateTransferResult]


def main(argv: list[str] | None = None) -> int:
    """Runs the command line with `argv` (default: `sys.argv[1:]`); returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    # `verify` and `copy` keep their parsers beside the code they run; the parser here only
    # lists them.
    if argv[:1] == ["verify"]:
        return verify_main(argv[1:])
    if argv[:1] == ["copy"]:
        return copy_main(argv[1:])
    args = _parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    return command(args)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description and the examples in the epilog as they are written."""


_MAIN_EPILOG = """\
examples:
  fastledger demo                   # accounts, transfers, an overdraft, a hold, balances
  fastledger bench                  # TigerBeetle-style load: 10,000,000 transfers
  fastledger bench --transfers 1000000 --engine both
  fastledger verify ./ledger        # check a directory made by Ledger.open("./ledger")
  fastledger copy ./ledger postgresql://app@db/ledger   # move a journal to PostgreSQL
  fastledger COMMAND --help         # the options of one command
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastledger",
        description="An embedded double-entry ledger with TigerBeetle's data model.",
        epilog=_MAIN_EPILOG,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fastledger {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_demo_parser(commands)
    _add_bench_parser(commands)
    commands.add_parser(
        "verify",
        help="check a ledger's journal end to end: checksums, hash chain, replay, balances",
        add_help=False,
    )
    commands.add_parser(
        "copy",
        help="copy a ledger's journal between a directory and PostgreSQL, checked batch by batch",
        add_help=False,
    )
    return parser


def _open_ledger(engine: str, path: Path | None = None) -> Ledger | None:
    """A ledger on `engine`, kept in the directory `path` or in memory when it is None, or
    None after saying why it cannot be had."""
    try:
        if path is None:
            return Ledger(engine=engine)
        return Ledger.open(path, engine=engine)
    except (EngineUnavailableError, JournalCorruptError) as error:
        print(f"fastledger: error: {error}", file=sys.stderr)
        return None


def _default_demo_path() -> Path:
    """Where the demo keeps its ledger: the user's data directory, as XDG defines it."""
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "fastledger" / "demo"


# -- demo ------------------------------------------------------------------------------------

_DEMO_DESCRIPTION = """\
Runs a short scenario on a new ledger and prints what happened: three accounts on ledger 1
(US dollars), a deposit, a payment between customers, an overdraft that the ledger rejects with
the status EXCEEDS_CREDITS, a two-phase hold and its capture, then the balances and the trial
balance.

The ledger lives in a directory (--path; by default in the user's data directory), durably, as
Ledger.open keeps it: run the demo again and it finds the same ledger, each step answers EXISTS
(the same id was applied before, so it is not applied twice) and the balances are the same.
--memory runs it in memory instead.
"""

_DEMO_EPILOG = """\
examples:
  fastledger demo                   # the Rust engine if it is built, else the Python one
  fastledger demo                   # again: the same ledger, found on disk, the same balances
  fastledger demo --path ./ledger   # keep the ledger in ./ledger
  fastledger demo --engine python   # the pure-Python reference engine
  fastledger demo --memory          # in memory: nothing is written
  python -m fastledger demo
"""

_USD = money.currency("USD")
_LEDGER_USD = 1

# Account codes name a kind of account and transfer codes a kind of movement. The ledger only
# requires them to be non-zero; what they mean is the application's choice.
_CODE_CASH = 10
_CODE_CUSTOMER = 20
_CODE_DEPOSIT = 1
_CODE_PAYMENT = 2
_CODE_CARD_HOLD = 3


@dataclass(frozen=True, slots=True)
class _DemoAccount:
    id: int
    name: str
    # The side whose entries raise the balance: the bank's cash is an asset and grows with
    # debits; what the bank owes a customer is a liability and grows with credits.
    debit_normal: bool


_CASH = _DemoAccount(1, "bank cash", debit_normal=True)
_ALICE = _DemoAccount(2, "alice", debit_normal=False)
_BOB = _DemoAccount(3, "bob", debit_normal=False)
_DEMO_ACCOUNTS = (_CASH, _ALICE, _BOB)


@dataclass(frozen=True, slots=True)
class _DemoStep:
    what: str
    transfer: Transfer
    note: str = ""


def _add_demo_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="run a short scenario on a ledger kept in a directory",
        description=_DEMO_DESCRIPTION,
        epilog=_DEMO_EPILOG,
        formatter_class=_HelpFormatter,
    )
    demo.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="the state machine: auto (the default) is rust when the native extension is "
        "built, else python",
    )
    where = demo.add_mutually_exclusive_group()
    where.add_argument(
        "--path",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"the ledger's directory (default: {_default_demo_path()})",
    )
    where.add_argument("--memory", action="store_true", help="keep the ledger in memory only")
    demo.set_defaults(command=_demo)


def _demo(args: argparse.Namespace) -> int:
    path = None if args.memory else (args.path or _default_demo_path())
    ledger = _open_ledger(args.engine, path)
    if ledger is None:
        return 2
    with ledger:
        where = "in memory" if path is None else f"kept in {path}"
        print(f"fastledger demo: {ledger.engine} engine, {where}, ledger {_LEDGER_USD} in USD\n")
        _demo_open_accounts(ledger)
        for step in _demo_steps():
            (result,) = ledger.create_transfers([step.transfer])
            print(f"  {step.what:<48} {result.status.name}")
            note = _RERUN_NOTES.get(result.status, step.note)
            if note:
                print(f"    {note}")
        print()
        _print_demo_balances(ledger)
    return 0


# What a step answers when the demo runs again on the ledger an earlier run left.
_RERUN_NOTES = {
    CreateTransferStatus.EXISTS: "applied by an earlier run: the same id is never applied twice",
    CreateTransferStatus.ID_ALREADY_FAILED: (
        "refused by an earlier run: an id that failed this way is never tried again"
    ),
}


def _demo_open_accounts(ledger: Ledger) -> None:
    # Customers may not spend more than they have: their debits must not exceed their credits.
    customer = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    accounts = [
        Account(id=_CASH.id, ledger=_LEDGER_USD, code=_CODE_CASH),
        Account(id=_ALICE.id, ledger=_LEDGER_USD, code=_CODE_CUSTOMER, flags=customer),
        Account(id=_BOB.id, ledger=_LEDGER_USD, code=_CODE_CUSTOMER, flags=customer),
    ]
    results = ledger.create_accounts(accounts)
    statuses = ", ".join(r.status.name for r in results)
    names = ", ".join(a.name for a in _DEMO_ACCOUNTS)
    print(f"  {'open accounts: ' + names:<48} {statuses}")


def _demo_steps() -> list[_DemoStep]:
    deposit, payment = _USD.to_minor("100.00"), _USD.to_minor("30.00")
    overdraft = _USD.to_minor("500.00")
    hold, capture = _USD.to_minor("25.00"), _USD.to_minor("20.00")
    usd = _USD.format

    def move(id_: int, debit: _DemoAccount, credit: _DemoAccount, amount: int) -> Transfer:
        return Transfer(
            id=id_,
            debit_account_id=debit.id,
            credit_account_id=credit.id,
            amount=amount,
            ledger=_LEDGER_USD,
            code=_CODE_PAYMENT,
        )

    return [
        _DemoStep(
            f"deposit {usd(deposit)} in cash for alice",
            dataclasses.replace(move(101, _CASH, _ALICE, deposit), code=_CODE_DEPOSIT),
        ),
        _DemoStep(f"alice pays bob {usd(payment)}", move(102, _ALICE, _BOB, payment)),
        _DemoStep(
            f"bob tries to pay alice {usd(overdraft)}",
            move(103, _BOB, _ALICE, overdraft),
            "a status, not an exception: bob has less than that, so nothing moved",
        ),
        _DemoStep(
            f"hold {usd(hold)} of alice's for bob",
            dataclasses.replace(
                move(104, _ALICE, _BOB, hold),
                code=_CODE_CARD_HOLD,
                flags=TransferFlags.PENDING,
                timeout=3600,
            ),
            "pending: reserved from alice for an hour, not yet moved",
        ),
        _DemoStep(
            f"capture {usd(capture)} of the hold",
            Transfer(
                id=105, pending_id=104, amount=capture, flags=TransferFlags.POST_PENDING_TRANSFER
            ),
            f"posted; the other {usd(hold - capture)} of the hold went back to alice",
        ),
    ]


def _print_demo_balances(ledger: Ledger) -> None:
    columns = ("debits posted", "credits posted", "debits pending", "credits pending", "balance")
    print(f"  {'account (USD)':<14}" + "".join(f"{c:>17}" for c in columns))
    accounts = ledger.lookup_accounts([a.id for a in _DEMO_ACCOUNTS])
    for shown, a in zip(_DEMO_ACCOUNTS, accounts, strict=True):
        # The balance is taken on the side that raises it (see _DemoAccount).
        raised, lowered = (a.debits_posted, a.credits_posted)[:: 1 if shown.debit_normal else -1]
        figures = (a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending)
        cells = [_dollars(f) for f in figures] + [_signed_dollars(raised - lowered)]
        print(f"  {shown.name:<14}" + "".join(f"{c:>17}" for c in cells))
    trial = ledger.trial_balance(_LEDGER_USD)
    verdict = "balanced" if trial.balanced else "NOT balanced"
    print(
        f"\n  trial balance of ledger {_LEDGER_USD}: debits posted {_dollars(trial.debits_posted)}"
        f", credits posted {_dollars(trial.credits_posted)}: {verdict}"
    )


def _dollars(minor: int) -> str:
    return f"{_USD.to_decimal(minor):f}"


def _signed_dollars(minor: int) -> str:
    return _dollars(minor) if minor >= 0 else "-" + _dollars(-minor)


# -- bench -----------------------------------------------------------------------------------

_BENCH_DESCRIPTION = """\
Measures posting and queries, modelled on `tigerbeetle benchmark`. It creates the accounts,
then posts random transfers between them in full batches (create_transfers with lists of
Transfer objects, or with packed 128-byte records under --input packed) and reports the load
accepted and the batch latency; then it posts single transfers one call at a time (a list of
one Transfer) and runs queries (lookup_accounts of one id, get_account_transfers with limit
100) on the loaded ledger and reports their latency. Transfers come from a seeded generator and
are built before each call is timed; packed batches are built from NumPy columns where NumPy is
installed.

As TigerBeetle's benchmark does, it keeps the ledger durable, in a new temporary directory
that it deletes at the end (--path DIR keeps it there instead): every batch is on disk
(fsync) before its call returns. --memory measures an in-memory ledger.

Progress goes to stderr; the report goes to stdout.
"""

_BENCH_EPILOG = """\
examples:
  fastledger bench                                   # 10,000,000 transfers on the default engine
  fastledger bench --transfers 1000000 --engine both # both engines, with rust/python ratios
  fastledger bench --engine python --transfers 100000 --json > python.json
  fastledger bench --memory --input packed           # in memory, packed batches
"""

# Single-transfer calls and queries of each kind sampled after the load: enough for a p999
# (the 5th slowest) while keeping the Python engine's run short.
_SAMPLES = 5000
_QUERY_LIMIT = 100
_AMOUNT_MAX = 1000
_ACCOUNTS_MAX = 100_000_000
_TRANSFERS_MAX = 1_000_000_000
_THREADS_MAX = 64
_PROGRESS_INTERVAL_S = 1.0
_NS_PER_S = 1_000_000_000


class _BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


@dataclass(frozen=True, slots=True)
class _BenchConfig:
    accounts: int
    transfers: int
    batch_size: int
    threads: int
    seed: int
    input: str
    storage: str


@dataclass(frozen=True, slots=True)
class _EngineReport:
    """The figures of one engine. Latencies are in nanoseconds; units come last in names."""

    engine: str
    load_accepted_transfers_per_s: int
    load_ns: int
    batch_latency_ns_p50: int
    batch_latency_ns_p99: int
    batch_latency_ns_p100: int
    transfer_latency_ns_p50: int
    transfer_latency_ns_p99: int
    transfer_latency_ns_p999: int
    lookup_accounts_latency_ns_p50: int
    lookup_accounts_latency_ns_p99: int
    get_account_transfers_latency_ns_p50: int
    get_account_transfers_latency_ns_p99: int


def _add_bench_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser(
        "bench",
        help="measure posting throughput and latency, like `tigerbeetle benchmark`",
        description=_BENCH_DESCRIPTION,
        epilog=_BENCH_EPILOG,
        formatter_class=_HelpFormatter,
    )
    add = bench.add_argument
    add(
        "--accounts",
        type=_int_in(2, _ACCOUNTS_MAX),
        default=10_000,
        metavar="N",
        help="accounts to create (default: %(default)s)",
    )
    add(
        "--transfers",
        type=_int_in(1, _TRANSFERS_MAX),
        default=10_000_000,
        metavar="N",
        help="transfers in the load (default: %(default)s)",
    )
    add(
        "--batch-size",
        type=_int_in(1, BATCH_MAX),
        default=BATCH_MAX,
        metavar="N",
        help="transfers per load batch, at most the batch limit (default: %(default)s)",
    )
    add(
        "--engine",
        choices=("rust", "python", "both"),
        default=None,
        help="the engine to measure, or both with ratios (default: rust if built, else python)",
    )
    add(
        "--input",
        choices=("objects", "packed"),
        default="objects",
        help="how load batches are passed: lists of Transfer objects, or packed 128-byte "
        "records (default: %(default)s)",
    )
    add(
        "--threads",
        type=_int_in(1, _THREADS_MAX),
        default=1,
        metavar="N",
        help="threads posting load batches at once into the one ledger (default: %(default)s)",
    )
    add(
        "--seed",
        type=_int_in(0, 2**64 - 1),
        default=42,
        metavar="N",
        help="seed of the transfer generator (default: %(default)s)",
    )
    where = bench.add_mutually_exclusive_group()
    where.add_argument(
        "--path",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the durable ledger in DIR, which must be new or empty (default: a temporary "
        "directory, deleted at the end)",
    )
    where.add_argument("--memory", action="store_true", help="measure an in-memory ledger")
    add("--json", action="store_true", help="print one JSON object instead of the report")
    bench.set_defaults(command=_bench)


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer (underscores allowed, as in 10_000) in low..high."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in {low:_}..{high:_}")
        return value

    return parse


def _bench(args: argparse.Namespace) -> int:
    engine = args.engine or ("rust" if rust_engine_available() else "python")
    engines = ("rust", "python") if engine == "both" else (engine,)
    config = _BenchConfig(
        args.accounts,
        args.transfers,
        args.batch_size,
        args.threads,
        args.seed,
        args.input,
        "memory" if args.memory else "durable",
    )
    if not args.json:
        print(_describe(config))
    reports = []
    for name in engines:
        path = None if args.memory else _bench_directory(args.path, name, len(engines))
        ledger = _open_ledger(name, path)
        if ledger is None:
            return 2
        try:
            with ledger:
                reports.append(_run_engine(ledger, config))
        except _BenchError as error:
            print(f"fastledger bench: error: {error}", file=sys.stderr)
            return 1
        finally:
            if path is not None and args.path is None:
                shutil.rmtree(path, ignore_errors=True)
        # Free the loaded ledger before the next engine fills memory with its own.
        del ledger
        if not args.json:
            _print_report(reports[-1])
    if args.json:
        print(json.dumps(_json_report(config, reports), indent=2))
    elif len(reports) == 2:
        _print_speedup(reports[0], reports[1])
    return 0


def _bench_directory(chosen: Path | None, engine: str, engines: int) -> Path:
    """The directory of one engine's durable ledger: a new temporary one, or the one chosen
    (with one subdirectory per engine when both are measured)."""
    if chosen is None:
        return Path(tempfile.mkdtemp(prefix=f"fastledger-bench-{engine}-"))
    path = chosen / engine if engines > 1 else chosen
    if path.exists() and any(path.iterdir()):
        raise SystemExit(f"fastledger bench: error: {path} is not empty; choose a new directory")
    return path


def _describe(config: _BenchConfig) -> str:
    threads = "1 thread" if config.threads == 1 else f"{config.threads} threads"
    return (
        f"fastledger bench: {config.accounts:,} accounts, {config.transfers:,} transfers in "
        f"batches of {config.batch_size:,} ({config.input}), {threads}, seed {config.seed}, "
        f"{'in memory' if config.storage == 'memory' else 'durable (fsync per batch)'}\n"
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs\n"
    )


def _run_engine(ledger: Ledger, config: _BenchConfig) -> _EngineReport:
    progress = _Progress(ledger.engine, sys.stderr)
    progress.say(f"creating {config.accounts:,} accounts")
    _create_accounts(ledger, config.accounts)
    progress.say(f"posting {config.transfers:,} transfers")
    load_ns, batch_latencies = _post_load(ledger, config, progress)
    progress.say(f"sampling {_SAMPLES:,} single transfers and queries of each kind")
    rng = random.Random(config.seed + 1)
    transfers = _sample_single_transfers(ledger, config, rng)
    ids = [[_random_account(rng, config)] for _ in range(_SAMPLES)]
    lookups = _latencies(ledger.lookup_accounts, ids)
    filters = [
        AccountFilter(account_id=_random_account(rng, config), limit=_QUERY_LIMIT)
        for _ in range(_SAMPLES)
    ]
    queries = _latencies(ledger.get_account_transfers, filters)
    return _EngineReport(
        engine=ledger.engine,
        load_accepted_transfers_per_s=config.transfers * _NS_PER_S // max(load_ns, 1),
        load_ns=load_ns,
        batch_latency_ns_p50=_percentile(batch_latencies, 500),
        batch_latency_ns_p99=_percentile(batch_latencies, 990),
        batch_latency_ns_p100=_percentile(batch_latencies, 1000),
        transfer_latency_ns_p50=_percentile(transfers, 500),
        transfer_latency_ns_p99=_percentile(transfers, 990),
        transfer_latency_ns_p999=_percentile(transfers, 999),
        lookup_accounts_latency_ns_p50=_percentile(lookups, 500),
        lookup_accounts_latency_ns_p99=_percentile(lookups, 990),
        get_account_transfers_latency_ns_p50=_percentile(queries, 500),
        get_account_transfers_latency_ns_p99=_percentile(queries, 990),
    )


def _create_accounts(ledger: Ledger, count: int) -> None:
    for first in range(1, count + 1, BATCH_MAX):
        ids = range(first, min(first + BATCH_MAX, count + 1))
        results = ledger.create_accounts([Account(id=i, ledger=1, code=1) for i in ids])
        failed = [r for r in results if r.status is not CreateAccountStatus.CREATED]
        if failed:
            raise _BenchError(f"creating accounts failed: {failed[0].status.name}")


def _random_account(rng: random.Random, config: _BenchConfig) -> int:
    return 1 + int(rng.random() * config.accounts)


def _random_move(rng: random.Random, accounts: int) -> tuple[int, int, int]:
    """The debit account, credit account and amount of a random transfer: 1..1000 between
    two different accounts of 1..accounts."""
    debit = int(rng.random() * accounts)
    credit = int(rng.random() * (accounts - 1))
    # Skipping the debit account keeps the credit account uniform over the others.
    if credit >= debit:
        credit += 1
    return debit + 1, credit + 1, 1 + int(rng.random() * _AMOUNT_MAX)


def _random_transfer(rng: random.Random, transfer_id: int, accounts: int) -> Transfer:
    debit, credit, amount = _random_move(rng, accounts)
    return Transfer(
        id=transfer_id,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        ledger=1,
        code=1,
    )


def _transfer_batches(config: _BenchConfig) -> Iterator[_Batch]:
    """The load, one batch at a time: each is built when the loop asks for it, before its
    call is timed, so that only one batch per thread is ever held. Packed batches hold the
    same transfers as objects would."""
    rng = random.Random(config.seed)
    for first in range(1, config.transfers + 1, config.batch_size):
        ids = range(first, min(first + config.batch_size, config.transfers + 1))
        if config.input == "packed":
            yield _packed_batch(rng, ids, config.accounts)
        else:
            yield [_random_transfer(rng, i, config.accounts) for i in ids]


def _packed_batch(rng: random.Random, ids: range, accounts: int) -> bytes:
    """The random transfers with `ids` that `_random_transfer` would make, packed. With NumPy
    they are built from columns (`transfers_from_columns`), as a service that posts packed
    batches would build them: in a quarter of the time, and without a `Transfer` per transfer,
    whose making also left the call after it slower (by about a fifth, in a run alternating
    the two ways). Without NumPy they are packed from objects."""
    try:
        import numpy as np
    except ImportError:
        return pack_transfers([_random_transfer(rng, i, accounts) for i in ids])
    moves = np.array([_random_move(rng, accounts) for _ in ids], dtype=np.uint64)
    ones = np.ones(len(ids), dtype=np.uint16)
    batch = transfers_from_columns(
        id=np.arange(ids.start, ids.stop, dtype=np.uint64),
        debit_account_id=moves[:, 0],
        credit_account_id=moves[:, 1],
        amount=moves[:, 2],
        ledger=ones,
        code=ones,
    )
    return batch.tobytes()


def _post_load(ledger: Ledger, config: _BenchConfig, progress: _Progress) -> tuple[int, list[int]]:
    """Posts the load; returns the time spent posting and the latency of each batch, in ns."""
    batches = _transfer_batches(config)
    progress.start(config.transfers)
    if config.threads == 1:
        return _post_serially(ledger, batches, progress)
    return _post_concurrently(ledger, batches, config.threads, progress)


def _post_serially(
    ledger: Ledger, batches: Iterable[_Batch], progress: _Progress
) -> tuple[int, list[int]]:
    latencies = []
    for batch in batches:
        latency, results = _timed_post(ledger, batch)
        _check_created(results)
        latencies.append(latency)
        progress.advance(len(results))
    return sum(latencies), latencies


def _post_concurrently(
    ledger: Ledger, batches: Iterator[_Batch], threads: int, progress: _Progress
) -> tuple[int, list[int]]:
    """Posts the load in rounds of one batch per thread; a round's batches are built before
    the round starts, and the wall time of the rounds is the time spent posting."""
    elapsed_ns = 0
    latencies: list[int] = []
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench") as pool:
        while round_ := list(islice(batches, threads)):
            start = time.perf_counter_ns()
            outcomes = list(pool.map(partial(_timed_post, ledger), round_))
            elapsed_ns += time.perf_counter_ns() - start
            for latency, results in outcomes:
                _check_created(results)
                latencies.append(latency)
                progress.advance(len(results))
    return elapsed_ns, latencies


def _timed_post(ledger: Ledger, batch: _Batch) -> tuple[int, _BatchResults]:
    start = time.perf_counter_ns()
    results = ledger.create_transfers(batch)
    return time.perf_counter_ns() - start, results


def _check_created(results: _BatchResults) -> None:
    # Packed results are checked in their status column, without an object per event.
    if isinstance(results, PackedResults) and results.all_created():
        return
    created = CreateTransferStatus.CREATED
    failed = next((r for r in results if r.status is not created), None)
    if failed is not None:
        raise _BenchError(f"a transfer of the benchmark was not created: {failed.status.name}")


def _sample_single_transfers(ledger: Ledger, config: _BenchConfig, rng: random.Random) -> list[int]:
    """The latency of single-transfer calls, with ids after those of the load."""
    first = config.transfers + 1
    ids = range(first, first + _SAMPLES)
    batches = [[_random_transfer(rng, i, config.accounts)] for i in ids]
    latencies = _latencies(ledger.create_transfers, batches)
    if len(ledger.lookup_transfers(ids)) != _SAMPLES:
        raise _BenchError("a single transfer of the benchmark was not created")
    return latencies


def _latencies(call: Callable[[_A], object], arguments: Sequence[_A]) -> list[int]:
    """The time of `call` on each argument, in ns; the arguments are built beforehand."""
    latencies = []
    for argument in arguments:
        start = time.perf_counter_ns()
        call(argument)
        latencies.append(time.perf_counter_ns() - start)
    return latencies


def _percentile(values: list[int], per_mille: int) -> int:
    """The nearest-rank percentile, given in per mille (990 is p99, 1000 the maximum)."""
    ordered = sorted(values)
    rank = -(-len(ordered) * per_mille // 1000)
    return ordered[max(rank, 1) - 1]


class _Progress:
    """Tells on stderr how far a run is, at most once a second, so a long run shows life."""

    def __init__(self, label: str, stream: TextIO) -> None:
        self._label = label
        self._stream = stream
        self._total = 0
        self._done = 0
        self._start_s = 0.0
        self._shown_s = 0.0

    def say(self, message: str) -> None:
        print(f"{self._label}: {message}", file=self._stream, flush=True)

    def start(self, total: int) -> None:
        self._total, self._done = total, 0
        self._start_s = self._shown_s = time.monotonic()

    def advance(self, count: int) -> None:
        self._done += count
        now_s = time.monotonic()
        if now_s - self._shown_s < _PROGRESS_INTERVAL_S and self._done < self._total:
            return
        self._shown_s = now_s
        # The rate includes building the batches, unlike the figures of the report.
        rate = self._done / max(now_s - self._start_s, 1e-9)
        self.say(f"{self._done:,}/{self._total:,} transfers ({rate:,.0f}/s with generation)")


# -- bench output ----------------------------------------------------------------------------


def _duration(ns: int) -> str:
    """A duration for people, with 3 significant digits below a second."""
    if ns >= _NS_PER_S:
        return f"{ns / _NS_PER_S:.2f} s"
    for unit, scale in (("ms", 1_000_000), ("µs", 1_000)):
        if ns >= scale:
            value = ns / scale
            places = 2 if value < 10 else 1 if value < 100 else 0
            return f"{value:.{places}f} {unit}"
    return f"{ns} ns"


def _print_report(r: _EngineReport) -> None:
    d = _duration
    rows = (
        (
            "load accepted",
            f"{r.load_accepted_transfers_per_s:,} transfers/s (posting took {d(r.load_ns)})",
        ),
        (
            "batch latency",
            f"p50 {d(r.batch_latency_ns_p50)}  p99 {d(r.batch_latency_ns_p99)}  "
            f"p100 {d(r.batch_latency_ns_p100)}",
        ),
        (
            "single-transfer latency",
            f"p50 {d(r.transfer_latency_ns_p50)}  p99 {d(r.transfer_latency_ns_p99)}  "
            f"p999 {d(r.transfer_latency_ns_p999)}",
        ),
        (
            "lookup_accounts, 1 id",
            f"p50 {d(r.lookup_accounts_latency_ns_p50)}  p99 {d(r.lookup_accounts_latency_ns_p99)}",
        ),
        (
            f"get_account_transfers, limit {_QUERY_LIMIT}",
            f"p50 {d(r.get_account_transfers_latency_ns_p50)}  "
            f"p99 {d(r.get_account_transfers_latency_ns_p99)}",
        ),
    )
    print(f"{r.engine} engine")
    for label, figures in rows:
        print(f"  {label:<34}{figures}")
    print()


def _speedup(fast: _EngineReport, slow: _EngineReport) -> dict[str, float]:
    """How many times better `fast` is than `slow` on each figure: a higher rate or a lower
    latency both give a ratio above 1."""
    ratios = {}
    for field in dataclasses.fields(_EngineReport):
        if field.name in ("engine", "load_ns"):
            continue
        mine, theirs = getattr(fast, field.name), getattr(slow, field.name)
        higher_is_better = field.name.endswith("_per_s")
        better, worse = (mine, theirs) if higher_is_better else (theirs, mine)
        ratios[field.name] = round(better / max(worse, 1), 2)
    return ratios


def _print_speedup(rust: _EngineReport, python: _EngineReport) -> None:
    print("rust over python (times higher throughput, or times lower latency)")
    for name, ratio in _speedup(rust, python).items():
        print(f"  {name:<42}{ratio:>8.2f}x")


def _json_report(config: _BenchConfig, reports: list[_EngineReport]) -> dict[str, object]:
    report: dict[str, object] = {
        **dataclasses.asdict(config),
        "samples": _SAMPLES,
        "query_limit": _QUERY_LIMIT,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "results": {r.engine: dataclasses.asdict(r) for r in reports},
    }
    if len(reports) == 2:
        report["speedup_rust_over_python"] = _speedup(reports[0], reports[1])
    return report
