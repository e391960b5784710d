"""``ragtune extract``: fill a table of fields (names, questions, optional types) from ingested documents with a
fine-tuned span reader, reading only what the principal may read (``fields``, ``run``, ``output``, ``cli``)."""
