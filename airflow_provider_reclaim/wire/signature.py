"""Sign and verify the ``x-reclaim-signature-256`` header of Reclaim webhook deliveries.

Reclaim sends ``sha256=`` followed by the base64 HMAC-SHA256 of the raw request body,
keyed with the webhook secret. The same digest spelled in lowercase or uppercase hex, and
a value without the ``sha256=`` prefix, are accepted too: receivers written against older
documentation expect those spellings, and they prove the same thing.

The signature covers the exact bytes received. Verify before parsing, and never re-serialise
the JSON, because whitespace, key order and escapes would change the digest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Sequence

SIGNATURE_HEADER = "x-reclaim-signature-256"
SIGNATURE_PREFIX = "sha256="

# A well-formed value is at most 71 characters (prefix plus 64 hex digits), so anything
# much longer is rejected before any decoding work.
MAX_SIGNATURE_LENGTH = 128

_DIGEST_SIZE = hashlib.sha256().digest_size


class SignatureError(Exception):
    """Base class for a delivery whose signature cannot be accepted.

    ``reason`` is a stable, machine-readable code that the receiver returns to the caller.
    """

    reason = "invalid_signature"


class NoSecretConfigured(SignatureError):
    """The connection has no webhook secret, so no delivery can be verified."""

    reason = "no_secret_configured"


class MissingSignature(SignatureError):
    """The request has no ``x-reclaim-signature-256`` header."""

    reason = "missing_signature"


class MalformedSignature(SignatureError):
    """The header is present but is not a SHA-256 digest in base64 or hex."""

    reason = "malformed_signature"


class SignatureMismatch(SignatureError):
    """The header is a well-formed digest that matches none of the configured secrets."""

    reason = "signature_mismatch"


def compute_digest(body: bytes, secret: str | bytes) -> bytes:
    """Return the raw HMAC-SHA256 digest of ``body`` keyed with ``secret``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, body, hashlib.sha256).digest()


def sign(body: bytes, secret: str | bytes) -> str:
    """Return the header value Reclaim sends for ``body``: ``sha256=`` plus the base64 digest."""
    return SIGNATURE_PREFIX + base64.b64encode(compute_digest(body, secret)).decode("ascii")


def decode_signature(value: str) -> bytes:
    """Decode one header value into the 32 digest bytes it carries.

    :param value: The header value, with or without the ``sha256=`` prefix, in base64 or hex.
    :raises MalformedSignature: The value is empty, too long, not ASCII, or not a SHA-256 digest.
    """
    if len(value) > MAX_SIGNATURE_LENGTH:
        raise MalformedSignature(
            f"signature header is {len(value)} characters, the maximum is {MAX_SIGNATURE_LENGTH}"
        )
    if not value.isascii():
        raise MalformedSignature("signature header contains non-ASCII characters")

    encoded = value.strip()
    if encoded[: len(SIGNATURE_PREFIX)].lower() == SIGNATURE_PREFIX:
        encoded = encoded[len(SIGNATURE_PREFIX) :]
    if not encoded:
        raise MalformedSignature("signature header is empty")

    if len(encoded) == 2 * _DIGEST_SIZE:
        try:
            return bytes.fromhex(encoded)
        except ValueError:
            pass  # 64 characters can also be valid base64 of another length; checked below.

    try:
        digest = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedSignature("signature header is neither base64 nor hex") from None
    if len(digest) != _DIGEST_SIZE:
        raise MalformedSignature(f"signature header decodes to {len(digest)} bytes, expected {_DIGEST_SIZE}")
    return digest


def verify(body: bytes, header_values: Sequence[str], secrets: Iterable[str | bytes]) -> int:
    """Check the signature of a delivery and return the index of the secret that signed it.

    Every configured secret is tried, so that deliveries signed with an older secret are still
    accepted during a rotation. Digests are compared in constant time over bytes.

    :param body: The raw request body, exactly as received.
    :param header_values: Every value of the ``x-reclaim-signature-256`` header in the request.
        Pass ``headers.getlist(...)``, not a joined string, so a repeated header is detected.
    :param secrets: The current secret first, then older secrets still accepted.
    :raises NoSecretConfigured: No non-empty secret was given.
    :raises MissingSignature: The header is absent.
    :raises MalformedSignature: The header is repeated or cannot be decoded.
    :raises SignatureMismatch: No secret produces the received digest.
    """
    keys = [(index, secret) for index, secret in enumerate(secrets) if secret]
    if not keys:
        raise NoSecretConfigured("the connection has no webhook secret, so every delivery is rejected")
    if not header_values:
        raise MissingSignature(f"the {SIGNATURE_HEADER} header is missing")
    if len(header_values) > 1:
        raise MalformedSignature(f"the {SIGNATURE_HEADER} header was sent {len(header_values)} times")

    received = decode_signature(header_values[0])

    matched = -1
    for index, key in keys:
        if hmac.compare_digest(received, compute_digest(body, key)) and matched < 0:
            matched = index
    if matched < 0:
        raise SignatureMismatch("the signature matches none of the configured secrets")
    return matched
