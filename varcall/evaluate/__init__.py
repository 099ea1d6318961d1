"""After a run: concordance (identity, truth), QC."""
