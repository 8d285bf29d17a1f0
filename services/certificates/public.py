"""Public verification: anyone asks whether a certificate number belongs to a named holder.

One implementation, two callers: the worker's `VerifyCertificate` handler (handlers.py, for
callers on the bus) and the edge, which answers the public's calls itself, read-only, from
this service's database without crossing the bus (the SPEC's `edge_reads`; the edge loads
EDGE_READS below, services/common/edge_reads.py). Both parse the question, look the number up
and answer here, and count the answer in the same counter, in whichever process answered.

No nameko or eventlet here (the edge imports this module), and no mongoengine document: the
lookup is one query on the unique index on the number (models.py), reading only the fields
the answer shows.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import Counter

from services.certificates import domain
from services.certificates.views import not_found_view, verification_view

VERIFICATIONS = Counter("vocreg_certificate_verifications_total",
                        "Public verifications by result.", ["result"])

COLLECTION = "certificates"  # models.Certificate's collection
# What the answer shows, and the holder's name it is checked against; nothing else is read.
# The whole `invalidation` entry is small; its decision reference is never shown.
FIELDS = ("certificate_number", "holder_name", "holder_id_number", "occupation_code",
          "occupation_name", "skill_level", "issued_on", "issuer_name", "status",
          "invalidation")
PROJECTION = {"_id": 0, **{name: 1 for name in FIELDS}}

Lookup = Callable[[str], Mapping | None]


def find(collection, number: str) -> Mapping | None:
    """The certificate with this number (pymongo collection), its public fields only."""
    return collection.find_one({"certificate_number": number}, PROJECTION)


def verify(request: dict, lookup: Lookup) -> dict:
    """The answer to a VerifyCertificateRequest (as a dict); InvalidArgument for a bad one."""
    number, name = domain.parse_verification(request)
    record = lookup(number)
    if record is None or not domain.holder_matches(record.get("holder_name"), name):
        VERIFICATIONS.labels("not_found").inc()
        return not_found_view(number)
    answer = verification_view(record)
    VERIFICATIONS.labels(answer["result"].replace("VERIFICATION_RESULT_", "").lower()).inc()
    return answer


def verify_in(request: dict, database) -> dict:
    """VerifyCertificate on a pymongo Database of this service (the edge's connection)."""
    collection = database[COLLECTION]
    return verify(request, lambda number: find(collection, number))


EDGE_READS = {"VerifyCertificate": verify_in}
