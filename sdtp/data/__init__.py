"""Datasets: the offline demo's synthetic long-context QA world (LongBench record format) and its word-level tokenizer."""
