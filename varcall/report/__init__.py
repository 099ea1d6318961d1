"""The HTML report of one or more runs and their concordance."""
