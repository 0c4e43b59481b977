"""Gallery index: FAISS vectors with int64 ids, metadata in SQLite, a manifest; persisted atomically."""
