"""Run the Python reference on the first N non-blank lines and compare with the Rust TSVs."""
import sys
from datetime import UTC, datetime, timedelta
from digital_finance.contract.reference import check_record, Accepted
from digital_finance.contract.schemas import STOCKS

path = sys.argv[2] if len(sys.argv) > 2 else "/work/main/.cache/bench/data-s1000000-f100000-seed42/stocks/part-00000.jsonl"
n = int(sys.argv[1])
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
data = open(path, "rb").read()
if data.startswith(b"\xef\xbb\xbf"):
    data = data[3:]
ref = {}
raw_of = {}
for no, line in enumerate(data.split(b"\n"), 1):
    if line.endswith(b"\r"):
        line = line[:-1]
    if not line.strip(b" \t\r\x0b\x0c"):
        continue
    if len(ref) >= n:
        break
    raw_of[no] = line
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        ref[no] = ("invalid_utf8", "", "", "")
        continue
    r = check_record(text, STOCKS)
    if isinstance(r, Accepted):
        v = r.values
        ref[no] = ("ok", str(v["stock_id"]), str(int(v["price"].scaleb(6))),
                   str((v["event_time"] - EPOCH) // timedelta(microseconds=1)))
    else:
        ref[no] = (r.reason, "", "", "")
for name in ("scanner", "serde_json"):
    agree = dis = 0
    for row in open(f"/tmp/rustkernel/out_{name}.tsv"):
        no, *rest = row.rstrip("\n").split("\t")
        no = int(no)
        if no not in ref:
            break
        if tuple(rest) == ref[no]:
            agree += 1
        else:
            dis += 1
            if dis <= 10:
                print(f"  {name} line {no}: rust={rest} ref={ref[no]} :: {raw_of[no][:200]!r}")
    print(f"{name}: {agree} agree, {dis} disagree (of {len(ref)})")
