"""The bare baselines the edge is measured against: a nameko RPC echo and a grpcio echo."""
from __future__ import annotations

import warnings

# nameko imports eventlet, which we chose on purpose (nameko 2.14): its notice is noise here.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated", category=Warning)

from nameko.rpc import rpc  # noqa: E402


class EchoService:
    name = "bench_echo"

    @rpc
    def echo(self, payload=None):
        return payload


def serve_grpc_echo(port: int) -> None:
    """A grpcio unary echo with no protobuf work (bytes in, the same bytes out)."""
    from concurrent import futures

    import grpc

    def identity(b):
        return b

    handler = grpc.method_handlers_generic_handler("bench.Echo", {
        "Echo": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req,
                                                    request_deserializer=identity,
                                                    response_serializer=identity)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    import sys
    serve_grpc_echo(int(sys.argv[1]))
