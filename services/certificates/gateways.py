"""What the registry asks filing, as itself (`service:certificates`), never with the caller's
token: "may institution X evaluate Y at level Z" is the registry's own question, filing lists
ROLE_SERVICE for it, and event handlers and the sweep have no caller at all."""
from __future__ import annotations

import logging

from nameko.exceptions import RemoteError

from services.common.errors import Unavailable

log = logging.getLogger(__name__)


class FilingGateway:
    def __init__(self, proxy):
        self.proxy = proxy  # a ServiceRpcProxy("filing") dependency

    def _ask(self, method: str, request: dict) -> dict | None:
        """filing's answer; None when filing says NotFound."""
        try:
            return getattr(self.proxy, method)(request)
        except RemoteError as exc:
            if exc.exc_type == "NotFound":
                return None
            if exc.exc_type == "MethodNotFound":  # filing not yet upgraded: try again later
                raise Unavailable(f"the filing service cannot answer {method} yet") from None
            log.error("filing.%s refused the registry's call: %s", method, exc.exc_type)
            raise

    def institution(self, institution_id: str) -> dict | None:
        answer = self._ask("GetInstitution", {"institution_id": institution_id})
        return None if answer is None else answer.get("institution") or {}

    def evaluation_right(self, institution_id: str, occupation: str, level: int,
                         on: str) -> tuple[bool, str]:
        answer = self._ask("CheckEvaluationRight", {
            "institution_id": institution_id, "occupation_code": occupation,
            "skill_level": level, "on_date": on}) or {}
        return bool(answer.get("allowed")), answer.get("reason") or "not in the filed scope"
