"""Benchmark and migration-verification harness for local OpenAI-compatible LLM servers."""

__version__ = "0.1.0"
