"""The `fastledger` command line: `demo` shows the ledger at work, `bench` measures it, and
`verify` checks a ledger directory.

`bench` is modelled on `tigerbeetle benchmark`, with its defaults where they make sense for an
embedded ledger: it loads random transfers between random accounts in full batches, then times
single-transfer batches and queries on the loaded ledger. Every batch of the load is built from
a seed before the clock starts, and the batches are then posted back to back, so that the figures
are of posting alone and the engine gets no pause between calls that a real importer would not
give it; --build-between-calls builds each just before its call instead.
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
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import islice
from operator import attrgetter
from pathlib import Path
from typing import TypeVar

from . import __version__, money
from ._bench_processes import bench_follower, bench_processes, random_move
from ._copy import copy_main
from ._ledger import ENGINES, Ledger, rust_engine_available
from ._progress import ProgressLine
from ._records import pack_transfers
from ._stats import stats_main
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

_status_of = attrgetter("status")


def main(argv: list[str] | None = None) -> int:
    """Runs the command line with `argv` (default: `sys.argv[1:]`); returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    # `verify`, `copy` and `stats` keep their parsers beside the code they run; the parser
    # here only lists them.
    if argv[:1] == ["verify"]:
        return verify_main(argv[1:])
    if argv[:1] == ["copy"]:
        return copy_main(argv[1:])
    if argv[:1] == ["stats"]:
        return stats_main(argv[1:])
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
  fastledger stats ./ledger         # batches, accounts, transfers, size and snapshots
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
    commands.add_parser(
        "stats",
        help="print what a ledger's journal holds: batches, events, size, times, snapshots",
        add_help=False,
    )
    return parser


def _open_ledger(engine: str, path: Path | str | None = None) -> Ledger | None:
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
builds every batch of the load, then starts the clock and posts the batches back to back
(create_transfers with lists of Transfer objects, or with packed 128-byte records under --input
packed), as an importer, a settlement job or a busy service posts them: no pause between calls
leaves the engine time to catch up. It reports the load accepted, the latency of the batches
and the memory (RSS) the load added per transfer. Then it posts single transfers one call at a
time (a list of one Transfer), alone and while another thread posts packed batches back to
back, and runs queries (lookup_accounts of one id, get_account_transfers with limit 100) on the
loaded ledger, and reports their latency. Transfers come from a seeded generator, in one of
the shapes of --shape; packed batches are built from NumPy columns where NumPy is installed.

As TigerBeetle's benchmark does, it keeps the ledger durable, in a new temporary directory
that it deletes at the end (--path DIR keeps it there instead): every batch is on disk
(fsync) before its call returns. --memory measures an in-memory ledger.

Progress goes to stderr; the report goes to stdout.
"""

_BENCH_EPILOG = """\
shapes:
  sequential    ids ascending from 1, random accounts (the default)
  random-ids    random 128-bit ids, which every create looks up in a hashed index
  hot-accounts  90% of transfers debit one of 10 hot accounts
  two-phase     each batch holds pending transfers, then the posts of as many of them

examples:
  fastledger bench                                   # 10,000,000 transfers on the default engine
  fastledger bench --transfers 1000000 --engine both # both engines, with rust/python ratios
  fastledger bench --memory --input packed --shape random-ids
  fastledger bench --memory --input packed --reserve # memory for the load mapped up front
  fastledger bench --engine python --transfers 100000 --json > python.json
