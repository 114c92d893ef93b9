"""Clients of the services the router calls: Triton's signals model (`triton`) and the conversation pin store in
Redis (`pins`). The semantic-cache client is the cache service's own published client, `cache_service.client`."""
