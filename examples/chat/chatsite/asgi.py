"""The ASGI application served by daphne and used by ``manage.py runworker``.

- ``http``: ordinary Django views.
- ``websocket``: the chat consumer, for pages served from an allowed host.
- ``channel``: the shout worker, which only runs in ``manage.py runworker chat.shout``.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
# Set Django up before importing consumers (they may touch settings or models).
django_http = get_asgi_application()

from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from chat.consumers import ShoutWorker  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_http,
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
        "channel": ChannelNameRouter({ShoutWorker.channel: ShoutWorker.as_asgi()}),
    }
)
