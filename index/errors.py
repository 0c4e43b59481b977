"""Errors raised by the gallery; the service maps them to HTTP statuses."""


class GalleryError(Exception):
    """Base class of gallery errors."""


class ItemNotFoundError(GalleryError, KeyError):
    """No gallery item has this id."""


class IndexMismatchError(GalleryError):
    """The gallery on disk was built with another embedding dimension or model version."""


class GalleryCorruptError(GalleryError):
    """The gallery directory cannot be read (missing or inconsistent files)."""


class InvalidEmbeddingError(GalleryError, ValueError):
    """An embedding has the wrong shape, is not finite, or is not L2-normalised."""


class GalleryLockedError(GalleryError):
    """Another process (or another open in this one) holds the gallery directory."""


class GalleryUnavailableError(GalleryError):
    """The gallery's store (a Milvus server) cannot be reached now; retry later."""
