"""Plain synchronous Django views. ``announce`` broadcasts through the channel layer."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from chat.consumers import MAX_TEXT, chat_event, room_group


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """Send visitors to the default room."""
    return redirect("room", room="lobby")


@require_GET
def room(request: HttpRequest, room: str) -> HttpResponse:
    """The chat page of one room."""
    return render(request, "chat/room.html", {"room": room, "server": settings.CHAT_SERVER_NAME})


@require_POST
def announce(request: HttpRequest, room: str) -> HttpResponse:
    """Broadcast the posted ``text`` to everyone in the room, from sync code.

    This is how an ordinary view, signal handler or management command talks to websockets:
    ``async_to_sync(channel_layer.group_send)``. Each call may run on a new event loop.
    """
    text = request.POST.get("text", "").strip()[:MAX_TEXT]
    if not text:
        return HttpResponseBadRequest("text is required")
    event = chat_event("announce", "server announcement", text, settings.CHAT_SERVER_NAME)
    async_to_sync(get_channel_layer().group_send)(room_group(room), event)
    return JsonResponse({"sent": True, "room": room})
