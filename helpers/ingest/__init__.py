"""Ingestion: a raw folder of dataset subfolders in, one NDJSON `.json.gz` per dataset out.

The stages, in the order a byte meets them:

    sniff        a file's format from its content: compression, encoding, JSON or CSV dialect
    lines        bytes to physical lines: gzip, BOMs, any line ending, per-sequence decoding
    blocks       a file as blocks of whole lines (or array items) in bytes, for the native path
    native       a block to output lines with Polars, off the GIL, when checks vouch for it
    records      lines to CSV records, following quotes; an unterminated quote costs one record
    readers      chunks of records per format, with line numbers and resume positions
    schema       column names (never merged) and the typing rules
    normalize    chunks to output lines or rejects, a column at a time when it can
    dedupe       duplicate counts in bounded memory
    writer       gzip members, closed and synced at checkpoints
    checkpoint   what is durable, and whether a run may resume from it
    dataset_pass one dataset folder through all of the above
    engine       every folder, on a pool of threads, and the manifest (`ingest`)
    location     where raw files live: local paths, or any fsspec URL (`s3://...`)
    spark        the same readers and normalizer as Spark tasks (`ingest --engine spark`)
    splits       one large file read in several pieces, from line boundaries (for Spark)
    spark_cluster a Spark standalone cluster on this machine (tests, `make spark-cluster`)

Nothing here imports the warehouse or the notebook rooms.
"""
