"""The certificate registry's nameko worker: dependencies and one-line entrypoints. The rules
are in domain.py, each RPC's steps in handlers.py."""
from __future__ import annotations

from nameko.timer import timer

from services.certificates import handlers
from services.certificates.gateways import FilingGateway
from services.certificates.repository import CertificatesRepository
from services.certificates.settings import load_settings
from services.common.api import api
from services.common.entrypoints import SWEEP_INTERVAL, SettingsProvider, Worker, on_event
from services.common.service_rpc import ServiceRpcProxy
from services.common.uow import UnitOfWorkProvider


class CertificateRegistryService(Worker):
    name = "certificates"

    uow = UnitOfWorkProvider(CertificatesRepository)
    settings = SettingsProvider(load_settings)
    filing = ServiceRpcProxy("filing")

    @api
    def IssueCertificates(self, request, caller):
        return self.handle(handlers.issue_certificates, request, caller,
                           filing=FilingGateway(self.filing))

    @api
    def VerifyCertificate(self, request, caller):
        return self.handle(handlers.verify_certificate, request, caller)

    @api
    def GetCertificate(self, request, caller):
        return self.handle(handlers.get_certificate, request, caller)

    @api
    def ListCertificates(self, request, caller):
        return self.handle(handlers.list_certificates, request, caller)

    @api
    def GetIssuanceStats(self, request, caller):
        return self.handle(handlers.get_issuance_stats, request, caller)

    @api
    def InvalidateCertificates(self, request, caller):
        return self.handle(handlers.invalidate_certificates, request, caller)

    @api
    def WithdrawCertificates(self, request, caller):
        return self.handle(handlers.withdraw_certificates, request, caller)

    # filing's status of each institution (the newest event wins, in any delivery order)
    @on_event("filing", "InstitutionFiled")
    def on_institution_filed(self, event):
        return self.handle_event(handlers.filing_status_changed, event)

    @on_event("filing", "InstitutionSuspended")
    def on_institution_suspended(self, event):
        return self.handle_event(handlers.filing_status_changed, event)

    @on_event("filing", "InstitutionReinstated")
    def on_institution_reinstated(self, event):
        return self.handle_event(handlers.filing_status_changed, event)

    @on_event("filing", "FilingTerminated")
    def on_filing_terminated(self, event):
        return self.handle_event(handlers.filing_status_changed, event)

    @on_event("filing", "FilingExpired")
    def on_filing_expired(self, event):
        return self.handle_event(handlers.filing_status_changed, event)

    # inspection's decisions: certificates voided or withdrawn, restored on reversal
    @on_event("inspection", "SanctionDecided")
    def on_sanction_decided(self, event):
        return self.handle_event(handlers.inspection_decided, event)

    @on_event("inspection", "DecisionReversed")
    def on_decision_reversed(self, event):
        return self.handle_event(handlers.inspection_reversed, event)

    @timer(interval=SWEEP_INTERVAL)
    def sweep(self):
        return self.handle_timer(handlers.sweep)
