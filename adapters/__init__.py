"""I/O adapters: the broker, the object store, experiment tracking and data lineage."""
