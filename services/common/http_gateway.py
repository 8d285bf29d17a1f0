"""HTTP/JSON for every RPC, the OpenAPI document and the public web page, served by the edge.

The edge process (grpcio, no eventlet) runs this beside its gRPC server, on HTTP_PORT
(default 8080; 0: none). A request is matched to its RPC by the routes the protos declare
(services/common/routes.py), turned into the request message, and handed to the very
`ServiceForwarder.invoke` gRPC calls go through (services/common/edge.py): the same token
check (`Authorization: Bearer ...`), access policy, rate limit, deadline (`grpc-timeout`
header, gRPC's format: `5S`, `500m`; capped as for gRPC) and error mapping. A refusal is the
gRPC code's HTTP status with google.rpc.Status as JSON: `code`, `message` and `details`
(ErrorInfo, BadRequest field violations, PreconditionFailure, RetryInfo), plus Retry-After on
429. Nothing here knows a service: a new service's annotated RPCs are served as declared.

Also served: `/openapi.json` (built from the protos by `make protos`), `/` and `/static/...`
(the public page, services/common/web/: plain HTML, CSS and JavaScript, no build step),
`/healthz` (the edge itself answers).

The server is waitress (pure Python, a bounded pool of threads; it reads whole requests
before a thread takes them, so slow clients do not hold threads).
"""
from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from pathlib import Path

import grpc
from google.protobuf import json_format, message_factory

from services.common import config
from services.common.errors import InvalidArgument, VocregError, status_proto
from services.common.metrics import HTTP_CALLS, HTTP_LATENCY
from services.common.routes import RouteTable, all_routes, build_request

log = logging.getLogger("vocreg.http")
access_log = logging.getLogger("vocreg.access")

WEB = Path(__file__).resolve().parent / "web"
OPENAPI = Path(__file__).resolve().parents[1] / "gen" / "openapi.json"

# google.rpc.Code -> HTTP status, as Google's APIs and grpc-gateway map them.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DATA_LOSS: 500,
}
REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
           413: "Content Too Large", 415: "Unsupported Media Type", 429: "Too Many Requests",
           499: "Client Closed Request", 500: "Internal Server Error", 501: "Not Implemented",
           503: "Service Unavailable", 504: "Gateway Timeout"}
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml",
                ".json": "application/json"}
# The page runs only its own script and talks only to this origin.
SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
                                "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
]
_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


class HttpSettings:
    def __init__(self):
        self.port = config.env_int("HTTP_PORT", config.DEFAULT_HTTP_PORT)
        self.threads = config.env_int("HTTP_THREADS", 8)


def parse_timeout(value: str | None) -> float | None:
    """The `grpc-timeout` header (gRPC's format) in seconds; None when absent."""
    if not value:
        return None
    found = _TIMEOUT.match(value.strip())
    if not found:
        raise InvalidArgument("grpc-timeout: a number of at most 8 digits and a unit "
                              "(H, M, S, m, u, n), e.g. 5S", reason="MALFORMED_REQUEST")
    return int(found.group(1)) * _TIMEOUT_UNITS[found.group(2)]


def error_body(code: grpc.StatusCode, message: str, details: dict | None, service: str) -> bytes:
    """google.rpc.Status as JSON (proto3 JSON mapping of the typed details)."""
    status = status_proto(code, message, details, service)
    return json.dumps(json_format.MessageToDict(status), ensure_ascii=False).encode()


