"""`vocreg config show`: the settings in force and where each came from (services/cli/config.py)."""
from __future__ import annotations

from services.cli import output
from services.cli.commands import add_output, command, group
from services.cli.exits import Exit

SERVICE = None


def register(subparsers) -> None:
    sub = group(subparsers, "config", "配置: 地址、令牌、配置文件", "configuration: address, token, profile")
    p = command(sub, "show", "显示生效的配置及其来源 (令牌只显示开头)",
                "the settings in force and where each came from (the token abbreviated)",
                run_show)
    add_output(p)


def run_show(ctx, args) -> Exit:
    s = ctx.settings
    token = f"{s.token[:12]}… ({len(s.token)} characters)" if s.token else ""
    record = {"address": s.address, "addresses": s.addresses, "token": token, "tls": s.tls,
              "ca_file": s.ca_file, "timeout": s.timeout, "profile": s.profile,
              "profile_file": str(s.config_file) if s.config_file else None,
              "sources": s.sources}
    output.emit_one(record, args.output, title="vocreg config", stream=ctx.stdout)
    return Exit.OK
