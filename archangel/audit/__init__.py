"""The audit log: who changed what, when, through which door (API, admin, webhook, job)."""
