"""The journal database: engine and pragmas, tables, the single writer, migrations, the outbox."""
