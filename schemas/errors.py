"""The one error hierarchy of riverops.

Every error a processor can meet on a record is a :class:`RiveropsError`; its class name
and message become the ``error_type`` and ``reason`` of the dead-letter record, and a
decode error keeps the raw bytes so that the dead letter can carry them.
"""

from __future__ import annotations

__all__ = [
    "RiveropsError",
    "ConfigError",
    "DecodeError",
    "UnknownSchemaError",
    "EncodeError",
    "InvalidEventError",
    "BrokerError",
    "AuthorizationError",
    "TopicError",
    "ArtifactError",
    "SignatureError",
    "RegistryError",
]


class RiveropsError(Exception):
    """Base of every error raised by riverops."""


class ConfigError(RiveropsError):
    """Settings or options that cannot work together."""


class DecodeError(RiveropsError):
    """A payload that is not a valid record of the expected schema.

    ``raw`` holds the undecodable bytes, untouched, for the dead-letter record.
    """

    def __init__(self, reason: str, *, raw: bytes) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


class UnknownSchemaError(DecodeError):
    """The payload names a writer schema (fingerprint or registry id) we do not know."""


class EncodeError(RiveropsError):
    """A record that does not fit its schema."""


class InvalidEventError(RiveropsError):
    """A well-formed record whose content breaks the contract (NaN, empty id, unknown model)."""


class BrokerError(RiveropsError):
    """The embedded broker could not be started or did not answer."""


class AuthorizationError(RiveropsError):
    """The broker refused this principal an operation (an ACL is missing) or its credentials.

    Retrying does not help, so a worker that meets one stops with a clear log line instead
    of looping.
    """


class TopicError(RiveropsError):
    """A topic could not be created or does not match the catalogue."""


class ArtifactError(RiveropsError):
    """A model artifact that cannot be stored, found or loaded."""


class SignatureError(ArtifactError):
    """A model artifact that is unsigned, wrongly signed or tampered with."""


class RegistryError(RiveropsError):
    """A registry operation that is not allowed (unknown version, bad transition)."""
