"""The escrow service's documents (database alias "escrow"). Class names are unique across all
services (mongoengine registers documents by class name in one process). Money is integer fen;
dates are ISO strings (they sort as dates); times are UTC datetimes.

The ledger itself is two collections written straight through pymongo by the repository:
`ledger_entries` (append-only, one document per journal entry with all its legs) and
`ledger_accounts` (the accounts, with a cached balance that is only ever a shortcut: the
entries after its sequence are added on every read). Trainee names and phones are personal
data: never logged, masked in every answer but the regulator's."""
from __future__ import annotations

import mongoengine as me

from services.common.storage import Aggregate

ALIAS = "escrow"


class EscrowInstitution(Aggregate):
    """Filing's status of an institution as its events told (the newest applied wins), its
    district, and the last conservation check of its ledger (which carries the
    ConservationBreached event)."""

    meta = {"db_alias": ALIAS, "collection": "institutions", "indexes": ["status"]}

    institution_id = me.StringField(primary_key=True)
    status = me.StringField()
    reason = me.StringField()
    district_code = me.StringField()
    changed_at = me.StringField()   # the applied filing event's occurred_at
    sequence = me.IntField()        # the applied filing event's meta.sequence
    event_id = me.StringField()
    conserved = me.BooleanField()
    checked_at = me.DateTimeField()
    breach = me.StringField()


class EscrowScheme(Aggregate):
    meta = {"db_alias": ALIAS, "collection": "schemes",
            "indexes": [{"fields": ["institution_id", "scheme_code"], "unique": True},
                        # ListSchemes pages on scheme_id, the primary key (keyset): the local
                        # server's _id index is not an ordered one (a sort or range on _id
                        # scans the collection there), so the list has its own, alone and
                        # after its one filter, the institution
                        # (tests/integration/test_list_indexes.py).
                        "-scheme_id",
                        ("institution_id", "scheme_id")]}

    scheme_id = me.StringField(primary_key=True)
    institution_id = me.StringField(required=True)
    scheme_code = me.StringField(required=True)
    name = me.StringField(required=True)
    courses = me.ListField(me.StringField())
    price_per_hour_fen = me.IntField(required=True)
    class_hours = me.IntField(required=True)
    valid_from = me.StringField(required=True)
    valid_until = me.StringField(required=True)
    refund_terms = me.DictField()
    custodian_id = me.StringField(required=True)
    filed_on = me.StringField(required=True)
    max_hours_per_charge = me.IntField()
    max_months_per_charge = me.IntField()


class EscrowContract(Aggregate):
    """A trainee's contract: who, which scheme, its charges. Its money is in the ledger (account
    contract/<number>); `ops` are the money movements being made: each is written here first
    (its transfers with their ids), then to the ledger, then marked done with its event, so a
    crash in between is finished by the sweep with the same transfer ids, never twice."""

    meta = {"db_alias": ALIAS, "collection": "contracts",
            "indexes": [("institution_id", "contract_id"), "trainee_id", "ops.state",
                        # One payment per bank reference in a ledger, enforced by the database.
                        {"fields": ["bank_references"], "unique": True, "sparse": True}]}

    key = me.StringField(primary_key=True)  # "<institution_id>/<contract_id>"
    institution_id = me.StringField(required=True)
    contract_id = me.StringField(required=True)
    scheme_id = me.StringField(required=True)
    custodian_id = me.StringField(required=True)
    trainee_id = me.StringField(required=True)
    trainee_name = me.StringField()
    signed_on = me.StringField(required=True)
    state = me.StringField(required=True)
    price_per_hour_fen = me.IntField(required=True)
    hours_bought = me.IntField(default=0)
    lessons_taken = me.IntField(default=0)
    first_lesson_on = me.StringField()
    charges = me.ListField(me.DictField())
    # "<institution_id>/<bank reference>" of every charge.
    bank_references = me.ListField(me.StringField())
    closed_on = me.StringField()
    close_reason = me.StringField()
    ops = me.ListField(me.DictField())


