"""Errors a user can cause. Each message says what went wrong and what to do about it."""


class RagtuneError(Exception):
    """Base class of every error a user can cause; the CLI prints it as one line and exits non-zero."""


class ConfigError(RagtuneError):
    """The project or its settings are missing or invalid."""


class ParseError(RagtuneError):
    """A source file could not be read or parsed."""


class FrontMatterError(ParseError):
    """A document's front matter (which may hold its ACL) cannot be read: the document is readable by nobody."""


class UnsupportedFormatError(ParseError):
    """A source file has an extension ragtune cannot parse."""


class AclError(RagtuneError):
    """An ACL specification is malformed."""


class EmptyCorpusError(RagtuneError):
    """A command needs ingested documents and there are none."""


class DataError(RagtuneError):
    """Labelled data is missing, malformed or unusable for training."""


class ModelNotFoundError(RagtuneError):
    """A named model (or version) is not in the registry."""


class LockedError(RagtuneError):
    """Another process is writing to the project's index."""


class GenerationError(RagtuneError):
    """The generator could not be reached or returned no usable output."""


class StructuredOutputError(RagtuneError):
    """The generator's output did not match the required JSON schema, even after one retry."""
