"""Datasets: the offline demo's synthetic long-context QA world (LongBench record format), its word-level tokenizer,
Dolly-15k, and the tokenised training samples of stages 1 and 2."""
