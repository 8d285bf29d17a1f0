"""The ministry's progress report (seed 002 §三(二)): a read model that follows the events of
every service and keeps the progress table's figures per day, editions generated for the
fortnightly cut-offs and the final summary, submitted and frozen, corrected and diffed,
exported as XLSX, PDF and CSV, and the due dates watched."""
from services.common.spec import ServiceSpec

SPEC = ServiceSpec(
    name="reporting",
    proto="vocreg.reporting.v1.ReportingService",
    service_class="ReportingService",
    aggregates=("ReportPeriod", "ReportEdition"),
    metrics_port=9107,
    summary="the ministry's progress report: daily figures from every service's events, editions and exports",
)
