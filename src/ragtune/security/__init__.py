"""Security helpers shared across ragtune: redaction of secrets from messages, logs and spans.

Modules here import only the standard library, so the CLI can use them without slowing its start.
"""
