"""JSON logs: every process (edge, workers, `make run`'s launcher) writes one JSON object per
line to stderr, which is what log shippers (Kubernetes' fluent-bit, Loki, ...) parse.

    {"time": "2026-11-21T13:21:56.170Z", "level": "INFO", "logger": "vocreg.access",
     "process": "edge", "message": "grpc call", "method": "/vocreg.filing.v1...", ...}

Structured fields go in `extra={"fields": {...}}`. Nothing here decides what is logged: the
callers never pass request bodies or personal data (names, ID numbers).
"""
from __future__ import annotations

import json
import logging
import logging.config
import sys
import threading
import time

# The keys every line has; `fields` never overwrite them.
RESERVED = ("time", "level", "logger", "process", "message")


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str = "", **kwargs):
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        if self.process:
            entry["process"] = self.process
        entry["message"] = record.getMessage()
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in RESERVED})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(level: str, process: str) -> dict:
    """The dictConfig for a process (nameko takes it as the worker config's LOGGING)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "services.common.logs.JsonFormatter",
                                "process": process}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # nameko logs every expected (deliberate) error as a warning with its traceback;
            # those are answers, counted by their gRPC code in vocreg_worker_handled_total. Real failures
            # are still logged at ERROR with their traceback.
            "nameko.containers": {"level": "ERROR"},
        },
    }


def configure(level: str, process: str) -> None:
    """JSON logging for this process, warnings and uncaught exceptions included."""
    logging.config.dictConfig(logging_config(level, process))
    logging.captureWarnings(True)
    crash = logging.getLogger("vocreg.crash")

    def log_uncaught(kind, value, traceback):
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, traceback)
            return
        crash.critical("uncaught %s", kind.__name__, exc_info=(kind, value, traceback))

    sys.excepthook = log_uncaught
    threading.excepthook = lambda args: crash.critical(
        "thread %s died: %s", getattr(args.thread, "name", "?"), args.exc_type.__name__,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def route_eventlet_tracebacks(hub) -> None:
    """eventlet's hub prints what escapes a greenthread, a timer or a socket callback with
    traceback.print_exception: plain text in a JSON log. The same, as one JSON line each."""
    log = logging.getLogger("eventlet.hub")

    def descriptor_failed(fileno, exc_info):
        log.error("callback on descriptor %r failed; removing it", fileno, exc_info=exc_info)
        try:
            hub.remove_descriptor(fileno)
        except Exception:
            log.error("removing descriptor %r failed", fileno, exc_info=True)

    hub.squelch_exception = descriptor_failed
    hub.squelch_generic_exception = lambda exc_info: log.error("greenthread failed",
                                                               exc_info=exc_info)
    hub.squelch_timer_exception = lambda timer, exc_info: log.error("timer failed",
                                                                    exc_info=exc_info)


def fail(log: logging.Logger, code) -> int:
    """Log a SystemExit's message (a configuration error) as JSON; the exit status to use."""
    if isinstance(code, str):
        log.critical(code)
        return 1
    return 0 if code is None else code if isinstance(code, int) else 1
