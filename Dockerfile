# syntax=docker/dockerfile:1
#
# One image for every clicktrack process:
#   docker run IMAGE                              the web app: python -m app.serve (the default)
#   docker run IMAGE python -m app.flusher        one flusher
#   docker run IMAGE python -m app.cli migrate    an operator command (migrate, create-admin-key…)
#
# The base is pinned by its full version tag. For builds that are reproducible bit for bit, pin
# its digest as well (a tag can be re-pushed, a digest cannot) and let a bot propose the bumps:
#   ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>
# (`docker buildx imagetools inspect python:3.11.14-slim-bookworm` prints the digest.)
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: a virtualenv holding the project and its dependencies ----------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY app ./app
# The same two commands as the README's "Deploying": a venv, then the project from
# pyproject.toml (every dependency comes from there; there is no requirements file), each
# package at the version constraints.txt pins (the versions `make test` tested).
RUN python -m venv /opt/venv
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install --constraint=constraints.txt .

# app/core/migrate.py reads the SQL files from `migrations/` beside the `app` package. An installed
# (non-editable) package has no such folder, so put the files where the installed code looks,
# asking the code itself (-P: import the installed copy, not the one in /src), then check.
COPY migrations ./migrations
RUN target="$(/opt/venv/bin/python -P -c 'from app.core.migrate import MIGRATIONS_DIR; print(MIGRATIONS_DIR)')" \
 && mkdir -p "$target" \
 && cp migrations/*.sql "$target"/ \
 && /opt/venv/bin/python -P -c 'from app.core.migrate import load_migrations; assert load_migrations()'

# ---- runtime: the venv on a clean base, no build context, a non-root user ----------------------
FROM ${PYTHON_IMAGE} AS runtime

# A fixed numeric id: Kubernetes' runAsNonRoot can only verify a numeric USER.
RUN groupadd --system --gid 10001 clicktrack \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/clicktrack \
        --shell /usr/sbin/nologin clicktrack \
 && mkdir -p /var/lib/clicktrack/spool \
 && chown -R 10001:10001 /var/lib/clicktrack

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CLICKTRACK_HOST=0.0.0.0 \
    CLICKTRACK_PORT=8000 \
    CLICKTRACK_SPOOL_DIR=/var/lib/clicktrack/spool

# Not /src: nothing named `app` in the working directory may shadow the installed package.
WORKDIR /var/lib/clicktrack
# Clicks taken while Redis was failing wait here until replayed: this must outlive the
# container (a named volume in compose, a PersistentVolumeClaim per pod in Kubernetes).
VOLUME ["/var/lib/clicktrack/spool"]
USER 10001:10001

# 8000: the web app (CLICKTRACK_PORT); 9100: its metrics where CLICKTRACK_METRICS_PORT sets it
# (compose, Kubernetes); 9101: a flusher's Prometheus metrics.
EXPOSE 8000 9100 9101

# Liveness of the web app, without curl. A flusher or CLI container overrides or disables it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CLICKTRACK_PORT', '8000'), timeout=2)"]

CMD ["python", "-m", "app.serve"]
