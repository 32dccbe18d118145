"""The conversation: flows, content and regions, the pure engine that runs them, its checks."""
