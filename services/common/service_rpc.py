"""RPC to another service under this service's own identity (role "service").

nameko's RpcProxy sends the worker's context data on, so a call made while handling a request
would carry the CALLER's token (`auth_token`), and a call from a timer or event handler none.
A service asking another one a question on its own behalf (e.g. certificates asking filing
whether an institution may evaluate) must be checked as itself: the downstream RPC lists
ROLE_SERVICE, an institution's token would be refused there, and filing's audit should name
the service that asked. So this proxy replaces the token with a service token and keeps the
rest of the context (the call-id stack, so traces still join up).

Calls also get a time limit: nameko's RpcProxy waits for a reply forever. A call that runs out
raises Unavailable, which the edge answers with UNAVAILABLE (services/common/errors.py).
"""
from __future__ import annotations

import time

import eventlet
from nameko.constants import AUTH_TOKEN_CONTEXT_KEY, CALL_ID_STACK_CONTEXT_KEY
from nameko.containers import WorkerContext
from nameko.rpc import ReplyListener, RpcProxy

from services.common.auth import issue_service_token
from services.common.config import env_float
from services.common.consumer import QueueConsumer
from services.common.errors import Unavailable

TOKEN_TTL_SECONDS = 3600
DEFAULT_TIMEOUT_SECONDS = 10.0


class _TimedMethod:
    def __init__(self, method, service: str, timeout: float):
        self.method, self.service, self.timeout = method, service, timeout

    def __call__(self, *args, **kwargs):
        reply = self.method.call_async(*args, **kwargs)
        try:
            with eventlet.Timeout(self.timeout):
                return reply.result()
        except eventlet.Timeout:
            raise Unavailable(f"the {self.service} service did not answer within {self.timeout:g}s") from None


class _TimedServiceProxy:
    def __init__(self, proxy, service: str, timeout: float):
        self._proxy, self._service, self._timeout = proxy, service, timeout

    def __getattr__(self, name):
        return _TimedMethod(getattr(self._proxy, name), self._service, self._timeout)


class _ReplyListener(ReplyListener):
    """nameko's reply listener on the worker's one resilient queue consumer (consumer.py)."""

    queue_consumer = QueueConsumer()


class ServiceRpcProxy(RpcProxy):
    """`filing = ServiceRpcProxy("filing")`; `self.filing.GetInstitution({...})` calls as
    `service:<this service's name>`. Config `<TARGET>_RPC_TIMEOUT` (seconds) sets the limit."""

    rpc_reply_listener = _ReplyListener()

    def __init__(self, target_service, **options):
        super().__init__(target_service, **options)
        self._token = None
        self._renew_at = 0.0

    def service_token(self) -> str:
        now = time.time()
        if self._token is None or now >= self._renew_at:
            self._token = issue_service_token(self.container.service_name,
                                              ttl_seconds=TOKEN_TTL_SECONDS)
            self._renew_at = now + TOKEN_TTL_SECONDS / 2  # renew well before it expires
        return self._token

    def get_dependency(self, worker_ctx):
        data = dict(worker_ctx.data)
        data[CALL_ID_STACK_CONTEXT_KEY] = worker_ctx.call_id_stack
        data[AUTH_TOKEN_CONTEXT_KEY] = self.service_token()
        own_ctx = WorkerContext(worker_ctx.container, worker_ctx.service, worker_ctx.entrypoint,
                                data=data)
        key = f"{self.target_service.upper()}_RPC_TIMEOUT"
        configured = self.container.config.get(key)
        timeout = (float(configured) if configured not in (None, "")
                   else env_float(key, DEFAULT_TIMEOUT_SECONDS))
        return _TimedServiceProxy(super().get_dependency(own_ctx), self.target_service, timeout)
