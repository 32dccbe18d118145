"""The web layer: Twilio's webhooks, the bridged call back, the counsellor console."""
