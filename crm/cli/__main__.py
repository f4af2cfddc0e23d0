"""``python -m crm.cli``: the ``crm`` command, for processes that start their own (``crm serve``'s workers)."""

from crm.cli.root import main

main(prog_name="crm")
