"""Grading (诚信等级评估) rules as pure functions: no broker, no database, no clock of their own.

Sources: seed 000 (Beijing's grading), seed 003 (red and black lists), seed 001 ch.6 art.3 and
ch.7. `domain.X` is the one way to reach a rule, wherever it is written:
- indicators.py: the versioned indicator system and its one check, the canonical hash, the
  built-in default catalogue;
- scoring.py: the vectorised scoring, bands, direct D, UNGRADED and the explanations;
- cycle.py: the yearly cycle: who is graded, what requests may say, facts and offences;
- lists.py: red and black lists, credit repair, the rewards of 001 ch.7.
"""
from services.grading.domain.cycle import *  # noqa: F401,F403
from services.grading.domain.indicators import *  # noqa: F401,F403
from services.grading.domain.lists import *  # noqa: F401,F403
from services.grading.domain.scoring import *  # noqa: F401,F403
