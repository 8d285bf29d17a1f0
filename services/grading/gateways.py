"""What grading asks filing, as itself (`service:grading`): an institution grading has not
heard of yet (filing's InstitutionFiled is on its way: a filing and a self-assessment a moment
later must not be refused for the bus's latency)."""
from __future__ import annotations

import logging

from nameko.exceptions import RemoteError

from services.common.errors import Unavailable

log = logging.getLogger(__name__)


class FilingGateway:
    def __init__(self, proxy):
        self.proxy = proxy  # a ServiceRpcProxy("filing") dependency

    def institution(self, institution_id: str) -> dict | None:
        """Filing's record of the institution; None when filing has none."""
        try:
            answer = self.proxy.GetInstitution({"institution_id": institution_id})
        except RemoteError as exc:
            if exc.exc_type == "NotFound":
                return None
            if exc.exc_type == "MethodNotFound":
                raise Unavailable("the filing service cannot answer GetInstitution") from None
            log.error("filing.GetInstitution refused grading's call: %s", exc.exc_type)
            raise
        return (answer or {}).get("institution") or None
