"""The HTTP API: routes that parse requests, hand them to ingest or read projections, and answer."""
