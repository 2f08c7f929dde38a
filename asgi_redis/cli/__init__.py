"""Console tools beside the layer (``asgi-redis bench``, the demo); the layer never imports them."""
