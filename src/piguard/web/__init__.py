"""The REST API: `create_app(piguard)`, typed dependencies, one error table, security headers."""
