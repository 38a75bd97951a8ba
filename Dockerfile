# One image for every process of the service (API, Faust worker, pipeline, provisioning, MLflow).
# No Docker engine where it is developed: scripts/rehearse_container.sh (`make rehearse`, run by .ci/run)
# lints this file, builds its dependency layer as a clean venv and starts compose's api service from it.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GX_ANALYTICS_ENABLED=false \
    DVC_NO_ANALYTICS=1 \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
    LAL_WORK_DIR=/var/lib/lal \
    PORT=8080

# Dependencies first, in their own layer: code changes do not reinstall them. Every package has a
# wheel for CPython 3.11 on manylinux (antlr4-python3-runtime is a pure-Python sdist), so no compiler
# enters the image. The constraints pin every version: pip alone backtracks for over 15 minutes.
COPY requirements.txt scripts/constraints.txt /tmp/deps/
RUN pip install --no-cache-dir -r /tmp/deps/requirements.txt -c /tmp/deps/constraints.txt \
    && rm -rf /tmp/deps

# The state directories compose mounts named volumes on: a new volume takes the image's directory,
# ownership included, so the non-root user can write to it.
RUN useradd --create-home --uid 10001 --user-group app \
    && install -d -o app -g app /var/lib/lal /var/lib/mlflow
WORKDIR /app
COPY --chown=app:app domain ./domain
COPY --chown=app:app adapters ./adapters
COPY --chown=app:app ingest ./ingest
COPY --chown=app:app processors ./processors
COPY --chown=app:app projections ./projections
COPY --chown=app:app serving ./serving
COPY --chown=app:app ml ./ml
COPY --chown=app:app quality ./quality
COPY --chown=app:app datagen ./datagen
COPY --chown=app:app stages ./stages
COPY --chown=app:app bootstrap ./bootstrap
COPY --chown=app:app .dvc/config ./.dvc/config
COPY --chown=app:app params.yaml dvc.yaml dvc.lock .dvcignore README.md ./
# `dvc repro` may run in here: it writes data/, models/, reports/ and .dvc/tmp beside the code.
RUN chown app:app /app /app/.dvc
USER 10001:10001

EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=30 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('PORT', '8080'), timeout=2)"]
CMD ["python", "-m", "bootstrap", "api"]
