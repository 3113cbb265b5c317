FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1
COPY pyproject.toml requirements.lock ./
COPY . .
RUN pip install --no-cache-dir -c requirements.lock -e . \
    && ALLOW_DEV_SECRET_KEY=1 python manage.py collectstatic --no-input
# 8000: HTTP (gunicorn, config/gunicorn.py); 8001: WebSocket (daphne), as
# docker-compose.yml runs them. The default command is one daphne serving both, enough for
# a single container; production splits them (docs/operations.md#process-layout).
EXPOSE 8000 8001
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "--websocket_connect_timeout", "30", "config.asgi:application"]
