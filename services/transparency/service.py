"""The decision log's nameko worker: one entrypoint per RPC and per decision event. Which events
are decisions, and what of them is logged, is in domain.py."""
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
from services.transparency import handlers
from services.transparency.repository import LogRepository
from services.transparency.settings import load_settings


def _logs(producer: str, event_type: str):
    return event_entrypoint(producer, event_type, handlers.record_decision(producer, event_type))


class TransparencyLogWorker(Worker):
    name = "transparency"

    uow = UnitOfWorkProvider(LogRepository)
    settings = SettingsProvider(load_settings)

    @api
    def GetLogHead(self, request, caller):
        return self.handle(handlers.get_log_head, request, caller)

    @api
    def GetInclusionProof(self, request, caller):
        return self.handle(handlers.get_inclusion_proof, request, caller)

    @api
    def GetConsistencyProof(self, request, caller):
        return self.handle(handlers.get_consistency_proof, request, caller)

    @api
    def ListLogEntries(self, request, caller):
        return self.handle(handlers.list_log_entries, request, caller)

    on_filing_filed = _logs("filing", "InstitutionFiled")
    on_filing_renewed = _logs("filing", "FilingRenewed")
    on_filing_terminated = _logs("filing", "FilingTerminated")
    on_certificates_invalidated = _logs("certificates", "CertificatesInvalidated")
    on_certificates_withdrawn = _logs("certificates", "CertificatesWithdrawn")
    on_sanction_decided = _logs("inspection", "SanctionDecided")
    on_decision_reversed = _logs("inspection", "DecisionReversed")
    on_grade_published = _logs("grading", "GradePublished")
    on_grade_revised = _logs("grading", "GradeRevised")

    @timer(interval=SWEEP_INTERVAL)
    def sweep(self):
        return self.handle_timer(handlers.sweep)
