# OmniRouter production image: the ASGI web server, Celery workers and beat share it.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends gettext \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home omnirouter
WORKDIR /app
COPY pyproject.toml README.md ./
COPY omnirouter ./omnirouter
COPY routing ./routing
COPY presence ./presence
COPY supervisor ./supervisor
COPY messaging ./messaging
RUN pip install .
COPY . .
RUN DJANGO_SECRET_KEY=build-only python manage.py collectstatic --noinput \
    && DJANGO_SECRET_KEY=build-only python manage.py compilemessages --ignore=.venv \
    && chown -R omnirouter /app
USER omnirouter
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "omnirouter.asgi:application"]
