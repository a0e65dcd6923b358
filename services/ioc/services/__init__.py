"""Long-running services that serve the data (the pager receiver, ...)."""
