"""The ``crm`` command (:func:`crm.cli.root.main`); each group lives in a module of its own."""

from crm.cli.root import main

__all__ = ["main"]
