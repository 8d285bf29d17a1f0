"""Inspections and sanctions: the annual supervision plan, the inspector register, verifiable
random draws ("双随机、一公开"), special cases from complaints and monitoring anomalies, findings
under the four tiers of seed 001 ch.6, due process, and decisions that take effect in filing,
certificates and grading by events."""
from services.common.spec import ServiceSpec

SPEC = ServiceSpec(
    name="inspection",
    proto="vocreg.inspection.v1.InspectionService",
    service_class="InspectionService",
    aggregates=("InspectionPlan", "InspectorRecord", "InspectionDraw", "InspectionCase",
                "InspectionComplaint"),
    metrics_port=9103,
    summary="inspections and sanctions: random draws, due process, decisions",
)
