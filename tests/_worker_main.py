"""The main module an xdist worker is given (tests/conftest.py): empty, so that a process pool started
with "spawn" from a test, which runs its parent's main module first, runs nothing."""
