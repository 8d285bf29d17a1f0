"""The report's rules, pure: what each figure counts (definition.py), when editions are due
(schedule.py), and how figures, editions and their differences follow from the events
(figures.py). No I/O here."""
