"""The chat app: a websocket consumer per browser tab, a broadcast view, a shout worker."""
