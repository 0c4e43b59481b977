"""The ``vireid`` command line: serve, fill and search a running service over HTTP, and the one-command demo.

Client side only: the server is ``service/``; the demo drives ``training`` as ``python -m`` subprocesses, so
nothing here imports torch.
"""
