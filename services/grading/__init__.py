"""Integrity grading (诚信等级评估): versioned indicator systems, the yearly cycle of
self-assessment, review and publication, explained grades A-D with appeals, the red and black
lists, credit repair and the integrity file (诚信档案)."""
from services.common.spec import ServiceSpec

SPEC = ServiceSpec(
    name="grading",
    proto="vocreg.grading.v1.GradingService",
    service_class="GradingService",
    aggregates=("IndicatorSystemDoc", "GradingYearDoc", "SelfAssessmentDoc", "GradingInstitution",
                "GradeRecord", "IntegrityListing"),
    metrics_port=9102,
    summary="yearly integrity grades A-D from a versioned indicator system, explained",
)
