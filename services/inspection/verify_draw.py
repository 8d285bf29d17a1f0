"""Re-run a published random draw from its record alone, with nothing but Python 3.11.

    python services/inspection/verify_draw.py record.json     # a file saved from GetDraw
    python services/inspection/verify_draw.py - < record.json

The record is GetDraw's `record_json` (public): the committed pool, its hash, the revealed
seed value, the recusals and the published result. The script checks that the pool hashes
to the commitment, re-runs the draw (algorithm in domain/draw.py, loaded from this file's
folder by path: no vocreg package, no third-party library) and compares every inspection,
team and ticket. Exit status 0 when the draw verifies, 1 when it does not, 2 on bad input.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path


def load_algorithm():
    path = Path(__file__).resolve().parent / "domain" / "draw.py"
    spec = importlib.util.spec_from_file_location("vocreg_draw", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        text = sys.stdin.read() if argv[0] == "-" else Path(argv[0]).read_text(encoding="utf-8")
        record = json.loads(text)
        for key in ("record_json", "recordJson"):  # GetDraw's whole answer (grpcurl: camel)
            if key in record:
                record = json.loads(record[key])
    except (OSError, ValueError) as exc:
        print(f"cannot read the record: {exc}", file=sys.stderr)
        return 2
    draw = load_algorithm()
    problems = draw.verify(record, pause=lambda _seconds: None)
    pool = record.get("pool") or {}
    drawn = (record.get("result") or {}).get("drawn") or []
    print(f"draw {pool.get('draw_id')} ({record.get('algorithm_version')}), pool hash "
          f"{record.get('pool_hash')}, seed source {record.get('seed_source')!r}, "
          f"seed {record.get('seed_value')!r}: {len(drawn)} inspections")
    if problems:
        for problem in problems:
            print(f"NOT VERIFIED: {problem}")
        return 1
    print("VERIFIED: the pool matches its commitment and the draw gives the published result")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
