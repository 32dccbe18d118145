"""RQ workers: everything slow or failure-prone (outbound texts and calls, retries)."""