"""

_SHAPES = ("sequential", "random-ids", "hot-accounts", "two-phase")

# Single-transfer calls and queries of each kind sampled after the load: enough for a p99.9
# (the 5th slowest) while keeping the Python engine's run short.
_SAMPLES = 5000
# The most transfers the other thread posts while single calls are timed under load, and the
# pause between those calls, as between the requests a service answers while an import runs:
# calls made back to back would hold the GIL between them and starve the other thread.
_LOADED_TRANSFERS_MAX = 1_000_000
_LOADED_CALL_INTERVAL_S = 0.0002
_QUERY_LIMIT = 100
# The hot-accounts shape: this share of transfers debits one of this many accounts.
_HOT_ACCOUNTS = 10
_HOT_SHARE = 0.9
_ACCOUNTS_MAX = 100_000_000
_TRANSFERS_MAX = 1_000_000_000
_THREADS_MAX = 64
# The most processes `--processes` starts, and the batches the follower is timed on.
_PROCESSES_MAX = 16
_FOLLOWER_BATCHES = 300
_NS_PER_S = 1_000_000_000
_U64_MASK = (1 << 64) - 1


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
    shape: str = "sequential"
    # Build each batch just before its call, rather than all of them before the clock starts.
    build_between_calls: bool = False
    # Map the memory of each timed load before its clock starts (`reserve_transfers`).
    reserve: bool = False


@dataclass(frozen=True, slots=True)
class _EngineReport:
    """The figures of one engine. Latencies are in nanoseconds; units come last in names."""

    engine: str
    load_accepted_transfers_per_s: int
    load_ns: int
    # The time `--reserve` took to map the memory of the load, before the clock; 0 without it.
    reserve_ns: int
    batch_latency_ns_p50: int
    batch_latency_ns_p99: int
    batch_latency_ns_p999: int
    batch_latency_ns_max: int
    rss_bytes_per_transfer: int
    transfer_latency_ns_p50: int
    transfer_latency_ns_p99: int
    transfer_latency_ns_p999: int
    transfer_latency_ns_max: int
    # Single calls while another thread posts packed batches back to back, and that thread's pace.
    loaded_transfer_latency_ns_p50: int
    loaded_transfer_latency_ns_p99: int
    loaded_transfer_latency_ns_p999: int
    loaded_transfer_latency_ns_max: int
    loaded_background_transfers_per_s: int
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
        "--shape",
        choices=_SHAPES,
        default="sequential",
        help="the ids and accounts of the transfers, as listed below (default: %(default)s)",
    )
    add(
        "--build-between-calls",
        action="store_true",
        help="build each load batch just before its call instead of all of them before the "
        "clock starts: the engine then has the building time of each batch to catch up",
    )
    add(
        "--reserve",
        action="store_true",
        help="map the memory of the load before the clock starts (reserve_transfers), and of the "
        "other thread's load before single calls are timed beside it; under --processes, each "
        "process maps the memory of the whole load, since each applies every batch",
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
    add(
        "--processes",
        type=_int_in(1, _PROCESSES_MAX),
        default=1,
        metavar="N",
        help="processes posting into one durable ledger at once, each with --threads threads "
        "(single transfers) or one thread (--input packed), sharing --transfers between them; "
        "then a read-only follower's lag (default: %(default)s)",
    )
    where = bench.add_mutually_exclusive_group()
    where.add_argument(
        "--path",
        type=_location,
        default=None,
        metavar="DIR|URL",
        help="keep the durable ledger in DIR, which must be new or empty, or in the PostgreSQL "
        "database of a postgresql:// URL, whose journal table must be new (default: a "
        "temporary directory, deleted at the end)",
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


def _location(text: str) -> Path | str:
    return text if text.startswith(("postgresql://", "postgres://")) else Path(text)


def _bench(args: argparse.Namespace) -> int:
    engine = args.engine or ("rust" if rust_engine_available() else "python")
    engines = ("rust", "python") if engine == "both" else (engine,)
    if args.processes > 1 or isinstance(args.path, str):
        return _bench_shared(args, engines)
    config = _BenchConfig(
        args.accounts,
        args.transfers,
        args.batch_size,
        args.threads,
        args.seed,
        args.input,
        "memory" if args.memory else "durable",
        args.shape,
        args.build_between_calls,
        args.reserve,
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


def _bench_shared(args: argparse.Namespace, engines: tuple[str, ...]) -> int:
    """`--processes N` or a PostgreSQL `--path`: processes posting into one ledger at once."""
    if args.memory:
        raise SystemExit("fastledger bench: error: --processes needs a durable ledger")
    packed = args.input == "packed"
    for engine in engines:
        location = _bench_directory(args.path, engine, len(engines))
        try:
            report = bench_processes(
                str(location),
                engine=engine,
                processes=args.processes,
                threads=1 if packed else args.threads,
                packed=packed,
                transfers_each=args.transfers // args.processes,
                accounts=args.accounts,
                batch_size=args.batch_size,
                reserve=args.reserve,
            )
            lag = sorted(bench_follower(str(location), engine=engine, batches=_FOLLOWER_BATCHES))
        finally:
            if args.path is None:
                shutil.rmtree(location, ignore_errors=True)
        calls = "packed batches" if packed else f"single transfers from {report.threads} threads"
        reserved = ", memory for the whole load reserved in each" if args.reserve else ""
        print(
            f"{engine}: {report.processes} processes posting {calls} into {location}{reserved}\n"
            f"  load accepted  {report.transfers_per_s:>12,.0f} transfers/s "
            f"({report.transfers:,} in {_duration(report.elapsed_ns)})\n"
            f"  call latency   p50 {_duration(report.percentile_ns(500))}, "
            f"p99 {_duration(report.percentile_ns(990))}, "
            f"p99.9 {_duration(report.percentile_ns(999))}, "
            f"max {_duration(max(report.latencies_ns))}\n"
            f"  follower lag   p50 {_duration(lag[len(lag) // 2])}, "
            f"p99 {_duration(lag[len(lag) * 99 // 100])}, max {_duration(lag[-1])} "
            f"({len(lag)} batches, one every 2 ms)"
        )
    return 0


def _bench_directory(chosen: Path | str | None, engine: str, engines: int) -> Path | str:
    """Where one engine's durable ledger is kept: a new temporary directory, or the directory
    or URL chosen (a subdirectory or table per engine when both are measured)."""
    if isinstance(chosen, str):
        if engines == 1:
            return chosen
        return f"{chosen}{'&' if '?' in chosen else '?'}table=bench_{engine}"
    if chosen is None:
        return Path(tempfile.mkdtemp(prefix=f"fastledger-bench-{engine}-"))
    path = chosen / engine if engines > 1 else chosen
    if path.exists() and any(path.iterdir()):
        raise SystemExit(f"fastledger bench: error: {path} is not empty; choose a new directory")
    return path


def _describe(config: _BenchConfig) -> str:
    threads = "1 thread" if config.threads == 1 else f"{config.threads} threads"
    pace = "each built before its call" if config.build_between_calls else "back to back"
    reserved = ", memory reserved" if config.reserve else ""
    return (
        f"fastledger bench: {config.accounts:,} accounts, {config.transfers:,} transfers "
        f"({config.shape}) in batches of {config.batch_size:,} ({config.input}, {pace}), "
        f"{threads}, seed {config.seed}, "
        f"{'in memory' if config.storage == 'memory' else 'durable (fsync per batch)'}"
        f"{reserved}\n"
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs\n"
    )


def _run_engine(ledger: Ledger, config: _BenchConfig) -> _EngineReport:
    progress = ProgressLine(ledger.engine, sys.stderr)
    progress.say(f"creating {config.accounts:,} accounts")
    _create_accounts(ledger, config.accounts)
    singles = _single_transfers(config, config.transfers + 1)
    loaded = _loaded_load(config, config.transfers + _SAMPLES + 1)
    loaded_singles = _single_transfers(config, config.transfers + _SAMPLES + 1)
    reserve = partial(_reserve, ledger, config, config.transfers)
    load = _post_load(ledger, config, progress, reserve if config.reserve else None)
    load_ns, batch_latencies, rss_added, reserve_ns = load
    progress.say(f"sampling {_SAMPLES:,} single transfers and queries of each kind")
    transfers = _latencies(ledger.create_transfers, singles)
    progress.say(f"sampling single transfers while another thread posts {loaded.transfers:,}")
    if config.reserve:
        _reserve(ledger, config, _SAMPLES + loaded.transfers)
    under_load, background_ns = _latencies_under_load(ledger, loaded_singles, loaded.batches)
    _check_singles_created(ledger, [*singles, *loaded_singles[: len(under_load)]])
    rng = random.Random(config.seed + 1)
    ids = [[_random_account(rng, config)] for _ in range(_SAMPLES)]
    lookups = _latencies(ledger.lookup_accounts, ids)
    filters = [
        AccountFilter(account_id=_random_account(rng, config), limit=_QUERY_LIMIT)
        for _ in range(_SAMPLES)
    ]
    queries = _latencies(ledger.get_account_transfers, filters)
    return _EngineReport(
        engine=ledger.engine,
        load_accepted_transfers_per_s=_per_s(config.transfers, load_ns),
        load_ns=load_ns,
        reserve_ns=reserve_ns,
        batch_latency_ns_p50=_percentile(batch_latencies, 500),
        batch_latency_ns_p99=_percentile(batch_latencies, 990),
        batch_latency_ns_p999=_percentile(batch_latencies, 999),
        batch_latency_ns_max=max(batch_latencies),
        rss_bytes_per_transfer=max(rss_added, 0) // config.transfers,
        transfer_latency_ns_p50=_percentile(transfers, 500),
        transfer_latency_ns_p99=_percentile(transfers, 990),
        transfer_latency_ns_p999=_percentile(transfers, 999),
        transfer_latency_ns_max=max(transfers),
        loaded_transfer_latency_ns_p50=_percentile(under_load, 500),
        loaded_transfer_latency_ns_p99=_percentile(under_load, 990),
        loaded_transfer_latency_ns_p999=_percentile(under_load, 999),
        loaded_transfer_latency_ns_max=max(under_load),
        loaded_background_transfers_per_s=_per_s(loaded.transfers, background_ns),
        lookup_accounts_latency_ns_p50=_percentile(lookups, 500),
        lookup_accounts_latency_ns_p99=_percentile(lookups, 990),
        get_account_transfers_latency_ns_p50=_percentile(queries, 500),
        get_account_transfers_latency_ns_p99=_percentile(queries, 990),
    )


def _per_s(count: int, ns: int) -> int:
    return count * _NS_PER_S // max(ns, 1)


def _create_accounts(ledger: Ledger, count: int) -> None:
    for first in range(1, count + 1, BATCH_MAX):
        ids = range(first, min(first + BATCH_MAX, count + 1))
        results = ledger.create_accounts([Account(id=i, ledger=1, code=1) for i in ids])
        failed = [r for r in results if r.status is not CreateAccountStatus.CREATED]
        if failed:
            raise _BenchError(f"creating accounts failed: {failed[0].status.name}")


def _reserve(ledger: Ledger, config: _BenchConfig, transfers: int) -> None:
    """Maps the memory of `transfers` more transfers of the load's shape now: the index of ids
    out of order only for random ids, as a service that knows its ids would."""
    ledger.reserve_transfers(transfers, ids_in_order=config.shape != "random-ids")


# -- bench load ------------------------------------------------------------------------------


def _random_account(rng: random.Random, config: _BenchConfig) -> int:
    return 1 + int(rng.random() * config.accounts)


def _hot_move(rng: random.Random, accounts: int) -> tuple[int, int, int]:
    """As `random_move`, but debiting one of the first `_HOT_ACCOUNTS` accounts in
    `_HOT_SHARE` of transfers, as a merchant's or a settlement account is."""
    debit, credit, amount = random_move(rng, accounts)
    hot = min(_HOT_ACCOUNTS, accounts - 1)
    if rng.random() < _HOT_SHARE:
        debit = 1 + int(rng.random() * hot)
        if credit == debit:
            credit = hot + 1 + int(rng.random() * (accounts - hot))
    return debit, credit, amount


