"""Prompts: versioned template files, the few-shot layout, and demonstration selection."""

from fewrec.prompts.templates import clean_text, display_title, load_template

__all__ = ["clean_text", "display_title", "load_template"]
