"""Benchmarks of our ingestion against its peers (see benchmarks/README.md)."""
