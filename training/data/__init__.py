"""Data sets in their real on-disk layouts, and the synthetic cross-modal set."""
