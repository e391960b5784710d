"""ragtune: choose between RAG, fine-tuning and hybrid, then run it in production."""

__version__ = "0.1.0"
