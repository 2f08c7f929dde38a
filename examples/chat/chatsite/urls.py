"""HTTP routes: the room page and the announce view (websockets are in ``chat.routing``)."""

from __future__ import annotations

from django.urls import path, re_path

from chat import views

urlpatterns = [
    path("", views.index, name="index"),
    re_path(r"^rooms/(?P<room>[A-Za-z0-9_-]{1,50})/$", views.room, name="room"),
    re_path(r"^rooms/(?P<room>[A-Za-z0-9_-]{1,50})/announce$", views.announce, name="announce"),
]
