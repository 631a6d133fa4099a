"""SMS: the outbox the worker writes with every posting, and the receipts it holds."""
