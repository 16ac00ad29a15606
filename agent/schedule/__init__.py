"""When things run: the jobs built from the config, their phase on the interval grid, the rule jobs."""
