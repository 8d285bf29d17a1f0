"""`make run`'s local database: started with the platform, data kept in the data directory
across a stop and a start, stopped with the platform, never started when MONGO_URI names a
server, and a server it did not start is left alone. services/localdb.py, services/run.py.

The whole `make run` here is `python -m services.run` on its own ports, vhost and data
directory, stopped with Ctrl-C as a user stops it (SIGINT to its process group).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2

from services import localdb, run
from tests.e2e.grpc_client import Certificates, Filing
from tests.e2e.test_certificates_grpc import at, batch, file_institution, issuer, row
from tests.platform import ROOT, delete_vhost, eventually, free_port, make_vhost
from tests.support import uscc

pytestmark = pytest.mark.e2e

SERVING = health_pb2.HealthCheckResponse.SERVING


class MakeRun:
    """`python -m services.run` with the environment a user would have, on test ports."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.data_dir = tmp_path / "data"
        self.db_port = free_port()
        self.grpc_port = free_port()
        self.vhost = f"vocreg-run-{uuid.uuid4().hex[:8]}"
        self.clock_file = tmp_path / "clock.txt"
        self.log = tmp_path / "run.log"
        self.proc: subprocess.Popen | None = None
        self.channel: grpc.Channel | None = None
        make_vhost(self.vhost)

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        env.pop("MONGO_URI", None)
        env.update(AMQP_URI=f"amqp://guest:guest@localhost:5672/{self.vhost}",
                   VOCREG_DATA_DIR=str(self.data_dir), VOCREG_DB_PORT=str(self.db_port),
                   GRPC_PORT=str(self.grpc_port), EDGE_METRICS_PORT="0", METRICS_PORT="0",
                   EDGE_HEALTH_INTERVAL="1.0", VOCREG_CLOCK_FILE=str(self.clock_file),
                   FILING_DISTRICT_QUOTA="100")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.run"], cwd=ROOT, env=env,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.channel = grpc.insecure_channel(f"localhost:{self.grpc_port}")
        for proto in ("vocreg.filing.v1.FilingService",
                      "vocreg.certificates.v1.CertificateRegistry"):
            eventually(lambda p=proto: self.serving(p), timeout=60, what=f"{proto} serving")

    def serving(self, proto: str) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return self.health(proto) == SERVING
        except grpc.RpcError:
            return False

    def health(self, proto: str):
        from grpc_health.v1 import health_pb2_grpc

        return health_pb2_grpc.HealthStub(self.channel).Check(
            health_pb2.HealthCheckRequest(service=proto), timeout=2).status

    def set_clock(self, when) -> None:
        self.clock_file.write_text(when.isoformat())

    def stop(self) -> int | None:
        """Ctrl-C: SIGINT to the whole foreground group, as a terminal sends it."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise

    def close(self) -> None:
        self.stop()
        delete_vhost(self.vhost)


def test_make_run_keeps_every_record_across_a_stop_and_a_start(tmp_path):
    platform = MakeRun(tmp_path)
    try:
        platform.start()
        filing_code = file_institution(platform, 701)
        at(platform, 2026, 6, 15)
        number = issuer(platform, 701).IssueCertificates(
            batch([row(1)]))["results"][0]["certificate_number"]
        regulator = Filing(platform.channel, "regulator")
        before = eventually(lambda: _counted(regulator, 701), what="filing counts the certificate")

        assert platform.stop() == 0, platform.log.read_text()  # every process stopped cleanly
        # The database stopped with the platform, after it; its data stayed.
        assert not localdb.port_open(platform.db_port)
        assert not (platform.data_dir / "server.pid").exists()
        assert (platform.data_dir / "db").is_dir()
        assert "database stopped (0)" in platform.log.read_text()

        platform.start()
        regulator = Filing(platform.channel, "regulator")
        after = regulator.GetInstitution({"institution_id": uscc(701)})["institution"]
        assert after == before and after["filing_code"] == filing_code
        application = regulator.GetApplication(
            {"application_id": after["application_id"]})["application"]
        assert application["state"] == "APPLICATION_STATE_FILED"
        mine = Certificates(platform.channel, "institution", 701).GetCertificate(
            {"certificate_number": number})["certificate"]
        assert mine["holder_id_number"] == row(1)["holder_id_number"]
        public = Certificates(platform.channel).VerifyCertificate(
            {"certificate_number": number, "holder_name": row(1)["holder_name"]})
        assert public["result"] == "VERIFICATION_RESULT_VALID"
        # The counters survived too: numbering goes on, no serial is handed out again.
        nxt = issuer(platform, 701).IssueCertificates(batch([row(2)]))
        assert nxt["results"][0]["certificate_number"] == number[:-6] + "000002"
    finally:
        platform.close()


def _counted(filing: Filing, n: int) -> dict | None:
    """Institution n once filing has counted its certificate (from CertificatesIssued)."""
    institution = filing.GetInstitution({"institution_id": uscc(n)})["institution"]
    return institution if institution.get("activity") else None


def _server(tmp_path) -> localdb.DatabaseServer:
    return localdb.DatabaseServer(free_port(), storage=tmp_path / "db", home=tmp_path)


def test_a_server_already_running_is_used_and_left_running(tmp_path, monkeypatch):
    monkeypatch.delenv("MONGO_URI", raising=False)
    monkeypatch.setenv("VOCREG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VOCREG_DB_PORT", str(free_port()))
    first, line = run.start_database()
    try:
        assert first is not None and first.alive() and "local server on" in line
        assert (tmp_path / "server.pid").read_text().strip() == str(first.process.pid)
        second, line = run.start_database()
        assert second is None and f"already running from {tmp_path} (pid {first.process.pid})" in line
        # `make wipe` refuses while it runs
        assert localdb.main(["wipe"]) == 2 and (tmp_path / "db").is_dir()
    finally:
        assert first.stop() == 0
    assert not (tmp_path / "server.pid").exists()
    assert localdb.main(["wipe"]) == 0 and not tmp_path.exists()


def test_mongo_uri_set_starts_no_server(tmp_path, monkeypatch):
    monkeypatch.setenv("MONGO_URI", "mongodb://db.example:27017/")
    monkeypatch.setenv("VOCREG_DATA_DIR", str(tmp_path / "data"))
    server, line = run.start_database()
    assert server is None and "MONGO_URI" in line
    assert not (tmp_path / "data").exists()


def test_a_stale_pid_file_is_cleared(tmp_path):
    server = _server(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "server.pid").write_text(f"{dead.pid}\n")
    assert server.running_pid() is None
    assert not (tmp_path / "server.pid").exists()


def test_a_taken_port_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = localdb.DatabaseServer(taken.getsockname()[1], storage=tmp_path / "db",
                                        home=tmp_path)
        with pytest.raises(localdb.DatabaseServerError, match="already taken"):
            server.start()
    assert server.process is None


def test_an_acknowledged_write_survives_kill_9_of_the_server(tmp_path, monkeypatch):
    """Written as the workers write to the local server (the default MONGO_URI journals), a
    write acknowledged the instant before a `kill -9` of the server is there after it."""
    import pymongo

    from services.common import config

    server = _server(tmp_path).start()
    monkeypatch.delenv("MONGO_URI", raising=False)
    monkeypatch.setenv("VOCREG_DB_PORT", str(server.port))
    with pymongo.MongoClient(config.mongo_uri("test")) as client:
        things = client.get_default_database().things
        things.insert_many([{"_id": i} for i in range(99)])
        things.insert_one({"_id": "last"})
    server.process.kill()
    server.process.wait()
    again = _server(tmp_path)
    again.port = server.port
    again.start()
    try:
        with pymongo.MongoClient(again.uri) as client:
            assert client.vocreg_test.things.count_documents({}) == 100
    finally:
        assert again.stop(timeout=90) == 0  # a store just recovered from kill -9 closes slowly under load
