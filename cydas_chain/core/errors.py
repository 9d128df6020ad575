"""User-facing errors.

Anything a user can cause (a missing path, an infeasible budget, a malformed file) raises a
subclass of :class:`CydasError` with a one-line message.  Tools print that line and exit non-zero
(see :func:`cydas_chain.core.cli.run_tool`); the API lets it propagate.
"""


class CydasError(Exception):
    """Base class for errors caused by user input."""


class ArchError(CydasError, ValueError):
    """An architecture value or file is malformed, or belongs to another search space."""


class CheckpointError(CydasError):
    """A checkpoint is missing, corrupt, or does not match the model it is loaded into."""


class DataError(CydasError):
    """A dataset folder is missing, empty, or inconsistent."""


class ConfigError(CydasError, ValueError):
    """A setting out of its range, or a combination of settings that cannot work."""


class BudgetError(CydasError, ValueError):
    """A resource budget (FLOPs, parameters, latency) that no architecture in the space meets."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)  # str(KeyError) is a repr
    text = text.strip()
    return text.splitlines()[0] if text else type(e).__name__


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file that is not a torch checkpoint, or is truncated or damaged."""


class CheckpointObjectsError(CheckpointError):
    """A readable checkpoint holding Python objects that a safe (weights-only) load refuses.

    ``objects`` names the first refused object, e.g. ``'argparse.Namespace'``.
    """

    def __init__(self, message: str, objects: str = ""):
        super().__init__(message)
        self.objects = objects
