"""Wire formats shared by the model build and the services: BIO tag decoding (`bio`) and OpenAI chat-completion
server-sent events (`sse`). Depends on nothing else in this repository, so `build_engines`, `router_service` and
`cache_service` each import it without importing one another."""
