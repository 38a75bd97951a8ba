"""The look-alike model as a library: catalog, features, training, evaluation, scoring.

Nothing here imports FastAPI or Kafka: the pipeline consumer, the DVC stages, the benchmarks and
the tests call the same functions.
"""