def _random_id(rng: random.Random) -> int:
    """A random 128-bit id, never 0 nor the largest (both are refused)."""
    return 1 + rng.getrandbits(128) % ((1 << 128) - 2)


def _shaped_batch(rng: random.Random, shape: str, ids: range, accounts: int) -> list[Transfer]:
    """The transfers of one batch of `shape`, taking the places `ids` in the load."""
    if shape == "two-phase":
        return _two_phase_batch(rng, ids, accounts)
    move = _hot_move if shape == "hot-accounts" else random_move
    transfers = []
    for place in ids:
        id_ = _random_id(rng) if shape == "random-ids" else place
        debit, credit, amount = move(rng, accounts)
        transfers.append(
            Transfer(id_, debit, credit, amount, ledger=1, code=1),
        )
    return transfers


def _two_phase_batch(rng: random.Random, ids: range, accounts: int) -> list[Transfer]:
    """Pending transfers, then the posts of as many of them (of the full amount, with the
    accounts, ledger and code left to the pending transfer): an odd batch leaves one pending."""
    posts = len(ids) // 2
    pending = [
        Transfer(id_, *random_move(rng, accounts), ledger=1, code=1, flags=TransferFlags.PENDING)
        for id_ in ids[: len(ids) - posts]
    ]
    post = TransferFlags.POST_PENDING_TRANSFER
    return pending + [
        Transfer(id_, amount=p.amount, pending_id=p.id, flags=post)
        for id_, p in zip(ids[len(ids) - posts :], pending, strict=False)
    ]


