"""A cross-encoder reranker trained on the project's own corpus (``ragtune tune reranker``) and served on
onnxruntime as the optional ``rerank`` stage (``rerank.kind: registry:NAME``)."""
