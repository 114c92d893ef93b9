"""The router's pure decision core: request validation, routing, guards, PII masking, conversation pinning and the
rendering of every answer the router gives itself. No I/O: `router_service.router` feeds it signals and pins."""
