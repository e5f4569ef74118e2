# syntax=docker/dockerfile:1
# One image for every role of deploy/Procfile (nginx, web, ws, worker, beat); the command
# chooses the role. compose.yaml and deploy/k8s/ run exactly the Procfile's commands from
# /app, so `.venv/bin/...` resolves here as it does in a checkout, without the Procfile's
# deploy/supervise.py: Docker and Kubernetes restart containers themselves
# (tests/ops/test_containers.py checks that they agree).

# --- build: the virtualenv with the runtime requirements (pip and its caches stay here) ---
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt .
# The runtime half of requirements.txt: everything above its "# Tests and tooling" line.
RUN sed '/^# Tests and tooling/,$d' requirements.txt > requirements-runtime.txt \
    && python -m venv /app/.venv \
    && /app/.venv/bin/pip install -r requirements-runtime.txt

# --- runtime: Python, nginx (Debian's, for the nginx role), the venv and the code; no compilers, no pip caches ---
FROM python:3.11-slim-bookworm AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 xiaoxiang \
    && useradd --system --uid 10001 --gid xiaoxiang --home-dir /app --shell /usr/sbin/nologin xiaoxiang
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=xiaoxiang.settings \
    PORT=8080 \
    WEB_HOST=0.0.0.0 \
    WEB_PORT=8000 \
    WS_HOST=0.0.0.0 \
    WS_PORT=8001 \
    WORKER_METRICS_HOST=0.0.0.0 \
    WORKER_METRICS_PORT=9808 \
    CELERY_BEAT_SCHEDULE=/tmp/celerybeat-schedule
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY . .
# Static files are part of the image: collected now, served by WhiteNoise at run time.
RUN DEBUG=true .venv/bin/python manage.py collectstatic --noinput -v0 \
    && .venv/bin/python -m compileall -q xiaoxiang orders tracking notifications
USER 10001:10001
EXPOSE 8000 8001 8080 9808
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD [".venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# The web role; compose.yaml and deploy/k8s/ give the other roles their Procfile command.
CMD [".venv/bin/gunicorn", "--config", "deploy/gunicorn.conf.py", "xiaoxiang.wsgi"]
