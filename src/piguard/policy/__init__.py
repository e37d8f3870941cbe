"""The pure policy core: model, language, compiler, decisions, masking, notice, diff, coverage.

Nothing in this package does I/O except `language.load_policy`, which reads one file.
"""
