"""Application services: settings, the composition root, call back intake, texting, jobs."""
