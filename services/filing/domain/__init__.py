"""Filing (备案) rules as pure functions: no broker, no database, no clock of their own.

Sources: seed 001 ch.2 art.2-9, ch.6 art.3-6; seed 002 §5.
Every number a regulator will check is a named constant; every reading of an ambiguous rule
is stated next to it. `domain.X` is the one way to reach a rule, wherever it is written:
- intake.py: the application, its materials and clocks (art.3-7), filing codes;
- lifecycle.py: conditions, quotas, changes, renewal, status, the right to evaluate,
  dynamic scope (ch.2 art.2, 8-9; ch.6 art.3-6);
- decisions.py: what a decision changes and what its event says;
- quotas.py: quota seats, excesses and city-wide allocation (ch.6 art.5);
- sanctions.py: inspection's decisions applied to the filing (ch.6 art.3-4);
- requests.py: what each request must say.
"""
from services.filing.domain.decisions import *  # noqa: F401,F403
from services.filing.domain.intake import *  # noqa: F401,F403
from services.filing.domain.lifecycle import *  # noqa: F401,F403
from services.filing.domain.quotas import *  # noqa: F401,F403
from services.filing.domain.requests import *  # noqa: F401,F403
from services.filing.domain.sanctions import *  # noqa: F401,F403
