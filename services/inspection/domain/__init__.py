"""Inspection's pure rules (no I/O, no nameko, no mongoengine):

- draw.py: the verifiable random draw ("双随机"), standard library only, so that anyone can
  re-run a published draw (services/inspection/verify_draw.py);
- rules.py: the plan and its defaults, the articles of seed 001 ch.6 and their tiers,
  escalation, due-process clocks, decision effects, triggers, masking.
"""
