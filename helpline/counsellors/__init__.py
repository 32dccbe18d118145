"""Counsellors: accounts, login throttling, the audit log."""
