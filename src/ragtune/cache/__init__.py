"""Caches of whole answers: the permission-aware answer cache ``Project.ask`` consults (docs/cache.md)."""
