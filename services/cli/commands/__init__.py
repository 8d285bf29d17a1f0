"""The commands, one module per service (its reads) or per tool, found here at start.

A module declares `SERVICE` (the service's name in the registry; None for a tool such as
doctor) and `register(subparsers)`, which adds its commands with `command(...)` below; each
command is a function `(ctx, args) -> Exit`. A module whose service is not declared in this
installation is left out. A service that is declared but not deployed behind the edge answers
UNIMPLEMENTED, which every command reports as "the <service> service is not deployed at
<address>" (services/cli/client.py).

Adding a service's reads (grading, inspection, escrow, courses, reporting as they land): a
module `services/cli/commands/<service>.py` with SERVICE = "<service>" and its commands calling
`ctx.api.call("<service>", "<Rpc>", request)` and `output.emit_list` / `emit_one`, plus a test
in tests/e2e/test_cli.py. Nothing else lists it.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil

from services.cli.output import FORMATS
from services.common.spec import registry


def bi(zh: str, en: str) -> str:
    """Help text in both languages: Chinese first, then English."""
    return f"{zh} / {en}"


def bilingual(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """argparse's own words (the -h option, the section titles) in both languages too."""
    parser.add_argument("-h", "--help", action="help", help=bi("显示本帮助并退出", "show this help"))
    parser._positionals.title = bi("参数", "arguments")
    parser._optionals.title = bi("选项", "options")
    return parser


def connection_options(parser, suppress: bool = False) -> None:
    """The options every command takes, before or after the command's name (after it, they
    override the ones before)."""
    default = {"default": argparse.SUPPRESS} if suppress else {}
    options = parser.add_argument_group(bi("连接", "connection"))
    options.add_argument("--address", metavar="HOST:PORT", **default,
                         help=bi("平台 gRPC 入口地址", "the edge's address") +
                         " (VOCREG_ADDRESS; localhost:50051)")
    options.add_argument("--token", **default,
                         help=bi("访问令牌 (JWT)", "bearer token (JWT)") + " (VOCREG_TOKEN)")
    options.add_argument("--profile", **default,
                         help=bi("配置文件中的配置名", "profile in the profile file") +
                         " (VOCREG_PROFILE)")
    options.add_argument("--config", metavar="FILE", **default,
                         help=bi("配置文件", "profile file") +
                         " (VOCREG_CONFIG; ~/.config/vocreg/config.toml)")
    options.add_argument("--tls", action="store_true", **(default or {"default": None}),
                         help=bi("使用 TLS 连接", "connect with TLS"))
    options.add_argument("--ca-file", metavar="PEM", **default,
                         help=bi("信任的 CA 证书 (隐含 --tls)", "CA certificate to trust (implies --tls)"))
    options.add_argument("--timeout", type=float, metavar="SECONDS", **default,
                         help=bi("每次调用的超时 (默认 60 秒)", "deadline of each call (default 60 s)"))
    options.add_argument("--debug", action="store_true", **(default or {"default": False}),
                         help=bi("意外错误时显示调用栈", "show a traceback on an unexpected error"))


def command(subparsers, name: str, zh: str, en: str, run=None, *, epilog: str | None = None,
            aliases=()):
    parser = subparsers.add_parser(
        name, aliases=list(aliases), help=bi(zh, en), description=f"{zh}\n{en}", epilog=epilog,
        add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    bilingual(parser)
    if run is not None:
        connection_options(parser, suppress=True)
    if run is not None:
        parser.set_defaults(run=run)
    return parser


def group(subparsers, name: str, zh: str, en: str):
    """A command with subcommands (`vocreg certificates verify ...`)."""
    parser = command(subparsers, name, zh, en)
    sub = parser.add_subparsers(title=bi("命令", "commands"), metavar="COMMAND")
    parser.set_defaults(run=None, group_parser=parser)
    return sub


def add_output(parser) -> None:
    parser.add_argument("-o", "--output", choices=FORMATS, default="table",
                        help=bi("输出格式: 表格、JSON 或 CSV", "output: table, json or csv"))


def add_limit(parser, default: int = 100) -> None:
    parser.add_argument("--limit", type=int, default=default, metavar="N",
                        help=bi(f"最多显示 N 条 (默认 {default}; 0 为全部)",
                                f"at most N entries (default {default}; 0: all, page by page)"))


def enum_choices(service: str, enum: str) -> dict[str, str]:
    """A proto enum as command-line choices: `open` -> CASE_STATE_OPEN (UNSPECIFIED left out)."""
    from services.common.protos import service_proto

    proto = service_proto(service)  # the enum may be the service's or its events' (imported)
    described = proto.messages.DESCRIPTOR.pool.FindEnumTypeByName(f"{proto.package}.{enum}")
    names = [v.name for v in described.values if not v.name.endswith("_UNSPECIFIED")]
    prefix = described.values[0].name.removesuffix("UNSPECIFIED")
    return {name.removeprefix(prefix).lower(): name for name in names}


def modules():
    """The command modules whose service this installation declares (tools always)."""
    declared = registry()
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        service = getattr(module, "SERVICE", None)
        if service is None or service in declared:
            found.append(module)
    return found
