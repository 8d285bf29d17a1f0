"""The report's nameko worker: one entrypoint per RPC, per event it reads (the definition's
sources) and the sweep. The rules are in domain/, each RPC's steps in handlers.py."""
from __future__ import annotations

from nameko.timer import timer

from services.common.api import api
from services.common.entrypoints import (
    SWEEP_INTERVAL,
    SettingsProvider,
    Worker,
    event_entrypoint,
)
from services.common.uow import UnitOfWorkProvider
from services.reporting import handlers
from services.reporting.repository import ReportingRepository
from services.reporting.settings import load_settings


def _reads(producer: str, event_type: str):
    return event_entrypoint(producer, event_type, handlers.record_event(producer, event_type))


class ReportingService(Worker):
    name = "reporting"

    uow = UnitOfWorkProvider(ReportingRepository)
    settings = SettingsProvider(load_settings)

    @api
    def GetReportDefinition(self, request, caller):
        return self.handle(handlers.get_report_definition, request, caller)

    @api
    def ListEditions(self, request, caller):
        return self.handle(handlers.list_editions, request, caller)

    @api
    def GetEdition(self, request, caller):
        return self.handle(handlers.get_edition, request, caller)

    @api
    def GenerateEdition(self, request, caller):
        return self.handle(handlers.generate_edition, request, caller)

    @api
    def SubmitEdition(self, request, caller):
        return self.handle(handlers.submit_edition, request, caller)

    @api
    def DiffEditions(self, request, caller):
        return self.handle(handlers.diff_editions, request, caller)

    @api
    def ExplainFigure(self, request, caller):
        return self.handle(handlers.explain_figure, request, caller)

    @api
    def ExportEdition(self, request, caller):
        return self.handle(handlers.export_edition, request, caller)

    @api
    def GetDailyFigures(self, request, caller):
        return self.handle(handlers.get_daily_figures, request, caller)

    @api
    def RebuildFigures(self, request, caller):
        return self.handle(handlers.rebuild_figures, request, caller)

    # Every event the report definition reads (domain/definition.py SOURCES; a test checks
    # this list against it): the event logged once, then the daily figures follow the log.
    on_filing_suspended = _reads("filing", "InstitutionSuspended")
    on_filing_terminated = _reads("filing", "FilingTerminated")
    on_certificates_invalidated = _reads("certificates", "CertificatesInvalidated")
    on_certificates_withdrawn = _reads("certificates", "CertificatesWithdrawn")
    on_inspection_completed = _reads("inspection", "InspectionCompleted")
    on_inspection_finding = _reads("inspection", "FindingRecorded")
    on_inspection_sanction = _reads("inspection", "SanctionDecided")
    on_inspection_outcome = _reads("inspection", "CaseOutcomeRecorded")
    on_escrow_complaint_resolved = _reads("escrow", "ComplaintResolved")
    on_courses_delisted = _reads("courses", "CourseDelisted")
    on_courses_cheating_confirmed = _reads("courses", "CheatingConfirmed")

    @timer(interval=SWEEP_INTERVAL)
    def sweep(self):
        return self.handle_timer(handlers.sweep)
