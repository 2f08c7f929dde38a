"""Settings for the chat example. Everything that differs per run comes from the environment.

- ``CHAT_REDIS_URL``: Redis URL(s) of the channel layer, comma-separated
  (default ``redis://127.0.0.1:6379``).
- ``CHAT_SERVER_NAME``: how this process names itself on the page (default: its pid).
- ``CHAT_SECRET_KEY``, ``CHAT_DEBUG``: the usual Django settings, for a real deployment.
"""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("CHAT_SECRET_KEY", "chat-example-not-a-secret-do-not-deploy")
DEBUG = os.environ.get("CHAT_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = ["channels", "chat"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "chatsite.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.csrf"]},
    }
]
# No models, no sessions, no logins: the example needs no database.
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

ASGI_APPLICATION = "chatsite.asgi.application"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "asgi_redis.RedisChannelLayer",
        "CONFIG": {
            "hosts": os.environ.get("CHAT_REDIS_URL", "redis://127.0.0.1:6379").split(","),
            "prefix": "chat:",
        },
    },
}

CHAT_SERVER_NAME = os.environ.get("CHAT_SERVER_NAME") or f"pid {os.getpid()}"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django.channels.worker": {"handlers": ["console"], "level": "INFO"},
        "chat": {"handlers": ["console"], "level": "INFO"},
    },
}
