"""Infrastructure: Redis, encryption, settings' building blocks, logs, Twilio's REST API."""
