"""Call back requests: the durable queue, counsellors' notes on a request, retention."""
