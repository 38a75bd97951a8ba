"""The look-alike model as a library: catalog, features, training, evaluation, scoring.

Nothing here imports FastAPI or Kafka: the pipeline consumer, the DVC stages, the benchmarks and
the tests call the same functions.
"""

# Polars' allocator (jemalloc) keeps freed pages for reuse by default, so a step's peak stays resident
# for the rest of the process. Processes that run this library's heavy steps (the pipeline's stage
# processes, the benchmarks) start with this in their environment. It is read when polars loads, which
# appends it to polars' own default (the last value of an option wins), and polars writes the result
# back into the environment: set it by assignment, never as a default (processors/stage_process.py).
# What it saves is in docs/benchmarks.md (the stages' allocator).
ALLOCATOR_ENV = {"_RJEM_MALLOC_CONF": "dirty_decay_ms:0,muzzy_decay_ms:0"}