class RefundComplaint(Aggregate):
    meta = {"db_alias": ALIAS, "collection": "complaints",
            "indexes": [
                # ListComplaints pages on complaint_id, the primary key (keyset): the local
                # server's _id index is not an ordered one (a sort or range on _id scans the
                # collection there), and it uses an index only when its leading fields are
                # the whole filter, so the list has the key alone and one index per set of
                # filters it sends, those fields then the key: the regulator's (institution,
                # state, both), an institution's own (institution, with a state or not) and a
                # trainee's own (the trainee, with an institution, a state or both)
                # (tests/integration/test_list_indexes.py).
                "-complaint_id",
                ("institution_id", "complaint_id"),
                ("state", "complaint_id"),
                ("institution_id", "state", "complaint_id"),
                ("trainee_id", "complaint_id"),
                ("trainee_id", "state", "complaint_id"),
                ("trainee_id", "institution_id", "complaint_id"),
                ("trainee_id", "institution_id", "state", "complaint_id"),
                "contract_key", "filed_at", "decided_at"]}

    complaint_id = me.StringField(primary_key=True)
    institution_id = me.StringField(required=True)
    contract_id = me.StringField(required=True)
    contract_key = me.StringField(required=True)
    trainee_id = me.StringField()
    district_code = me.StringField()
    complainant_name = me.StringField()
    complainant_phone = me.StringField()
    reason = me.StringField()
    on_behalf = me.BooleanField(default=False)
    filed_on = me.StringField(required=True)
    filed_at = me.DateTimeField(required=True)
    state = me.StringField(required=True)
    quote_at_filing = me.DictField()
    refunded_fen = me.IntField(default=0)
    decision_reasons = me.ListField(me.StringField())
    decision_ref = me.StringField()
    resolved_on = me.StringField()
    decided_at = me.DateTimeField()
    transfer_id = me.StringField()


class LedgerEntry(me.Document):
    """One journal entry: a transfer with all its legs (see services/escrow/domain/ledger.py).
    Written by insert only (repository.append), never updated or deleted."""

    meta = {"db_alias": ALIAS, "collection": "ledger_entries", "strict": False,
            "indexes": [
                # The journal's order: an entry takes the next sequence of its ledger, and the
                # database refuses a second writer of the same sequence, so two concurrent
                # writers never both apply against the same balances.
                {"fields": ["ledger", "seq"], "unique": True},
                # A pending transfer is settled (posted, voided, expired) once.
                {"fields": ["settles"], "unique": True, "sparse": True},
                ("accounts", "seq"),
                ("ledger", "contract_id", "kind"),
                ("code", "effective_at"),
                "complaint_id",
            ]}

    id = me.StringField(primary_key=True)  # "<ledger>/<transfer id>"
    ledger = me.StringField(required=True)
    seq = me.IntField(required=True)
    settles = me.StringField()
    accounts = me.ListField(me.StringField())
    contract_id = me.StringField()
    kind = me.StringField()
    code = me.StringField()
    effective_at = me.DateTimeField()
    complaint_id = me.StringField()


class LedgerAccount(me.Document):
    """An account of a ledger; `cache` is its balance after entry `cache_seq` (a shortcut)."""

    meta = {"db_alias": ALIAS, "collection": "ledger_accounts", "strict": False,
            "indexes": [("ledger", "kind")]}

    id = me.StringField(primary_key=True)  # "<ledger>/<local id>"
    ledger = me.StringField(required=True)
    kind = me.StringField(required=True)


class PendingTimeout(me.Document):
    """A pending transfer with a timeout, until it is settled: what the expiry sweep reads.
    Written before the pending entry (a leftover with no entry is dropped by the sweep)."""

    meta = {"db_alias": ALIAS, "collection": "pending_timeouts", "indexes": ["timeout_at"]}

    id = me.StringField(primary_key=True)  # the pending entry's id
    ledger = me.StringField(required=True)
    timeout_at = me.DateTimeField(required=True)
