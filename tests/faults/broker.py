"""A RabbitMQ node of the fault suite's own: its own name, ports, data and logs in a temporary
directory, so the suite can stop and start it under load. The shared broker on 5672 is never
touched: every command here names this node (`rabbitmqctl -n <node>`), and the node reads
none of the machine's configuration (/etc/rabbitmq sets the shared node's listener).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.database import free_port

SBIN = Path("/usr/lib/rabbitmq/bin")  # the scripts themselves (/usr/sbin's su to rabbitmq)


def available() -> str | None:
    """Why no node can be started here, or None."""
    for tool in ("rabbitmq-server", "rabbitmqctl"):
        if not (SBIN / tool).exists() and shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def _tool(name: str) -> str:
    return str(SBIN / name) if (SBIN / name).exists() else shutil.which(name)


class BrokerNode:
    def __init__(self):
        self.name = f"vocregfaults{uuid.uuid4().hex[:6]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.home = Path(tempfile.mkdtemp(prefix="vocreg-faults-rabbit-"))
        (self.home / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n")
        (self.home / "enabled_plugins").write_text("[].\n")
        (self.home / "rabbitmq-env.conf").write_text("")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")},
            "HOME": str(self.home),  # the Erlang cookie of this node and its rabbitmqctl
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.home / "log"),
            "RABBITMQ_PID_FILE": str(self.home / "pid"),
            "RABBITMQ_CONFIG_FILE": str(self.home / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.home / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self.home / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            # A node that fails leaves its crash dump here, never in the repository.
            "ERL_CRASH_DUMP": str(self.home / "erl_crash.dump"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        self.started = False

    @property
    def amqp_uri(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def ctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return subprocess.run([_tool("rabbitmqctl"), "-n", self.name, *args], env=self.env,
                              cwd=self.home, capture_output=True, text=True, timeout=timeout)

    def start(self, timeout: float = 60.0) -> BrokerNode:
        subprocess.run([_tool("rabbitmq-server"), "-detached"], env=self.env, cwd=self.home,
                       check=True, capture_output=True, timeout=30)
        self.started = True
        deadline = time.monotonic() + timeout
        while not self.listening():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the suite's RabbitMQ node did not start:\n{self.log_tail()}")
            time.sleep(0.25)
        result = self.ctl("await_startup", timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl await_startup: {result.stderr}\n{self.log_tail()}")
        return self

    def listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop_app(self) -> None:
        """The broker goes away: every connection is closed, the node stays up."""
        result = self.ctl("stop_app")
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl stop_app: {result.stderr}")

    def start_app(self) -> None:
        result = self.ctl("start_app")
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl start_app: {result.stderr}")

    def stop(self) -> None:
        if self.started:
            self.ctl("stop", timeout=60)
            self.started = False
        shutil.rmtree(self.home, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        logs = sorted((self.home / "log").glob("*.log"))
        return "\n".join(p.read_text(errors="replace")[-chars:] for p in logs)
