"""A span reader fine-tuned on the project's own questions (``ragtune tune reader``): question + passage → the
answer's character span, or no answer, served on onnxruntime for ``answer.kind: reader``."""