class Gateway:
    """The WSGI application: routes to RPCs, the OpenAPI document, the page."""

    def __init__(self, forwarders: dict, max_body_bytes: int):
        self.forwarders = forwarders  # service name -> ServiceForwarder
        self.table = RouteTable(all_routes(list(forwarders)))
        self.max_body_bytes = max_body_bytes
        self.response_classes = {
            route.full_method: message_factory.GetMessageClass(route.method.output_type)
            for route in self.table.routes}
        self.services_meta = ",".join(forwarders)

    # --- WSGI ---------------------------------------------------------------------------------
    def __call__(self, wsgi, start_response):
        verb = wsgi.get("REQUEST_METHOD", "GET").lower()
        path = wsgi.get("PATH_INFO") or "/"
        if path.startswith("/v1/"):
            return self.api(wsgi, start_response, verb, path)
        if verb not in ("get", "head"):
            return self.plain(start_response, 405, b"method not allowed\n",
                              [("Allow", "GET, HEAD")])
        if path == "/healthz":
            return self.plain(start_response, 200, b"ok\n")
        if path == "/openapi.json":
            return self.file(start_response, OPENAPI, "application/json")
        if path in ("/", "/index.html"):
            return self.page(start_response)
        if path.startswith("/static/"):
            name = path[len("/static/"):]
            if re.fullmatch(r"[a-z0-9_-]+\.(css|js|svg)", name):
                return self.file(start_response, WEB / name)
        return self.plain(start_response, 404, b"not found\n")

    def plain(self, start_response, status: int, body: bytes, headers=()):
        start_response(f"{status} {REASONS.get(status, '')}",
                       [("Content-Type", "text/plain; charset=utf-8"),
                        ("Content-Length", str(len(body))), *SECURITY_HEADERS, *headers])
        return [body]

    def file(self, start_response, path: Path, content_type: str | None = None):
        try:
            body = path.read_bytes()
        except OSError:
            return self.plain(start_response, 404, b"not found\n")
        start_response("200 OK", [("Content-Type", content_type or STATIC_TYPES[path.suffix]),
                                  ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-cache"), *SECURITY_HEADERS])
        return [body]

    def page(self, start_response):
        """The public page, told which services this edge serves (their sections show)."""
        try:
            text = (WEB / "index.html").read_text(encoding="utf-8")
        except OSError:
            return self.plain(start_response, 404, b"not found\n")
        body = text.replace("{{services}}", self.services_meta).encode()
        start_response("200 OK", [("Content-Type", STATIC_TYPES[".html"]),
                                  ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-cache"), *SECURITY_HEADERS])
        return [body]

    # --- the API ------------------------------------------------------------------------------
    def api(self, wsgi, start_response, verb: str, path: str):
        started = time.perf_counter()
        route, values, other_verb = self.table.find(verb, path)
        if route is None:
            code = grpc.StatusCode.UNIMPLEMENTED
            message = (f"{verb.upper()} is not a method of {path[:100]}" if other_verb
                       else f"no route {path[:100]}")
            reason = "METHOD_NOT_ALLOWED" if other_verb else "ROUTE_NOT_FOUND"
            status = 405 if other_verb else 404
            body = error_body(code, message, {"reason": reason}, "edge")
            self._record("(no route)", code, started, None)
            return self._json(start_response, status, body)
        forwarder = self.forwarders[route.service]
        response_class = self.response_classes[route.full_method]
        try:
            timeout = parse_timeout(wsgi.get("HTTP_GRPC_TIMEOUT"))
            body = self._body(wsgi) if route.body else b""
            request = build_request(route, values, wsgi.get("QUERY_STRING", ""), body)
        except VocregError as exc:
            self._record(route.full_method, exc.status, started, None)
            return self._json(start_response, HTTP_STATUS[exc.status],
                              error_body(exc.status, exc.message, exc.details(), route.service))
        outcome = forwarder.invoke(
            route.rpc, request, response_class,
            authorization=wsgi.get("HTTP_AUTHORIZATION"),
            peer=wsgi.get("REMOTE_ADDR", "unknown"),
            forwarded_for=wsgi.get("HTTP_X_FORWARDED_FOR"), time_remaining=timeout)
        self._record(route.full_method, outcome.code, started, outcome)
        if outcome.code != grpc.StatusCode.OK:
            headers = []
            delay = (outcome.details or {}).get("retry_delay_seconds")
            if outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None:
                headers.append(("Retry-After", str(max(1, math.ceil(delay)))))
            return self._json(start_response, HTTP_STATUS.get(outcome.code, 500),
                              error_body(outcome.code, outcome.message, outcome.details,
                                         route.service), headers)
        payload = json_format.MessageToDict(outcome.response, preserving_proto_field_name=True)
        return self._json(start_response, 200, json.dumps(payload, ensure_ascii=False).encode())

    def _body(self, wsgi) -> bytes:
        content_type = (wsgi.get("CONTENT_TYPE") or "application/json").split(";")[0]
        if content_type.strip().lower() not in ("application/json", ""):
            raise InvalidArgument("body: send application/json", reason="MALFORMED_REQUEST")
        try:
            length = int(wsgi.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > self.max_body_bytes:
            raise InvalidArgument(f"body: at most {self.max_body_bytes} bytes",
                                  reason="REQUEST_TOO_LARGE")
        return wsgi["wsgi.input"].read(length) if length else b""

    def _json(self, start_response, status: int, body: bytes, headers=()):
        start_response(f"{status} {REASONS.get(status, '')}",
                       [("Content-Type", "application/json; charset=utf-8"),
                        ("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
                        *SECURITY_HEADERS, *headers])
        return [body]

    def _record(self, method: str, code: grpc.StatusCode, started: float, outcome) -> None:
        elapsed = time.perf_counter() - started
        HTTP_CALLS.labels(method, code.name).inc()
        HTTP_LATENCY.labels(method).observe(elapsed)
        if outcome is not None:
            fields = outcome.log_fields(f"/{method}")
            fields["duration_ms"] = round(elapsed * 1000, 3)
        else:
            fields = {"method": method, "code": code.name,
                      "duration_ms": round(elapsed * 1000, 3)}
        fields["transport"] = "http"
        access_log.info("http call", extra={"fields": fields})


class HttpServer:
    """waitress in a thread of the edge process."""

    def __init__(self, gateway: Gateway, port: int, threads: int, max_body_bytes: int):
        from waitress.server import create_server

        try:
            self.server = create_server(gateway, host="0.0.0.0", port=port, threads=threads,
                                        max_request_body_size=max_body_bytes,
                                        clear_untrusted_proxy_headers=False, ident="vocreg")
        except OSError as exc:
            raise SystemExit(f"edge: cannot serve HTTP on port {port} ({exc.strerror}); "
                             "set HTTP_PORT") from None
        self.port = self.server.effective_port
        self.thread = threading.Thread(target=self._run, name="http", daemon=True)

    def _run(self):
        try:
            self.server.run()
        except Exception:  # closed under it at shutdown
            log.debug("http server loop ended", exc_info=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.server.close()
        self.server.task_dispatcher.shutdown(timeout=5)
