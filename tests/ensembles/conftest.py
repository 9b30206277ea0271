"""The ensemble tests share the session fixture ``finished_experiment`` (tests/conftest.py)."""
