"""Prepaid-fee escrow (预收资金存管, seed 000): prepaid schemes, payments into custody, per-lesson
release, refund complaints and the period figures, on a double-entry custody ledger."""
from services.common.spec import ServiceSpec

SPEC = ServiceSpec(
    name="escrow",
    proto="vocreg.escrow.v1.EscrowService",
    service_class="EscrowService",
    aggregates=("EscrowInstitution", "EscrowScheme", "EscrowContract", "RefundComplaint"),
    metrics_port=9105,
    summary="prepaid-fee custody ledger, per-lesson release and refund complaints",
)