def _transfer_batches(config: _BenchConfig, first: int = 1, count: int = 0) -> Iterator[_Batch]:
    """The load (or `count` transfers of its shape from place `first` on), one batch at a
    time: each is built when the loop asks for it. Packed batches hold the same transfers as
    objects would."""
    rng = random.Random(config.seed + first - 1)
    end = first + (count or config.transfers)
    for start in range(first, end, config.batch_size):
        ids = range(start, min(start + config.batch_size, end))
        transfers = _shaped_batch(rng, config.shape, ids, config.accounts)
        yield _packed_batch(transfers) if config.input == "packed" else transfers


def _packed_batch(transfers: list[Transfer]) -> bytes:
    """`transfers`, packed. With NumPy they are packed from columns (`transfers_from_columns`),
    as a service that posts packed batches would build them: in a quarter of the time of
    packing objects. Without NumPy they are packed from the objects."""
    try:
        import numpy as np
    except ImportError:
        return pack_transfers(transfers)
    fields = ("debit_account_id", "credit_account_id", "amount", "pending_id", "flags")
    columns = {f: np.array([getattr(t, f) for t in transfers], dtype=np.uint64) for f in fields}
    ids = np.array([(t.id & _U64_MASK, t.id >> 64) for t in transfers], dtype=np.uint64)
    batch = transfers_from_columns(
        id=ids.reshape(-1, 2),
        **columns,
        ledger=np.array([t.ledger for t in transfers], dtype=np.uint32),
        code=np.array([t.code for t in transfers], dtype=np.uint16),
    )
    return batch.tobytes()


