"""The peer of `bench/api_load.py`: the ingestion endpoint as it is usually first written.

FastAPI with a pydantic model per record (prices as `Decimal`, so they stay exact), an API
key compared against a set, and each request's records appended to a file and fsynced
before the answer — durable, like ours, but one fsync per request and FastAPI's routing
and validation on every call. No contract rules, no idempotency, no rate limits, no
ingestion into tables: it does less than `digital-finance serve`, so it is a generous peer.

    python bench/peers/naive_api.py --port 8081 --key KEY --log /tmp/peer.log
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from decimal import Decimal
from typing import Annotated

import uvicorn
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel


class Stock(BaseModel):
    stock_id: int
    company_id: int
    symbol: str
    price: Decimal
    volume: int | None = None
    exchange: str | None = None
    currency: str = "USD"
    timestamp: str


def build(key: str, log_path: str) -> FastAPI:
    app = FastAPI()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    lock = threading.Lock()

    def durable(data: bytes) -> None:
        with lock:
            os.write(fd, data)
            os.fdatasync(fd)

    @app.post("/v1/events/stocks", status_code=202)
    def send(records: Stock | list[Stock], x_api_key: Annotated[str, Header()]) -> dict[str, int]:
        # a sync route: FastAPI runs it on its thread pool, as a blocking fsync must be
        if x_api_key != key:
            raise HTTPException(401, "bad key")
        batch = records if isinstance(records, list) else [records]
        durable(b"".join(json.dumps(r.model_dump(mode="json")).encode() + b"\n" for r in batch))
        return {"accepted": len(batch)}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    uvicorn.run(
        build(args.key, args.log), host="127.0.0.1", port=args.port, http="httptools",
        loop="uvloop", access_log=False, log_level="warning",
    )  # fmt: skip


if __name__ == "__main__":
    main()
