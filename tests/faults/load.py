"""Steady load through the edge while the suite breaks things: readers looping CheckName and
one writer filing institutions from start to end (submit, accept, decide: each step with its
request_id, retried with the same id while the platform is away), whose filings must all be
stored once, and known to certificates through filing's events."""
from __future__ import annotations

import threading
import time

import grpc

from tests.e2e.grpc_client import Filing
from tests.faults.conftest import FIGURES, record
from tests.support import PASSED_EVALUATION, application_request, uscc

# The codes a client retries (the same request_id): the platform or the broker was away, or a
# racing write won.
RETRY = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
         grpc.StatusCode.ABORTED}
CALL_TIMEOUT = 5.0


class Load:
    def __init__(self, plat, first_institution: int, readers: int = 4):
        self.plat = plat
        self.next_institution = first_institution
        self.readers = readers
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.read_ok: list[float] = []
        self.read_codes: dict[str, int] = {}
        self.filed: list[int] = []        # institutions the writer was told are filed
        self.failures: list[str] = []     # answers no retry explains
        self.threads: list[threading.Thread] = []

    # --- the threads ---------------------------------------------------------------------
    def _note(self, code: grpc.StatusCode) -> None:
        with self.lock:
            record(code.name)
            self.read_codes[code.name] = self.read_codes.get(code.name, 0) + 1

    def _read(self) -> None:
        public = Filing(self.plat.channel)
        while not self.stopping.is_set():
            try:
                public.CheckName({"name": "安阳市文峰区职业技能培训学校"}, timeout=CALL_TIMEOUT)
            except grpc.RpcError as exc:
                self._note(exc.code())
                if exc.code() not in RETRY:
                    self.failures.append(f"CheckName: {exc.code().name} {exc.details()}")
                time.sleep(0.05)
                continue
            self._note(grpc.StatusCode.OK)
            with self.lock:
                self.read_ok.append(time.monotonic())

    def _until_done(self, call, request: dict) -> dict | None:
        """Call until an answer that is not a retry's; None if the load stopped first."""
        while True:
            try:
                answer = call(request, timeout=CALL_TIMEOUT)
            except grpc.RpcError as exc:
                with self.lock:
                    record(exc.code().name)
                if exc.code() not in RETRY:
                    self.failures.append(f"{request.get('request_id')}: {exc.code().name} "
                                         f"{exc.details()}")
                    return None
                if self.stopping.is_set() and self._give_up_at < time.monotonic():
                    return None
                time.sleep(0.1)
                continue
            with self.lock:
                record("OK")
            return answer

    def _write(self) -> None:
        regulator = Filing(self.plat.channel, "regulator")
        while not self.stopping.is_set():
            n = self.next_institution
            self.next_institution += 1
            institution = Filing(self.plat.channel, "institution", n)
            submitted = self._until_done(institution.SubmitApplication,
                                         application_request(n, request_id=f"faults-{n}-submit"))
            if submitted is None:
                return
            app_id = submitted["application"]["application_id"]
            if self._until_done(regulator.AcceptApplication, {
                    "application_id": app_id, "decision": "ACCEPTANCE_DECISION_ACCEPT",
                    "request_id": f"faults-{n}-accept"}) is None:
                return
            decided = self._until_done(regulator.DecideApplication, {
                "application_id": app_id, "outcome": "DECISION_OUTCOME_FILE",
                "evaluation": PASSED_EVALUATION, "request_id": f"faults-{n}-decide"})
            if decided is None:
                return
            if decided["application"]["state"] != "APPLICATION_STATE_FILED":
                self.failures.append(f"institution {n}: {decided['application']['state']}")
                return
            with self.lock:
                self.filed.append(n)

    # --- control -------------------------------------------------------------------------
    def __enter__(self):
        self._give_up_at = float("inf")
        self.threads = [threading.Thread(target=self._read, daemon=True)
                        for _ in range(self.readers)]
        self.threads.append(threading.Thread(target=self._write, daemon=True))
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self, finish_within: float = 30.0) -> None:
        """Stop the readers; the writer finishes the filing it is in (within the limit)."""
        self._give_up_at = time.monotonic() + finish_within
        self.stopping.set()
        for thread in self.threads:
            thread.join(finish_within + CALL_TIMEOUT + 1)

    def first_read_after(self, moment: float, timeout: float, check=None) -> float:
        """Seconds from `moment` to the first successful read after it; `check()` is called
        while waiting (e.g. to fail at once when a worker has exited)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check is not None:
                check()
            with self.lock:
                after = [t for t in self.read_ok if t > moment]
            if after:
                return after[0] - moment
            time.sleep(0.05)
        raise AssertionError(f"no successful read within {timeout}s")


def check_nothing_lost(plat, filed: list[int], timeout: float = 60.0) -> None:
    """Every institution the writer was told is filed is stored once in filing (one
    application, one institution) and known to certificates as active (its InstitutionFiled
    event arrived): the figures `lost` and `duplicated` count the others."""
    filing, certificates = plat.db("filing"), plat.db("certificates")
    ids = [uscc(n) for n in filed]
    for institution_id in ids:
        applications = filing["applications"].count_documents({"institution_id": institution_id})
        institutions = filing["institutions"].count_documents({"_id": institution_id})
        if applications == 0 or institutions == 0:
            FIGURES["lost"] += 1
        if applications > 1 or institutions > 1:
            FIGURES["duplicated"] += 1
    deadline = time.monotonic() + timeout
    while True:
        known = {d["_id"]: d.get("status") for d in certificates["institution_status"].find(
            {"_id": {"$in": ids}}, {"status": 1})}
        missing = [i for i in ids if known.get(i) != "INSTITUTION_STATUS_ACTIVE"]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    FIGURES["lost"] += len(missing)
    assert not missing, f"certificates never learnt of {len(missing)} filings: {missing[:5]}"
