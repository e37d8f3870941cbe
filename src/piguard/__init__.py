"""piguard: a personal-information protection engine that enforces a privacy policy."""

__version__ = "0.1.0"
