"""Tests of signing and verifying the ``x-reclaim-signature-256`` header."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from airflow_provider_reclaim.wire.signature import (
    MalformedSignature,
    MissingSignature,
    NoSecretConfigured,
    SignatureError,
    SignatureMismatch,
    decode_signature,
    sign,
    verify,
)

CURRENT_SECRET = "whsec-current-4f9a1c"
PREVIOUS_SECRET = "whsec-previous-7d2e8b"


def reference_digest(body: bytes, secret: str) -> bytes:
    """Compute HMAC-SHA256 with the standard library only, as a receiver in the field would."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()


@pytest.fixture
def body(load_body) -> bytes:
    return load_body("created-documented.json")


def test_sign_rfc4231_vector():
    # RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
    expected_hex = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    expected = "sha256=" + base64.b64encode(bytes.fromhex(expected_hex)).decode("ascii")

    assert sign(b"what do ya want for nothing?", "Jefe") == expected


def test_sign_matches_reference_hmac(body):
    expected = "sha256=" + base64.b64encode(reference_digest(body, CURRENT_SECRET)).decode("ascii")

    assert sign(body, CURRENT_SECRET) == expected


FIXTURE_NAMES = (
    "created-documented.json",
    "created-observed.json",
    "rescheduled-observed.json",
    "cancelled-observed.json",
)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_verify_round_trip(load_body, name):
    fixture_body = load_body(name)

    assert verify(fixture_body, [sign(fixture_body, CURRENT_SECRET)], [CURRENT_SECRET]) == 0


def test_verify_accepts_bytes_secret(body):
    header = sign(body, CURRENT_SECRET)

    assert verify(body, [header], [CURRENT_SECRET.encode("utf-8")]) == 0


SPELLINGS = {
    "base64 with prefix": ("base64", True),
    "base64 without prefix": ("base64", False),
    "lowercase hex with prefix": ("lowercase hex", True),
    "lowercase hex without prefix": ("lowercase hex", False),
    "uppercase hex with prefix": ("uppercase hex", True),
    "uppercase hex without prefix": ("uppercase hex", False),
}


@pytest.mark.parametrize(("encoding", "prefixed"), SPELLINGS.values(), ids=SPELLINGS.keys())
def test_verify_accepts_spelling(body, encoding, prefixed):
    digest = reference_digest(body, CURRENT_SECRET)
    encoded = {
        "base64": base64.b64encode(digest).decode("ascii"),
        "lowercase hex": digest.hex(),
        "uppercase hex": digest.hex().upper(),
    }[encoding]
    value = "sha256=" + encoded if prefixed else encoded

    assert verify(body, [value], [CURRENT_SECRET]) == 0


def test_decode_signature_spellings_agree(body):
    digest = reference_digest(body, CURRENT_SECRET)

    assert decode_signature("sha256=" + base64.b64encode(digest).decode("ascii")) == digest
    assert decode_signature(digest.hex()) == digest
    assert decode_signature("sha256=" + digest.hex().upper()) == digest


def test_verify_rotation_current_secret(body):
    header = sign(body, CURRENT_SECRET)

    assert verify(body, [header], [CURRENT_SECRET, PREVIOUS_SECRET]) == 0


def test_verify_rotation_previous_secret(body):
    header = sign(body, PREVIOUS_SECRET)

    assert verify(body, [header], [CURRENT_SECRET, PREVIOUS_SECRET]) == 1


def test_verify_index_counts_empty_current(body):
    # The index names a position in the secrets the caller passed, so an empty current secret
    # still counts as position 0 and the previous secret stays at 1.
    header = sign(body, PREVIOUS_SECRET)

    assert verify(body, [header], ["", PREVIOUS_SECRET]) == 1


def test_verify_retired_secret_rejected(body):
    header = sign(body, PREVIOUS_SECRET)

    with pytest.raises(SignatureMismatch):
        verify(body, [header], [CURRENT_SECRET])


@pytest.mark.parametrize("secrets", [[], ["", ""]], ids=["empty list", "empty strings"])
def test_verify_no_secret(body, secrets):
    header = sign(body, CURRENT_SECRET)

    with pytest.raises(SignatureError) as caught:
        verify(body, [header], secrets)

    assert type(caught.value) is NoSecretConfigured
    assert caught.value.reason == "no_secret_configured"


def test_verify_no_secret_before_missing_header(body):
    with pytest.raises(SignatureError) as caught:
        verify(body, [], [])

    assert type(caught.value) is NoSecretConfigured


def test_verify_missing_header(body):
    with pytest.raises(SignatureError) as caught:
        verify(body, [], [CURRENT_SECRET])

    assert type(caught.value) is MissingSignature
    assert caught.value.reason == "missing_signature"


MALFORMED_VALUES = {
    "empty": "",
    "prefix only": "sha256=",
    "placeholder text": "no-secret-provided",
    "non-ASCII": "sha256=" + "é" * 43,
    "10 KB": "a" * 10 * 1024,
    "base64 length, invalid characters": "sha256=" + "!" * 43 + "=",
    "hex length, not hex": "sha256=" + "zz" * 32,
    "base64 of 31 bytes": "sha256=" + base64.b64encode(bytes(range(31))).decode("ascii"),
    "hex of 31 bytes": "sha256=" + bytes(range(31)).hex(),
}


@pytest.mark.parametrize("value", MALFORMED_VALUES.values(), ids=MALFORMED_VALUES.keys())
def test_verify_malformed_header(body, value):
    with pytest.raises(SignatureError) as caught:
        verify(body, [value], [CURRENT_SECRET])

    assert type(caught.value) is MalformedSignature
    assert caught.value.reason == "malformed_signature"


def test_verify_header_sent_twice(body):
    header = sign(body, CURRENT_SECRET)

    with pytest.raises(SignatureError) as caught:
        verify(body, [header, header], [CURRENT_SECRET])

    assert type(caught.value) is MalformedSignature
    assert caught.value.reason == "malformed_signature"


def reserialised(body: bytes) -> bytes:
    return json.dumps(json.loads(body)).encode("utf-8")


MISMATCH_CASES = {
    "other secret": lambda body: (body, sign(body, "whsec-someone-else")),
    "trailing newline": lambda body: (body + b"\n", sign(body, CURRENT_SECRET)),
    "re-serialised JSON": lambda body: (reserialised(body), sign(body, CURRENT_SECRET)),
}


@pytest.mark.parametrize("case", MISMATCH_CASES.values(), ids=MISMATCH_CASES.keys())
def test_verify_mismatch(body, case):
    received_body, header = case(body)

    with pytest.raises(SignatureError) as caught:
        verify(received_body, [header], [CURRENT_SECRET, PREVIOUS_SECRET])

    assert type(caught.value) is SignatureMismatch
    assert caught.value.reason == "signature_mismatch"


def test_reserialised_body_differs(body):
    # The mismatch case above only proves something if re-serialising changes the bytes.
    assert reserialised(body) != body


def test_verify_non_ascii_body():
    event = {
        "type": "SchedulingLink.Meeting.Created",
        "meeting": {"meeting_id": "m-1", "attendee": {"name": "Zoë Müller-Łukasiewicz 李雷 🎉"}},
    }
    exact_bytes = json.dumps(event, ensure_ascii=False).encode("utf-8")
    escaped_bytes = json.dumps(event, ensure_ascii=True).encode("ascii")
    header = sign(exact_bytes, CURRENT_SECRET)

    assert verify(exact_bytes, [header], [CURRENT_SECRET]) == 0
    with pytest.raises(SignatureMismatch):
        verify(escaped_bytes, [header], [CURRENT_SECRET])
