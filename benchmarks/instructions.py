"""Instructions per request that the package adds, counted by callgrind.

``python -m benchmarks.instructions [--database postgresql|sqlite|mariadb] [-n 200]``

Timings on a shared machine move with its load; the instructions a request
executes in the application process hardly do. This runs the benchmark's
own endpoints (benchmarks/views.py) in process, through Django's test
``Client``, under ``valgrind --tool=callgrind``, and counts the instructions
of ``n`` requests to each side:

- ``bare``: the undecorated view (the baseline);
- ``new``: the package's view with a fresh key per request;
- ``replay``: the package's view with a key already completed.

Every request carries the same headers (an ``Idempotency-Key`` too, which
the bare view ignores), so the sides differ only by what the package does.
Each measured block runs as a ctypes callback (the comparison function of
libc's ``lfind``): callgrind collects only inside ctypes' ``closure_fcn``,
which runs such callbacks (``--toggle-collect``), and writes one profile
per block (``--dump-after``),
so Django's start-up, the warm-up and the setup of the replayed keys are not
counted. The database's own process is not counted either (the server's
side is benchmarks/cpu.py's): what is counted is the application's Python,
Django, DRF and the driver's client side. ``PYTHONHASHSEED`` is fixed and
each block starts after a garbage collection. Over PostgreSQL a run's blocks
agree within 1%, but two runs' new-key sides were seen up to 3% apart (the
driver's work depends on how the server's answers arrive): compare cuts
smaller than that over several runs, or on SQLite, which has no wire.

It prints, per flavour, instructions per request on each side (the median
of its blocks) and what the package adds over ``bare``.
``--callgrind-dir`` keeps the profiles for ``callgrind_annotate``. The
scratch databases (their names contain
``bench``) are created and dropped by the run.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

FLAVOURS = ("django", "drf-token")
SIDES = ("bare", "new", "replay")
WARM = 30
ROUNDS = 8  # blocks per side, interleaved, so no side always runs first


# ----------------------------------------------------------------- the child


def _measured(block: Callable[[], None]) -> None:
    """Run ``block`` as a ctypes callback: the span callgrind counts."""
    libc = ctypes.CDLL(None)
    compare_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
    raised: list[BaseException] = []

    def compare(_a: int | None, _b: int | None) -> int:
        try:
            block()
        except BaseException as error:  # ctypes would print it and go on
            raised.append(error)
        return 0

    callback = compare_type(compare)
    key = ctypes.c_int(0)
    items = (ctypes.c_int * 1)(0)
    count = ctypes.c_size_t(1)
    libc.lfind.restype = ctypes.c_void_p
    libc.lfind(ctypes.byref(key), items, ctypes.byref(count), ctypes.sizeof(ctypes.c_int), callback)
    if raised:
        raise raised[0]


def child(n: int, flavours: list[str], labels_path: Path) -> None:
    import django

    django.setup()
    from django.test import Client

    from benchmarks.harness import AUTHORIZATION, BODY
    from benchmarks.scenarios import FLAVOURS as PATHS

    client = Client(HTTP_AUTHORIZATION=AUTHORIZATION)
    body = json.dumps(BODY)
    counter = iter(range(10**9))

    def post(path: str, key: str, replayed: bool) -> None:
        response = client.post(path, body, content_type="application/json",
                               HTTP_IDEMPOTENCY_KEY=key)  # fmt: skip
        if response.status_code != 201:
            raise RuntimeError(f"{path}: HTTP {response.status_code}, expected 201")
        if (response.get("Idempotent-Replayed") == "true") != replayed:
            raise RuntimeError(f"{path}: replayed is not {replayed}")

    def fresh() -> str:
        return f"instructions-{next(counter):08d}"

    per_block = max(n // ROUNDS, 1)
    blocks: dict[str, dict[str, Any]] = {}
    for flavour in flavours:
        bare, idem = PATHS[flavour]
        for _ in range(WARM):
            post(bare, fresh(), False)
            key = fresh()
            post(idem, key, False)
            post(idem, key, True)
        blocks[flavour] = {"bare": bare, "idem": idem}
    labels: list[str] = []
    for _ in range(ROUNDS):
        for flavour in flavours:
            bare, idem = blocks[flavour]["bare"], blocks[flavour]["idem"]
            done = [fresh() for _ in range(per_block)]
            for key in done:
                post(idem, key, False)
            sides = {
                "bare": [(bare, fresh(), False) for _ in range(per_block)],
                "new": [(idem, fresh(), False) for _ in range(per_block)],
                "replay": [(idem, key, True) for key in done],
            }
            for side in SIDES:
                requests = sides[side]
                gc.collect()  # each block starts with the same garbage: none
                _measured(lambda requests=requests: [post(*r) for r in requests] and None)
                labels.append(f"{flavour} {side} {len(requests)}")
    labels_path.write_text(json.dumps(labels))


# ---------------------------------------------------------------- the parent


def _totals(directory: Path, pid: int) -> list[int]:
    """Instructions of each dump, in the order written."""
    found = []
    for path in directory.glob(f"callgrind.out.{pid}.*"):
        number = int(path.name.rsplit(".", 1)[1])
        text = path.read_text(errors="replace")
        match = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.MULTILINE)
        found.append((number, int(match.group(1)) if match else 0))
    return [total for _, total in sorted(found)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    from benchmarks import db

    out = Path(args.callgrind_dir or tempfile.mkdtemp(prefix="idempotency-instructions-"))
    out.mkdir(parents=True, exist_ok=True)
    labels_path = out / "labels.json"
    db.create()
    from django.db import connections

    connections.close_all()
    try:
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        command = [
            "valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=closure_fcn",
            "--dump-after=closure_fcn", f"--callgrind-out-file={out}/callgrind.out.%p",
            sys.executable, "-m", "benchmarks.instructions", "--child", "-n", str(args.n),
            "--labels", str(labels_path), "--flavours", *args.flavours,
        ]  # fmt: skip
        process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        _, stderr = process.communicate()
        if process.returncode != 0:
            sys.stderr.write(stderr[-5000:])
            raise SystemExit(f"the measured process failed ({process.returncode})")
        labels = json.loads(labels_path.read_text())
        totals = _totals(out, process.pid)
    finally:
        db.drop()
        if not args.callgrind_dir:
            shutil.rmtree(out, ignore_errors=True)
    if len(totals) != len(labels):
        raise SystemExit(f"{len(totals)} profiles for {len(labels)} blocks")
    counted: dict[str, dict[str, list[float]]] = {}
    for label, total in zip(labels, totals, strict=True):
        flavour, side, requests = label.split()
        counted.setdefault(flavour, {}).setdefault(side, []).append(total / int(requests))
    result: dict[str, Any] = {}
    for flavour, sides in counted.items():
        # The median block: a block that met a full garbage collection, or
        # the first one after the warm-up, does not move it.
        per_request = {side: statistics.median(values) for side, values in sides.items()}
        result[flavour] = {
            **{side: round(value) for side, value in per_request.items()},
            "new added": round(per_request["new"] - per_request["bare"]),
            "replay added": round(per_request["replay"] - per_request["bare"]),
            "blocks": {side: [round(v) for v in values] for side, values in sides.items()},
        }
    return result


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--database", choices=["postgresql", "mariadb", "sqlite"],
                        default="postgresql")  # fmt: skip
    parser.add_argument("-n", type=int, default=200, help="requests per side and flavour")
    parser.add_argument("--flavours", nargs="+", choices=FLAVOURS, default=list(FLAVOURS))
    parser.add_argument("--db-name", default="idempotency_bench_instructions")
    parser.add_argument("--callgrind-dir", help="keep the profiles here")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--labels", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.child:
        child(args.n, args.flavours, args.labels)
        return 0
    scratch = tempfile.mkdtemp(prefix="idempotency-instructions-db-")
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        "BENCH_DATABASE": args.database,
        "BENCH_DB_NAME": args.db_name,
        "BENCH_SQLITE_DIR": scratch,
        "BENCH_STORE": "database",
    })  # fmt: skip
    from benchmarks.db import check_scratch_name

    check_scratch_name(args.db_name)
    import django

    django.setup()
    try:
        result = run(args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"instructions per request, {args.database}, callgrind, {args.n} requests per side")
    print(f"{'flavour':<10} {'bare':>10} {'new':>10} {'replay':>10} {'new added':>10} "
          f"{'replay added':>13}")  # fmt: skip
    for flavour, row in result.items():
        print(f"{flavour:<10} {row['bare']:>10,} {row['new']:>10,} {row['replay']:>10,} "
              f"{row['new added']:>10,} {row['replay added']:>13,}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