def _post_load(
    ledger: Ledger,
    config: _BenchConfig,
    progress: ProgressLine,
    reserve: Callable[[], None] | None,
) -> tuple[int, list[int], int, int]:
    """Posts the load, after `reserve` if any; returns the time spent posting, the latency of
    each batch, the bytes of RSS that the load (with its reservation) added, and the time the
    reservation took (times in ns)."""
    batches = None
    if not config.build_between_calls:
        say = f"building {config.transfers:,} transfers in batches of {config.batch_size:,}"
        progress.say(say)
        batches = list(_transfer_batches(config))
    rss_before = _rss_bytes()
    reserve_ns = 0
    if reserve is not None:
        start = time.perf_counter_ns()
        reserve()
        reserve_ns = time.perf_counter_ns() - start
    progress.start(config.transfers)
    if batches is None:
        load_ns, latencies = _post_building_between_calls(ledger, config, progress)
    elif config.threads == 1:
        progress.say(f"posting {config.transfers:,} transfers back to back")
        load_ns, latencies = _post_back_to_back(ledger, batches, progress)
    else:
        progress.say(f"posting {config.transfers:,} transfers back to back")
        load_ns, latencies = _post_from_threads(ledger, batches, config.threads, progress)
    # Measured while the batches are still held, so that freeing them does not count.
    return load_ns, latencies, _rss_bytes() - rss_before, reserve_ns


