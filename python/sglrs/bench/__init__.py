"""`sglrs bench`: throughput and latency of an in-process Engine or of a running server."""
