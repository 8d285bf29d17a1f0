"""A platform and a large sheet for trying `vocreg certificates upload` in a terminal (the bar,
Ctrl-C, the resume, the result file): too long for the test suite, which uploads 400 rows.

    .venv/bin/python -m tests.bench.cli_demo [--rows 10000] [--dir /tmp/vocreg-demo]

It starts a platform of its own (the filing and certificates workers and an edge on free
ports, a vhost of its own, the tests' database server), files one institution, writes
DIR/candidates.xlsx with Chinese headers, prints the commands to run in another terminal
(or a tmux pane), and keeps the platform until Ctrl-C.
"""
from __future__ import annotations

import argparse
import shlex
import signal
import time
from datetime import datetime
from pathlib import Path

from services.common.workdays import SHANGHAI
from tests import database
from tests.e2e.grpc_client import file_institution
from tests.platform import Platform
from tests.support import resident_id, token, uscc, write_xlsx

N = 901
HEADER = ["准考证号", "姓名", "身份证号", "职业编码", "职业名称", "等级"]


def write_sheet(path: Path, rows: int) -> Path:
    return write_xlsx(path, HEADER, ([f"T{i:05d}", "张三丰", resident_id(i), "4-10-01-02", "育婴员",
                                      "四级/中级工" if i % 2 else 4] for i in range(rows)),
                      title="考生")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.cli_demo")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--dir", default="/tmp/vocreg-demo")
    args = parser.parse_args()
    folder = Path(args.dir)
    (folder / "platform").mkdir(parents=True, exist_ok=True)
    plat = Platform(folder / "platform", services=("filing", "certificates")).start()
    try:
        file_institution(plat.channel, N)
        sheet = write_sheet(folder / "candidates.xlsx", args.rows)
        today = datetime.now(SHANGHAI).date().isoformat()
        print(f"institution {uscc(N)} filed; {args.rows} rows in {sheet}\n")
        print(f"export VOCREG_ADDRESS=localhost:{plat.grpc_port}")
        print(f"export VOCREG_TOKEN={token('institution', N)}")
        print(f".venv/bin/vocreg certificates upload {shlex.quote(str(sheet))} "
              f"--session DEMO-1 --assessment-date {today}")
        print(f".venv/bin/vocreg doctor --amqp-uri {plat.amqp_uri} --mongo-uri "
              f"{plat.mongo_uris['certificates']} "
              f"--metrics edge=http://localhost:{plat.edge_metrics_port}/metrics "
              + " ".join(f"--metrics {name}=http://localhost:{port}/metrics"
                         for name, port in plat.worker_metrics_ports.items()))
        print(f"\nworkers: {', '.join(plat.procs)}; logs in {folder / 'platform'}; "
              "Ctrl-C here stops the platform", flush=True)
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        while not stopping:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        plat.stop()
        database.stop_server()


if __name__ == "__main__":
    main()
