"""sdtp-bench: Saliency-driven Dynamic Token Pruning (SDTP) for HF transformers LLMs, reproduced and benchmarked."""

__version__ = "0.1.0"
