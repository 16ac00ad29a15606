"""A bad deploy rolled back by a playbook that proves the heal on real scraped series (issue #17)."""
