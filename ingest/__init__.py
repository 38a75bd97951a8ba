"""Ingest commands: a batch or a commit from HTTP becomes events on the log, durably, then answered."""
