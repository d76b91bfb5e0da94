"""The ground receiver: the other end of the cabin server's outbound sync.

Aircraft POST zstd-compressed JSON batches of outbox records to ``/v1/batches``; the receiver
stores each record once (dedup on ``(aircraft, stream, seq)``, the record's idempotency key
``{aircraft}:{stream}:{seq}``), in order per stream, and answers the acknowledged watermark of
every stream of that aircraft (the highest sequence number it holds durably, with nothing
missing below it except what the aircraft declared dropped). Storage is any SQLAlchemy URL:
SQLite by default, PostgreSQL for a fleet (several stateless receivers behind one database).
"""

__version__ = "0.1.0"
