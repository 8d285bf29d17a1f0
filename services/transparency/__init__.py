"""The public, tamper-evident log of published decisions: an append-only RFC 6962 Merkle tree
fed by the producers' decision events, with signed tree heads and inclusion and consistency
proofs (services/common/merkle.py; the standalone checker is deploy/verify_log.py)."""
from services.common.spec import ServiceSpec

SPEC = ServiceSpec(
    name="transparency",
    proto="vocreg.transparency.v1.TransparencyLogService",
    service_class="TransparencyLogWorker",
    aggregates=(),
    metrics_port=9108,
    summary="the tamper-evident log of published decisions (RFC 6962 Merkle tree)",
)
