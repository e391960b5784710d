"""A local chat model fine-tuned on the project's own examples (``ragtune tune generator``): LoRA or full SFT of
the packaged SmolLM2 (or another local model), written back as GGUF and served by llama.cpp for
``generator.kind: tuned``."""