def _post_back_to_back(
    ledger: Ledger, batches: Sequence[_Batch], progress: ProgressLine | None = None
) -> tuple[int, list[int]]:
    """Posts ready batches one after the other; returns the wall time and each latency."""
    latencies = []
    start = time.perf_counter_ns()
    for batch in batches:
        latency, results = _timed_post(ledger, batch)
        latencies.append(latency)
        _check_created(results)
        if progress is not None:
            progress.advance(len(results))
    return time.perf_counter_ns() - start, latencies


def _post_from_threads(
    ledger: Ledger, batches: list[_Batch], threads: int, progress: ProgressLine
) -> tuple[int, list[int]]:
    """Posts ready batches from `threads` threads at once, each taking every `threads`th
    batch back to back; returns the wall time and each latency."""
    shares = [batches[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench") as pool:
        start = time.perf_counter_ns()
        outcomes = list(pool.map(partial(_post_back_to_back, ledger), shares))
        elapsed_ns = time.perf_counter_ns() - start
    latencies = [latency for _, latencies in outcomes for latency in latencies]
    progress.advance(progress.total)
    return elapsed_ns, latencies


def _post_building_between_calls(
    ledger: Ledger, config: _BenchConfig, progress: ProgressLine
) -> tuple[int, list[int]]:
    """Posts the load building each batch (each round of one batch per thread) just before
    its call; returns the time spent in the calls (the wall time of the rounds) and each
    latency. The engine does its background work while the next batch is built, so this
    shows less of what it costs than posting ready batches back to back does."""
    batches = _transfer_batches(config)
    if config.threads == 1:
        latencies = []
        for batch in batches:
            latency, results = _timed_post(ledger, batch)
            _check_created(results)
            latencies.append(latency)
            progress.advance(len(results))
        return sum(latencies), latencies
    elapsed_ns = 0
    latencies = []
    with ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="bench") as pool:
        while round_ := list(islice(batches, config.threads)):
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
    # Counted by C loops: a loop in Python over the results took a fifth of the time of a
    # batch of objects on the Rust engine.
    statuses = list(map(_status_of, results))
    if statuses.count(CreateTransferStatus.CREATED) == len(statuses):
        return
    failed = next(s for s in statuses if s != CreateTransferStatus.CREATED)
    raise _BenchError(f"a transfer of the benchmark was not created: {failed.name}")


def _rss_bytes() -> int:
    """The memory of this process resident in RAM, from /proc where there is one; elsewhere
    its peak so far (which a load that grows it measures as well), or 0 if unknown."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        pass
    try:
        import resource
    except ImportError:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux and most others count kibibytes; macOS counts bytes.
    return peak if sys.platform == "darwin" else peak * 1024


# -- bench samples ---------------------------------------------------------------------------


def _single_transfers(config: _BenchConfig, first: int) -> list[list[Transfer]]:
    """`_SAMPLES` single-transfer batches of the load's shape (a pending transfer, for the
    two-phase shape), taking the places from `first` on."""
    shape = "sequential" if config.shape == "two-phase" else config.shape
    rng = random.Random(config.seed + first)
    ids = range(first, first + _SAMPLES)
    return [[t] for t in _shaped_batch(rng, shape, ids, config.accounts)]


@dataclass(frozen=True, slots=True)
class _LoadedLoad:
    """The packed batches that another thread posts while single calls are timed."""

    transfers: int
    batches: list[_Batch]


def _loaded_load(config: _BenchConfig, first: int) -> _LoadedLoad:
    """Packed batches of the load's shape, up to `_LOADED_TRANSFERS_MAX` transfers, taking
    the places after `first` and the single calls timed beside them: while ids ascend, the
    single calls then come before the other thread's in the order of ids, and leave its ids in
    order."""
    count = min(config.transfers, _LOADED_TRANSFERS_MAX)
    packed = dataclasses.replace(config, input="packed")
    return _LoadedLoad(count, list(_transfer_batches(packed, first + _SAMPLES, count)))


def _latencies_under_load(
    ledger: Ledger, singles: Sequence[list[Transfer]], batches: Sequence[_Batch]
) -> tuple[list[int], int]:
    """Times single-transfer calls, at least one, a pause apart, while another thread posts
    `batches` back to back; returns their latencies and the other thread's time."""
    done = threading.Event()
    outcome: list[int | BaseException] = []

    def post() -> None:
        try:
            outcome.append(_post_back_to_back(ledger, batches)[0])
        except BaseException as error:
            outcome.append(error)
        finally:
            done.set()

    thread = threading.Thread(target=post, name="bench-load")
    thread.start()
    latencies = []
    for single in singles:
        start = time.perf_counter_ns()
        ledger.create_transfers(single)
        latencies.append(time.perf_counter_ns() - start)
        if done.is_set():
            break
        time.sleep(_LOADED_CALL_INTERVAL_S)
    thread.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return latencies, outcome[0]


