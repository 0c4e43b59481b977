"""Torch-free contract shared by the training and serving sides."""
