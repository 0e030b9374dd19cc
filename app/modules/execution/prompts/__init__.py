"""Prompt templates of the seed executors, one module per concern."""
