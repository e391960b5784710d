"""The identity layer the service shares with the MCP server and the CLI: API keys, OIDC bearer JWTs, roles.

Framework-free: nothing here imports a web framework, so every front end authenticates the same way.
"""
