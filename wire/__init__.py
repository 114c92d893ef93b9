"""Wire formats shared by the model build and the services: BIO tag decoding (`bio`), OpenAI chat-completion
server-sent events (`sse`) and the Responses API's input read as chat messages (`responses`). Depends on nothing else
in this repository, so `build_engines`, `router_service` and `cache_service` each import it without importing one
another."""
