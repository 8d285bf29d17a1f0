"""The inspection worker: one-line entrypoints (rules in domain/, steps in handlers.py)."""
from __future__ import annotations

from nameko.timer import timer

from services.common.api import api
from services.common.entrypoints import SWEEP_INTERVAL, SettingsProvider, Worker, on_event
from services.common.uow import UnitOfWorkProvider
from services.inspection import handlers
from services.inspection.repository import InspectionRepository
from services.inspection.settings import load_settings


def follow(producer: str, event_type: str, handler):
    """An event entrypoint that hands the producer's message to `handler`, once per event."""
    @on_event(producer, event_type)
    def entrypoint(self, event):
        return self.handle_event(handler, event)
    return entrypoint


class InspectionService(Worker):
    name = "inspection"
    uow = UnitOfWorkProvider(InspectionRepository)
    settings = SettingsProvider(load_settings)

    # --- the plan and the inspector register (ch.5 art.1) --------------------------------
    @api
    def CreatePlan(self, request, caller):
        return self.handle(handlers.create_plan, request, caller)

    @api
    def GetPlan(self, request, caller):
        return self.handle(handlers.get_plan, request, caller)

    @api
    def RegisterInspector(self, request, caller):
        return self.handle(handlers.register_inspector, request, caller)

    @api
    def DeclareConflict(self, request, caller):
        return self.handle(handlers.declare_conflict, request, caller)

    @api
    def ListInspectors(self, request, caller):
        return self.handle(handlers.list_inspectors, request, caller)

    # --- random draws ("双随机") ----------------------------------------------------------
    @api
    def CommitDraw(self, request, caller):
        return self.handle(handlers.commit_draw, request, caller)

    @api
    def RevealDraw(self, request, caller):
        return self.handle(handlers.reveal_draw, request, caller)

    @api
    def VerifyDraw(self, request, caller):
        return self.handle(handlers.verify_draw, request, caller)

    @api
    def GetDraw(self, request, caller):
        return self.handle(handlers.get_draw, request, caller)

    @api
    def ListDraws(self, request, caller):
        return self.handle(handlers.list_draws, request, caller)

    @api
    def Recuse(self, request, caller):
        return self.handle(handlers.recuse, request, caller)

    # --- "一公开", complaints, cases; findings, due process, decisions (ch.6) -----------------
    @api
    def ListPublishedResults(self, request, caller):
        return self.handle(handlers.list_published_results, request, caller)

    @api
    def FileComplaint(self, request, caller):
        return self.handle(handlers.file_complaint, request, caller)

    @api
    def OpenCase(self, request, caller):
        return self.handle(handlers.open_case, request, caller)

    @api
    def ListCases(self, request, caller):
        return self.handle(handlers.list_cases, request, caller)

    @api
    def GetCase(self, request, caller):
        return self.handle(handlers.get_case, request, caller)

    @api
    def RecordFinding(self, request, caller):
        return self.handle(handlers.record_finding, request, caller)

    @api
    def CompleteInspection(self, request, caller):
        return self.handle(handlers.complete_inspection, request, caller)

    @api
    def NotifyIntendedDecision(self, request, caller):
        return self.handle(handlers.notify_intended_decision, request, caller)

    @api
    def StateCase(self, request, caller):
        return self.handle(handlers.state_case, request, caller)

    @api
    def Decide(self, request, caller):
        return self.handle(handlers.decide, request, caller)

    @api
    def RequestReview(self, request, caller):
        return self.handle(handlers.request_review, request, caller)

    @api
    def DecideReview(self, request, caller):
        return self.handle(handlers.decide_review, request, caller)

    @api
    def SubmitRectification(self, request, caller):
        return self.handle(handlers.submit_rectification, request, caller)

    @api
    def AcceptRectification(self, request, caller):
        return self.handle(handlers.accept_rectification, request, caller)

    # --- others' facts: the register, the grades, monitoring anomalies ---------------------
    on_institution_filed = follow("filing", "InstitutionFiled", handlers.filing_status_changed)
    on_suspended = follow("filing", "InstitutionSuspended", handlers.filing_status_changed)
    on_reinstated = follow("filing", "InstitutionReinstated", handlers.filing_status_changed)
    on_terminated = follow("filing", "FilingTerminated", handlers.filing_status_changed)
    on_expired = follow("filing", "FilingExpired", handlers.filing_status_changed)
    on_renewed = follow("filing", "FilingRenewed", handlers.filing_status_changed)
    on_lapsed = follow("filing", "EvaluationLapsed", handlers.evaluation_lapsed)
    on_termination_proposed = follow("filing", "TerminationProposed",
                                     handlers.termination_proposed)
    on_grade_published = follow("grading", "GradePublished", handlers.grade_published)
    on_grade_revised = follow("grading", "GradeRevised", handlers.grade_published)
    on_certificates_issued = follow("certificates", "CertificatesIssued",
                                    handlers.certificates_issued)
    on_refund_complaint = follow("escrow", "RefundComplaintFiled", handlers.refund_complaint_filed)
    on_cheating_confirmed = follow("courses", "CheatingConfirmed", handlers.cheating_confirmed)
    # the due-process clocks
    @timer(interval=SWEEP_INTERVAL)
    def sweep(self):
        return self.handle_timer(handlers.sweep)
