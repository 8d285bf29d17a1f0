"""Filing (备案): applications, the register of filed institutions, changes, renewals,
suspension and termination, and the dynamic scope of what each institution may evaluate."""
from services.common.spec import ServiceSpec

SPEC = ServiceSpec(
    name="filing",
    proto="vocreg.filing.v1.FilingService",
    service_class="FilingService",
    aggregates=("Application", "Institution"),
    metrics_port=9101,
    summary="filing (备案) of training and evaluation institutions and the public register",
)
