"""The escrow service's rules, pure: the ledger (ledger.py) and the prepaid-fee rules
(rules.py: schemes, charges, refunds, the period figures)."""
