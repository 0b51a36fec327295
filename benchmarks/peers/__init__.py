"""The peers ingestion is measured against; each runs as `python -m benchmarks.peers.X RAW OUT`
and writes `OUT/<dataset>.json.gz`, so one checker counts every peer's rows the same way."""
