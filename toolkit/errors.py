"""Errors the user can fix, kept apart from bugs.

A ``ToolkitError`` ends a command with exit code 1, its message and a next step, and no traceback
(unless ``--debug``). Any other exception is a bug and shows its traceback only under ``--debug``.
"""

from __future__ import annotations


class ToolkitError(Exception):
    """An error the user can fix. ``hint`` says what to do next."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(ToolkitError):
    """A config file or value is invalid; the message names the key."""


class StackNotFoundError(ToolkitError):
    """An unknown stack name was given."""


class MissingDependencyError(ToolkitError):
    """A program or package spotkit needs is not installed (Node.js, terraform, checkov...)."""


class AwsCallError(ToolkitError):
    """An AWS call failed in a way the user can act on (credentials, permissions, missing resource)."""


class ValidationError(ToolkitError, ValueError):
    """A construct's props conflict or are out of range; raised in the constructor, before any resource.

    Also a ``ValueError`` so library users can catch it the usual way.
    """
