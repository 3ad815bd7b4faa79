"""Chaos tests: a real Godwit deployment whose services a test kills and restarts."""
