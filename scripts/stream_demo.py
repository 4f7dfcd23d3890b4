"""The streaming demo: a local Kafka broker, generated events on it, `stream --once`, the tables.

    make stream-demo            # or: .venv/bin/python scripts/stream_demo.py

Starts a single-node Kafka (KRaft, the jars `make setup` fetched) on a free loopback port
with its data in a temporary folder, produces 200,000 generated stock events and 20,000
fund holdings (the contract's duplicates and bad records included) to the topics `stocks`
and `mutual_funds`, streams them into `lakehouse-stream/` with
`digital-finance stream --source kafka --once`, prints the tables, and stops the broker.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.services import kafka  # noqa: E402
from tests.streaming.messages import messages, produce  # noqa: E402


def main() -> int:
    from digital_finance.generate import generate

    with tempfile.TemporaryDirectory(prefix="digital-finance-demo-") as temp:
        work = Path(temp)
        print("starting a local Kafka broker (KRaft) ...", flush=True)
        broker = kafka.start(work / "kafka")
        try:
            for topic in ("stocks", "mutual_funds"):
                broker.create_topic(topic, partitions=4)
            generate(work / "data", 200_000, 20_000, seed=7)
            events = messages(work / "data")
            clock = time.perf_counter()
            produce(broker.bootstrap, events)
            print(
                f"produced {len(events):,} events to {broker.bootstrap} in "
                f"{time.perf_counter() - clock:.1f} s",
                flush=True,
            )
            cli = [str(ROOT / ".venv" / "bin" / "digital-finance")]
            done = subprocess.run(
                [*cli, "stream", "--source", "kafka", "--bootstrap-servers", broker.bootstrap,
                 "--once", "--output", "lakehouse-stream"],
                check=False,
            )  # fmt: skip
            if done.returncode != 0:
                return done.returncode
            subprocess.run([*cli, "tables", "--output", "lakehouse-stream"], check=False)
        finally:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
