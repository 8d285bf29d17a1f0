"""The escrow service's nameko worker: dependencies and one-line entrypoints. The rules are in
domain/, each RPC's steps in handlers.py, the ledger's writer in repository.py."""
from __future__ import annotations

from nameko.timer import timer

from services.common import config
from services.common.api import api
from services.common.entrypoints import SWEEP_INTERVAL, SettingsProvider, Worker, on_event
from services.common.uow import UnitOfWorkProvider
from services.escrow import handlers
from services.escrow.repository import EscrowRepository
from services.escrow.settings import load_settings

# How often every ledger's journal is replayed for the conservation check (seconds).
CONSERVATION_INTERVAL = config.env_float("ESCROW_CONSERVATION_INTERVAL", 300.0)


class EscrowService(Worker):
    name = "escrow"

    uow = UnitOfWorkProvider(EscrowRepository)
    settings = SettingsProvider(load_settings)

    @api
    def FileScheme(self, request, caller):
        return self.handle(handlers.file_scheme, request, caller)

    @api
    def GetScheme(self, request, caller):
        return self.handle(handlers.get_scheme, request, caller)

    @api
    def ListSchemes(self, request, caller):
        return self.handle(handlers.list_schemes, request, caller)

    @api
    def RecordPayment(self, request, caller):
        return self.handle(handlers.record_payment, request, caller)

    @api
    def RecordAttendance(self, request, caller):
        return self.handle(handlers.record_attendance, request, caller)

    @api
    def CloseContract(self, request, caller):
        return self.handle(handlers.close_contract, request, caller)

    @api
    def GetContract(self, request, caller):
        return self.handle(handlers.get_contract, request, caller)

    @api
    def FileRefundComplaint(self, request, caller):
        return self.handle(handlers.file_refund_complaint, request, caller)

    @api
    def QuoteRefund(self, request, caller):
        return self.handle(handlers.quote_refund, request, caller)

    @api
    def DecideComplaint(self, request, caller):
        return self.handle(handlers.decide_complaint, request, caller)

    @api
    def GetComplaint(self, request, caller):
        return self.handle(handlers.get_complaint, request, caller)

    @api
    def ListComplaints(self, request, caller):
        return self.handle(handlers.list_complaints, request, caller)

    @api
    def GetRefundStatistics(self, request, caller):
        return self.handle(handlers.get_refund_statistics, request, caller)

    @api
    def GetCustodySummary(self, request, caller):
        return self.handle(handlers.get_custody_summary, request, caller)

    @api
    def CreateTransfers(self, request, caller):
        return self.handle(handlers.create_transfers, request, caller)

    @api
    def LookupTransfers(self, request, caller):
        return self.handle(handlers.lookup_transfers, request, caller)

    @api
    def LookupAccounts(self, request, caller):
        return self.handle(handlers.lookup_accounts, request, caller)

    @api
    def ListLedgerEntries(self, request, caller):
        return self.handle(handlers.list_ledger_entries, request, caller)

    @api
    def CheckConservation(self, request, caller):
        return self.handle(handlers.check_conservation, request, caller)

    # filing's status of each institution: an active filing takes prepaid fees
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

    @timer(interval=SWEEP_INTERVAL)
    def sweep(self):
        return self.handle_timer(handlers.sweep)

    @timer(interval=CONSERVATION_INTERVAL)
    def conservation(self):
        return self.handle_timer(handlers.conservation_sweep)
