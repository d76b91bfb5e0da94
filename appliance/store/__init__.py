"""The journal database: engine and pragmas, tables, the single writer, migrations, the outbox.

:mod:`appliance.store.journal` is the one writer of journal rows (``write_entry``); its docstring
documents the row schema shared by every kind and the one outbox payload shape of journal records.
"""
