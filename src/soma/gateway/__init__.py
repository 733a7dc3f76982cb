"""The HTTP gateway: REST API, OpenAI-compatible endpoints, auth and rate limits."""
