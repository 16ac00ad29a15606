"""The "see it heal" end-to-end incident scenario (see run.py)."""
