"""User-facing errors.

Every problem a user can cause (unknown name, bad shape, missing file, corrupt data) raises
:class:`PellucidError` with a message that names the problem. The CLI prints that message on
one line and exits non-zero; library users can catch it.
"""

from __future__ import annotations


class PellucidError(Exception):
    """An error caused by user input, with a message meant to be read by that user."""


class ConfigError(PellucidError, ValueError):
    """An invalid configuration value or option."""


class DataError(PellucidError, ValueError):
    """Missing, empty, corrupt or ill-shaped data."""
