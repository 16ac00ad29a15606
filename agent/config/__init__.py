"""The agent's config file: one schema module per section, loading, and the reference generator."""
