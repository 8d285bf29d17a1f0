"""`vocreg doctor`: checks a deployment, one line per check with a fix (services/cli/doctor.py)."""
from __future__ import annotations

import json

from services.cli import doctor
from services.cli.commands import bi, command
from services.cli.exits import Exit

SERVICE = None

MARKS = {doctor.OK: "[green]ok  [/]", doctor.WARN: "[yellow]warn[/]",
         doctor.FAIL: "[bold red]FAIL[/]", doctor.SKIP: "[dim]skip[/]"}


def register(subparsers) -> None:
    p = command(subparsers, "doctor", "诊断部署: 入口、各服务、消息总线、数据库、监控指标、令牌",
                "check a deployment: edge, every worker, broker, database, metrics, token",
                run_doctor)
    p.add_argument("--amqp-uri", metavar="URI",
                   help=bi("消息总线地址", "the broker") + " (AMQP_URI; amqp://guest:guest@localhost:5672/)")
    p.add_argument("--mongo-uri", metavar="URI",
                   help=bi("数据库地址", "the database") + " (MONGO_URI; the local server)")
    p.add_argument("--metrics", action="append", metavar="NAME=URL",
                   help=bi("要检查的监控端点 (可重复)", "a /metrics endpoint to check (repeat it)") +
                   "; default: the edge on 9100 and each worker on its declared port")
    p.add_argument("--no-infrastructure", action="store_true",
                   help=bi("不直接检查消息总线和数据库 (本机无法访问时)",
                           "skip the broker and database checks (not reachable from here)"))
    p.add_argument("--json", action="store_true", help=bi("以 JSON 输出", "print JSON"))


def run_doctor(ctx, args) -> Exit:
    checks = doctor.run(ctx.api, ctx.settings, infrastructure=not args.no_infrastructure)
    failed = any(c.status == doctor.FAIL for c in checks)
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], ensure_ascii=False, indent=2),
              file=ctx.stdout)
    else:
        out = ctx.stdout_console
        for c in checks:
            line = f"{MARKS[c.status]} [bold]{_escape(c.name)}[/]: {_escape(c.detail)}"
            if c.fix and c.status in (doctor.FAIL, doctor.WARN):
                line += f" [cyan]— fix: {_escape(c.fix)}[/]"
            out.print(line, soft_wrap=True)
        out.print(f"{sum(c.status == doctor.FAIL for c in checks)} failed, "
                  f"{sum(c.status == doctor.WARN for c in checks)} warnings, "
                  f"{sum(c.status == doctor.OK for c in checks)} ok")
    return Exit.UNHEALTHY if failed else Exit.OK


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
