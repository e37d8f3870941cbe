"""API keys for platform services, staff and authorities, each bound to a policy role."""
