"""Reusable spotkit constructs. No provider and no backend lives here: stacks own those."""
