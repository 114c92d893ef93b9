"""The router's transports: Envoy's ExtProc gRPC server (`extproc`), the direct OpenAI-compatible proxy (`proxy`),
and the classification HTTP API (`api`). Each translates between its wire and `RequestRouter` / the core."""