def _check_singles_created(ledger: Ledger, singles: Sequence[list[Transfer]]) -> None:
    ids = [single[0].id for single in singles]
    found = sum(
        len(ledger.lookup_transfers(ids[i : i + BATCH_MAX])) for i in range(0, len(ids), BATCH_MAX)
    )
    if found != len(ids):
        raise _BenchError("a single transfer of the benchmark was not created")


def _latencies(call: Callable[[_A], object], arguments: Sequence[_A]) -> list[int]:
    """The time of `call` on each argument, in ns; the arguments are built beforehand."""
    latencies = []
    for argument in arguments:
        start = time.perf_counter_ns()
        call(argument)
        latencies.append(time.perf_counter_ns() - start)
    return latencies


def _percentile(values: list[int], per_mille: int) -> int:
    """The nearest-rank percentile, given in per mille (990 is p99, 999 p99.9)."""
    ordered = sorted(values)
    rank = -(-len(ordered) * per_mille // 1000)
    return ordered[max(rank, 1) - 1]


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


def _spread(r: _EngineReport, prefix: str) -> str:
    """The p50, p99, p99.9 and max of the latencies named `prefix`."""
    d, get = _duration, partial(getattr, r)
    return (
        f"p50 {d(get(f'{prefix}_p50'))}  p99 {d(get(f'{prefix}_p99'))}  "
        f"p99.9 {d(get(f'{prefix}_p999'))}  max {d(get(f'{prefix}_max'))}"
    )


def _print_report(r: _EngineReport) -> None:
    d = _duration
    rows = (
        (
            "load accepted",
            f"{r.load_accepted_transfers_per_s:,} transfers/s (posting took {d(r.load_ns)})",
        ),
        ("batch latency", _spread(r, "batch_latency_ns")),
        *([("memory reserved before the clock", f"in {d(r.reserve_ns)}")] if r.reserve_ns else []),
        ("memory added by the load", f"{r.rss_bytes_per_transfer:,} bytes of RSS per transfer"),
        ("single-transfer latency", _spread(r, "transfer_latency_ns")),
        ("single-transfer latency, under load", _spread(r, "loaded_transfer_latency_ns")),
        (
            "  the other thread's load",
            f"{r.loaded_background_transfers_per_s:,} transfers/s in packed batches",
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
        print(f"  {label:<37}{figures}")
    print()


def _speedup(fast: _EngineReport, slow: _EngineReport) -> dict[str, float]:
    """How many times better `fast` is than `slow` on each figure: a higher rate or a lower
    latency (or memory) both give a ratio above 1."""
    ratios = {}
    for field in dataclasses.fields(_EngineReport):
        if field.name in ("engine", "load_ns", "reserve_ns"):
            continue
        mine, theirs = getattr(fast, field.name), getattr(slow, field.name)
        higher_is_better = field.name.endswith("_per_s")
        better, worse = (mine, theirs) if higher_is_better else (theirs, mine)
        ratios[field.name] = round(better / max(worse, 1), 2)
    return ratios


def _print_speedup(rust: _EngineReport, python: _EngineReport) -> None:
    print("rust over python (times higher throughput, or times lower latency or memory)")
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
