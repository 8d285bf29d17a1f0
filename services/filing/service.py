"""The filing worker: dependencies and one-line entrypoints. The rules are in domain/, each
RPC's steps in handlers.py, the queries in repository.py."""
from __future__ import annotations

from nameko.timer import timer

from services.common.api import api
from services.common.entrypoints import SWEEP_INTERVAL, SettingsProvider, Worker, on_event
from services.common.uow import UnitOfWorkProvider
from services.filing import handlers
from services.filing.repository import FilingRepository
from services.filing.settings import load_settings


class FilingService(Worker):
    name = "filing"

    uow = UnitOfWorkProvider(FilingRepository)
    settings = SettingsProvider(load_settings)

    # --- applications (ch.2 art.3-7) ---------------------------------------------------
    @api
    def SubmitApplication(self, request, caller):
        return self.handle(handlers.submit_application, request, caller)

    @api
    def RequestSupplement(self, request, caller):
        return self.handle(handlers.request_supplement, request, caller)

    @api
    def SupplementApplication(self, request, caller):
        return self.handle(handlers.supplement_application, request, caller)

    @api
    def AcceptApplication(self, request, caller):
        return self.handle(handlers.accept_application, request, caller)

    @api
    def DecideApplication(self, request, caller):
        return self.handle(handlers.decide_application, request, caller)

    @api
    def GetApplication(self, request, caller):
        return self.handle(handlers.get_application, request, caller)

    @api
    def ListApplications(self, request, caller):
        return self.handle(handlers.list_applications, request, caller)

    @api
    def ListPendingDecisions(self, request, caller):
        return self.handle(handlers.list_pending_decisions, request, caller)

    # --- the register, changes, renewal, status (ch.2 art.8-9, ch.6 art.3-6) -----------
    @api
    def GetInstitution(self, request, caller):
        return self.handle(handlers.get_institution, request, caller)

    @api
    def ListRegister(self, request, caller):
        return self.handle(handlers.list_register, request, caller)

    @api
    def FileChange(self, request, caller):
        return self.handle(handlers.file_change, request, caller)

    @api
    def ApplyRenewal(self, request, caller):
        return self.handle(handlers.apply_renewal, request, caller)

    @api
    def SuspendInstitution(self, request, caller):
        return self.handle(handlers.suspend_institution, request, caller)

    @api
    def ReinstateInstitution(self, request, caller):
        return self.handle(handlers.reinstate_institution, request, caller)

    @api
    def TerminateFiling(self, request, caller):
        return self.handle(handlers.terminate_filing, request, caller)

    @api
    def DecideProposal(self, request, caller):
        return self.handle(handlers.decide_proposal, request, caller)

    @api
    def DecideQuotaExcess(self, request, caller):
        return self.handle(handlers.decide_quota_excess, request, caller)

    @api
    def ListQuotaUsage(self, request, caller):
        return self.handle(handlers.list_quota_usage, request, caller)

    # --- questions -----------------------------------------------------------------------
    @api
    def CheckEvaluationRight(self, request, caller):
        return self.handle(handlers.check_evaluation_right, request, caller)

    @api
    def CheckName(self, request, caller):
        return self.handle(handlers.check_name, request, caller)

    @api
    def ListAreas(self, request, caller):
        return self.handle(handlers.list_areas, request, caller)

    # --- certificates' facts: the dynamic scope counts them --------------------------------
    @on_event("certificates", "CertificatesIssued")
    def on_certificates_issued(self, event):
        return self.handle_event(handlers.count_certificates_issued, event)

    # --- inspection's decisions: filing applies its part, keyed on the decision id ----------
    @on_event("inspection", "SanctionDecided")
    def on_sanction_decided(self, event):
        return self.handle_event(handlers.sanction_decided, event)

    @on_event("inspection", "RectificationAccepted")
    def on_rectification_accepted(self, event):
        return self.handle_event(handlers.rectification_accepted, event)

    @on_event("inspection", "DecisionReversed")
    def on_decision_reversed(self, event):
        return self.handle_event(handlers.decision_reversed, event)

    # --- the clock -----------------------------------------------------------------------
    @timer(interval=SWEEP_INTERVAL)
    def sweep(self):
        return self.handle_timer(handlers.sweep)

    @timer(interval=SWEEP_INTERVAL)
    def lifecycle_sweep(self):
        return self.handle_timer(handlers.lifecycle_sweep)
