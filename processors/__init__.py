"""Stream processors: the batch ledger and snapshot sealer (Faust), and the pipeline consumer."""
