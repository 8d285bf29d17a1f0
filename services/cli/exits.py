"""The exit codes of `vocreg`, one table: scripts switch on these numbers, never on the text.
`vocreg --help` and the README print this table."""
from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    ERROR = 1          # unexpected: a bug in vocreg or the platform (INTERNAL, UNKNOWN)
    USAGE = 2          # wrong flags or arguments (argparse's own code)
    BAD_INPUT = 3      # the file or the arguments fail the local checks: nothing was sent
    REFUSED = 4        # the platform refused the request (invalid, precondition, conflict)
    NOT_FOUND = 5      # no such record (verify: no certificate with that number and name)
    AUTH = 6           # no token, a bad or expired one, or a role not allowed
    UNAVAILABLE = 7    # the edge, the service or the bus cannot be reached: try again later
    PARTIAL = 8        # the upload finished but some rows were rejected: see the result file
    UNHEALTHY = 9      # doctor: at least one check failed
    NOT_VALID = 10     # verify: the certificate exists but was invalidated or withdrawn
    INTERRUPTED = 130  # Ctrl-C or SIGTERM: an upload left its state, run it again to resume


MEANING = {
    Exit.OK: ("成功", "success"),
    Exit.ERROR: ("意外错误(程序或平台缺陷)", "unexpected error (a bug)"),
    Exit.USAGE: ("参数用法错误", "wrong flags or arguments"),
    Exit.BAD_INPUT: ("本地检查未通过, 未发送任何数据", "local checks failed, nothing sent"),
    Exit.REFUSED: ("平台拒绝了请求", "the platform refused the request"),
    Exit.NOT_FOUND: ("记录不存在", "not found"),
    Exit.AUTH: ("令牌缺失、无效、过期或角色无权", "token missing, invalid, expired or role not allowed"),
    Exit.UNAVAILABLE: ("平台或服务不可达, 请稍后重试", "platform or service unreachable, retry later"),
    Exit.PARTIAL: ("上传完成但有行被拒绝, 见结果文件", "upload done, some rows rejected: see the result file"),
    Exit.UNHEALTHY: ("诊断: 至少一项检查失败", "doctor: a check failed"),
    Exit.NOT_VALID: ("证书已作废或已撤销", "certificate invalidated or withdrawn"),
    Exit.INTERRUPTED: ("已中断, 再次运行同一命令即可续传", "interrupted: run the same command again to resume"),
}


def table_text() -> str:
    return "\n".join(f"  {int(code):>3}  {zh} / {en}" for code, (zh, en) in MEANING.items())


class CliError(Exception):
    """What a command could not do: a one-line message, more lines (field violations, a fix),
    and the exit code."""

    def __init__(self, code: Exit, message: str, details: list[str] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details or [])
