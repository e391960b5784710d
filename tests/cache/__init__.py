"""Tests of the permission-aware answer cache."""
