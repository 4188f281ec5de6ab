# Production image of 医保小助手. Runs against a real MongoDB (see docker-compose.yml);
# the embedded SecantusDB is installed by requirements.txt but only used when MONGODB_URI is unset.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    APP_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/data

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app \
    && mkdir -p /data && chown app:app /data
COPY --chown=app:app bot ./bot
COPY --chown=app:app handlers ./handlers
COPY --chown=app:app scheduling ./scheduling
COPY --chown=app:app knowledge ./knowledge

USER app
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"8080\")}/healthz', timeout=2)" || exit 1

ENTRYPOINT ["python", "-m", "bot"]
CMD ["serve"]
