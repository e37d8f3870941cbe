"""Sharing: the recipient registry (SH0) and, later, the gateway through which PI leaves."""
