"""A thread-safe pool of nameko standalone RPC clients, for processes without eventlet.

nameko's ClusterRpcProxy is single-threaded; the pool lends each calling thread a proxy of
its own. Each call gets a fresh WorkerContext, so it carries its own context data (the
caller's token) and a timeout derived from the caller's deadline.
"""
from __future__ import annotations

import logging
import queue
import threading

from nameko.containers import WorkerContext
from nameko.exceptions import RemoteError, RpcTimeout, UnknownService
from nameko.rpc import MethodProxy
from nameko.standalone.rpc import ClusterRpcProxy, StandaloneProxyBase

log = logging.getLogger(__name__)


class PoolExhausted(Exception):
    """Every proxy stayed busy until the call's deadline."""


class RpcClientPool:
    def __init__(self, amqp_uri: str, size: int = 16):
        self.config = {"AMQP_URI": amqp_uri, "serializer": "json"}
        self._idle: queue.LifoQueue = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._all: set = set()
        self._lock = threading.Lock()

    def _new_proxy(self) -> ClusterRpcProxy:
        proxy = ClusterRpcProxy(self.config)
        proxy.start()
        with self._lock:
            self._all.add(proxy)
        return proxy

    def _discard(self, proxy) -> None:
        with self._lock:
            self._all.discard(proxy)
        try:
            proxy.stop()
        except Exception:  # already broken; nothing more to release
            log.debug("stopping a broken proxy failed", exc_info=True)

    def call(self, service: str, method: str, payload, context_data: dict | None,
             timeout: float):
        """Call `service.method(payload)`; raises nameko's RemoteError, RpcTimeout,
        UnknownService, or a connection error when the broker cannot be reached."""
        if not self._slots.acquire(timeout=timeout):
            raise PoolExhausted(f"no RPC client free within {timeout:.1f}s")
        try:
            try:
                proxy = self._idle.get_nowait()
            except queue.Empty:
                proxy = self._new_proxy()
            healthy = False
            try:
                listener = proxy._reply_listener
                listener.queue_consumer.timeout = timeout
                worker_ctx = WorkerContext(proxy._worker_ctx.container, service=None,
                                           entrypoint=StandaloneProxyBase.Dummy,
                                           data=dict(context_data or {}))
                # The message expires with the caller's deadline: a request nobody waits for
                # any more is dropped by the broker instead of running late (e.g. when the
                # worker comes back after an outage).
                expiration = max(timeout, 0.001)
                result = MethodProxy(worker_ctx, service, method, listener,
                                     expiration=expiration)(payload)
                healthy = True
                return result
            except RpcTimeout:
                healthy = True  # the consumer re-established itself; the proxy is reusable
                raise
            except Exception as exc:
                # A RemoteError is an answer: the proxy is fine. Anything else may have
                # broken its connection, so it is replaced.
                healthy = isinstance(exc, (RemoteError, UnknownService))
                raise
            finally:
                if healthy:
                    self._idle.put(proxy)
                else:
                    self._discard(proxy)
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            proxies = list(self._all)
        for proxy in proxies:
            self._discard(proxy)
