"""Tests of ragtune.service: API keys, OIDC bearer tokens, roles."""
