"""Online course review rules as pure functions: no broker, no database, no clock of their own.

Sources: seed 004 (Beijing online-training process management, 2021); seed 002 §5.
- content.py: what a submitted course must hold; its text and normalised hashes;
- checks.py: the automatic checks (parts, question bank, relatedness, titles, copyright);
- reuse.py: shingles, MinHash signatures and the LSH Ensemble containment index;
- lifecycle.py: review, delisting, deletion; providers' issues and sanctions;
- learning.py: learning sessions, cheating, employers' standing, item statistics, ratings.
"""
