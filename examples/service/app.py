"""A small payments service: one ledger shared by every worker of a web server.

Run it with several workers; each opens the same ledger when it starts, after the server has
made the worker process, and any of them may post:

    FASTLEDGER_PATH=./ledger uvicorn app:app --workers 4 --app-dir examples/service
    FASTLEDGER_PATH=postgresql://app@db/ledger uvicorn app:app --workers 4 ...

    curl -X POST localhost:8000/accounts -d '{"id": 1}'
    curl -X POST localhost:8000/accounts -d '{"id": 2}'
    curl -X POST localhost:8000/transfers -d '{"id": 10, "from": 1, "to": 2, "amount": 500}'
    curl localhost:8000/accounts/2

A read reflects every transfer any worker acknowledged before it, so a client that posted
through one worker sees its transfer through any other. Amounts are integers in minor units.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fastledger import Account, AsyncLedger, Transfer

LEDGER = 1  # one currency
CODE = 1  # one kind of movement


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # Opened in each worker, never before the fork: a ledger's threads do not survive one.
    app.state.ledger = await AsyncLedger.open(os.environ.get("FASTLEDGER_PATH", "./ledger"))
    try:
        yield
    finally:
        await app.state.ledger.close()


def ledger_of(request: Request) -> AsyncLedger:
    ledger: AsyncLedger = request.app.state.ledger
    return ledger


async def create_account(request: Request) -> JSONResponse:
    body: dict[str, Any] = await request.json()
    account = Account(id=int(body["id"]), ledger=LEDGER, code=CODE)
    [result] = await ledger_of(request).create_accounts([account])
    return JSONResponse({"status": result.status.name, "worker": os.getpid()})


async def create_transfer(request: Request) -> JSONResponse:
    body: dict[str, Any] = await request.json()
    transfer = Transfer(
        id=int(body["id"]),
        debit_account_id=int(body["from"]),
        credit_account_id=int(body["to"]),
        amount=int(body["amount"]),
        ledger=LEDGER,
        code=CODE,
    )
    [result] = await ledger_of(request).create_transfers([transfer])
    created = result.status.name == "CREATED"
    return JSONResponse(
        {"status": result.status.name, "worker": os.getpid()}, status_code=201 if created else 422
    )


async def get_account(request: Request) -> JSONResponse:
    accounts = await ledger_of(request).lookup_accounts([int(request.path_params["id"])])
    if not accounts:
        return JSONResponse({"error": "no such account", "worker": os.getpid()}, status_code=404)
    account = accounts[0]
    return JSONResponse(
        {
            "id": account.id,
            "debits_posted": account.debits_posted,
            "credits_posted": account.credits_posted,
            "balance": account.credits_posted - account.debits_posted,
            "worker": os.getpid(),
        }
    )


app = Starlette(
    routes=[
        Route("/accounts", create_account, methods=["POST"]),
        Route("/accounts/{id:int}", get_account),
        Route("/transfers", create_transfer, methods=["POST"]),
    ],
    lifespan=lifespan,
)
