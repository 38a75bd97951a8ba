"""Domain vocabulary shared by every process: settings, table schemas, events, topology."""
