"""Running a call: pipeline stages, Dask tasks, checkpoints, clusters, merge."""
