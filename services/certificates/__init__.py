"""The registry of skills certificates (职业技能等级证书): issuing in batches, public masked
verification, invalidation and withdrawal, and statistics."""
from services.common.spec import ServiceSpec

SPEC = ServiceSpec(
    name="certificates",
    proto="vocreg.certificates.v1.CertificateRegistry",
    service_class="CertificateRegistryService",
    aggregates=("Operation",),
    metrics_port=9104,
    summary="the public registry of skills certificates",
    # Anyone checking a certificate: answered by the edge from the registry's unique index on
    # the number, off the bus (issue 18), with the worker's own code (public.py).
    edge_reads=("VerifyCertificate",),
    edge_reads_module="services.certificates.public",
)
