"""The grading worker: dependencies and one-line entrypoints. The rules are in domain/, each
RPC's steps in handlers.py, what other services' events tell it in facts.py."""
from __future__ import annotations

from nameko.timer import timer

from services.common.api import api
from services.common.entrypoints import SWEEP_INTERVAL, SettingsProvider, Worker, on_event
from services.common.service_rpc import ServiceRpcProxy
from services.common.uow import UnitOfWorkProvider
from services.grading import facts, handlers
from services.grading.gateways import FilingGateway
from services.grading.repository import GradingRepository
from services.grading.settings import load_settings


def _event(producer: str, event_type: str, handler):
    """An event handler entrypoint running `handler` once per event id."""

    def entrypoint(self, event):
        return self.handle_event(handler, event)

    entrypoint.__name__ = f"on_{event_type}"
    return on_event(producer, event_type)(entrypoint)


class GradingService(Worker):
    name = "grading"

    uow = UnitOfWorkProvider(GradingRepository)
    settings = SettingsProvider(load_settings)
    filing = ServiceRpcProxy("filing")

    # --- indicator systems -----------------------------------------------------------------
    @api
    def CreateIndicatorSystem(self, request, caller):
        return self.handle(handlers.create_indicator_system, request, caller)

    @api
    def PublishIndicatorSystem(self, request, caller):
        return self.handle(handlers.publish_indicator_system, request, caller)

    @api
    def GetIndicatorSystem(self, request, caller):
        return self.handle(handlers.get_indicator_system, request, caller)

    @api
    def ListIndicatorSystems(self, request, caller):
        return self.handle(handlers.list_indicator_systems, request, caller)

    # --- the yearly cycle ------------------------------------------------------------------
    @api
    def OpenGradingYear(self, request, caller):
        return self.handle(handlers.open_grading_year, request, caller)

    @api
    def GetGradingYear(self, request, caller):
        return self.handle(handlers.get_grading_year, request, caller)

    @api
    def SubmitSelfAssessment(self, request, caller):
        return self.handle(handlers.submit_self_assessment, request, caller,
                           filing=FilingGateway(self.filing))

    @api
    def GetSelfAssessment(self, request, caller):
        return self.handle(handlers.get_self_assessment, request, caller)

    @api
    def ReviewAssessment(self, request, caller):
        return self.handle(handlers.review_assessment, request, caller,
                           filing=FilingGateway(self.filing))

    @api
    def ComputeGrades(self, request, caller):
        return self.handle(handlers.compute_grades, request, caller)

    @api
    def PublishGrades(self, request, caller):
        return self.handle(handlers.publish_grades, request, caller)

    # --- grades, appeals -------------------------------------------------------------------
    @api
    def GetGrade(self, request, caller):
        return self.handle(handlers.get_grade, request, caller)

    @api
    def ListGrades(self, request, caller):
        return self.handle(handlers.list_grades, request, caller)

    @api
    def AppealGrade(self, request, caller):
        return self.handle(handlers.appeal_grade, request, caller)

    @api
    def DecideAppeal(self, request, caller):
        return self.handle(handlers.decide_appeal, request, caller)

    # --- the integrity file, lists, credit repair ------------------------------------------
    @api
    def RecordCommendation(self, request, caller):
        return self.handle(handlers.record_commendation, request, caller)

    @api
    def ApplyCreditRepair(self, request, caller):
        return self.handle(handlers.apply_credit_repair, request, caller)

    @api
    def DecideCreditRepair(self, request, caller):
        return self.handle(handlers.decide_credit_repair, request, caller)

    @api
    def GetIntegrityFile(self, request, caller):
        return self.handle(handlers.get_integrity_file, request, caller)

    @api
    def ListRedList(self, request, caller):
        return self.handle(handlers.list_red_list, request, caller)

    @api
    def ListBlackList(self, request, caller):
        return self.handle(handlers.list_black_list, request, caller)

    # --- what other services' events tell grading (facts.py) ----------------------------
    on_institution_filed = _event("filing", "InstitutionFiled", facts.filing_status)
    on_institution_suspended = _event("filing", "InstitutionSuspended", facts.filing_status)
    on_institution_reinstated = _event("filing", "InstitutionReinstated", facts.filing_status)
    on_filing_terminated = _event("filing", "FilingTerminated", facts.filing_status)
    on_filing_expired = _event("filing", "FilingExpired", facts.filing_status)
    on_filing_renewed = _event("filing", "FilingRenewed", facts.filing_status)
    on_change_overdue = _event("filing", "ChangeOverdue", facts.change_overdue)
    on_certificates_issued = _event("certificates", "CertificatesIssued",
                                    facts.certificates_issued)
    on_certificates_invalidated = _event("certificates", "CertificatesInvalidated",
                                         facts.certificates_ended)
    on_certificates_withdrawn = _event("certificates", "CertificatesWithdrawn",
                                       facts.certificates_ended)
    on_sanction_decided = _event("inspection", "SanctionDecided", facts.sanction_decided)
    on_rectification_accepted = _event("inspection", "RectificationAccepted",
                                       facts.rectification_accepted)
    on_decision_reversed = _event("inspection", "DecisionReversed", facts.decision_reversed)
    on_complaint_resolved = _event("escrow", "ComplaintResolved", facts.complaint_resolved)
    on_cheating_confirmed = _event("courses", "CheatingConfirmed", facts.cheating_confirmed)

    @timer(interval=SWEEP_INTERVAL)
    def sweep(self):
        return self.handle_timer(handlers.sweep)
