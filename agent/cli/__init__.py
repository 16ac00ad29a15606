"""The ``healwatch`` command line: local commands (run, check, test, schema) and the remote ones."""
