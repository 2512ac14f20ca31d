"""One exception hierarchy; every message says what was wrong and what to do next."""

from __future__ import annotations


class SlimsearchError(Exception):
    """Base of every error slimsearch raises on purpose."""


class StorageError(SlimsearchError, ValueError):
    """A storage URL that is malformed, unsupported, unreachable or not writable."""


class StudyNotFoundError(SlimsearchError, KeyError):
    """No study of that name in the storage."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class StudyMismatchError(SlimsearchError, ValueError):
    """An existing study was created for another task, space or constraint."""


class RecipeError(SlimsearchError, ValueError):
    """A recipe file that cannot be read, validated or applied to the given task."""


class NoCandidateError(SlimsearchError, LookupError):
    """No completed trial satisfies the requested selection."""


class SearchArgumentError(SlimsearchError, ValueError):
    """An argument to ``Search`` outside what is allowed."""


STUDY_NOT_FOUND = (
    "no study named {name!r} in {storage}; existing studies: {existing}. "
    "Start one with `slimsearch run --study {name}`"
)
NOT_OUR_STUDY = (
    "study {name!r} in {storage} was not created by slimsearch (no slimsearch metadata); "
    "use another --study name"
)
