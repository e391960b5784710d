"""Hybrid pipelines: YAML specs of steps over the RAG and tuning flows, and their runner."""
