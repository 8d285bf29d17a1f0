"""`vocreg`: parse, resolve the configuration, run one command, exit with its code.

SIGTERM is handled as Ctrl-C: a command stops where it is (a call under way is cancelled; an
upload keeps its state as of its last finished batch) and exits 130.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from functools import cached_property

from rich.console import Console

from services.cli import commands, config
from services.cli.client import Api, on_signal
from services.cli.commands import bi, bilingual, connection_options
from services.cli.exits import CliError, Exit, table_text
from services.cli.output import console_for

DESCRIPTION = """\
vocreg 命令行: 通过平台的公开 gRPC 接口上传证书、查询备案与证书、诊断部署。
The vocreg command line: upload certificates, read the register and certificates, and check a
deployment, through the platform's public gRPC API with the same tokens as any client."""

EPILOG = f"""\
配置 / configuration: --address > VOCREG_ADDRESS > profile > localhost:50051;
  --token > VOCREG_TOKEN > profile (token or token_file); profile file: --config >
  VOCREG_CONFIG > ~/.config/vocreg/config.toml; profile: --profile > VOCREG_PROFILE > its default.

退出码 / exit codes:
{table_text()}"""


class Context:
    """What a command gets: its arguments' settings, the API (opened on first use), and the
    two streams: answers to stdout, progress and errors to stderr."""

    def __init__(self, settings: config.Settings, stdout=None, stderr=None):
        self.settings = settings
        self.stdout = stdout or sys.stdout
        self.console = Console(file=stderr or sys.stderr, highlight=False, soft_wrap=True)
        self.stdout_console = console_for(self.stdout)
        self._api: Api | None = None

    @cached_property
    def api(self) -> Api:
        self._api = Api(self.settings)
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.close()


def build_parser() -> argparse.ArgumentParser:
    parser = bilingual(argparse.ArgumentParser(
        prog="vocreg", description=DESCRIPTION, epilog=EPILOG, add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter))
    connection_options(parser)
    sub = parser.add_subparsers(title=bi("命令", "commands"), metavar="COMMAND")
    for module in commands.modules():
        module.register(sub)
    return parser


def report(error: CliError, console: Console) -> None:
    console.print(f"error: {error.message}", markup=False, style="bold red")
    for line in error.details:
        prefix = "  " if line.startswith("fix:") else "  - "
        console.print(prefix + line, markup=False)


def main(argv=None) -> None:
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ctx = None
    code = Exit.ERROR
    console = Console(file=sys.stderr, highlight=False)
    debug = False
    try:
        parser = build_parser()
        args = parser.parse_args(argv)  # --help and usage errors exit here (SystemExit)
        debug = args.debug
        run = getattr(args, "run", None)
        if run is None:
            (getattr(args, "group_parser", None) or parser).print_help(sys.stderr)
            sys.exit(int(Exit.USAGE))
        ctx = Context(config.resolve(args))
        console = ctx.console
        code = run(ctx, args)
    except CliError as error:
        report(error, console)
        code = error.code
    except KeyboardInterrupt:
        console.print("interrupted · 已中断", markup=False)
        code = Exit.INTERRUPTED
    except BrokenPipeError:  # `vocreg ... | head`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        code = Exit.OK
    except Exception as exc:
        console.print(f"error: unexpected {type(exc).__name__}: {exc}", markup=False,
                      style="bold red")
        if debug:
            console.print(traceback.format_exc(), markup=False)
        else:
            console.print("  (--debug shows where)", markup=False)
        code = Exit.ERROR
    finally:
        # Interrupted, the channels are left to the process's exit: grpcio's close can wait
        # for ever on a call that a signal cut short outside the wait loop (doctor's probes).
        if ctx is not None and code != Exit.INTERRUPTED:
            try:
                ctx.close()
            except KeyboardInterrupt:  # a signal while closing: nothing is left to keep
                code = Exit.INTERRUPTED
    sys.exit(int(code))


if __name__ == "__main__":
    main()
