"""Signed checkpoints in the C2SP formats: tlog-checkpoint body inside an Ed25519 signed note.

    <origin>\\n<tree size>\\n<base64 root>\\n\\n— <key name> <base64(key id || signature)>\\n

The key id is the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key), and the public
key is published as a note verifier key `<name>+<key id hex>+<base64(0x01 || public key)>`,
so any signed-note tool can check our checkpoints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from op_dbus.files import write_file

ED25519 = b"\x01"
DASH = "\u2014"


class CheckpointError(ValueError):
    """A checkpoint or key that is malformed or whose signature does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes


def load_key(path: Path) -> Ed25519PrivateKey:
    """The signing key stored at `path` (FileNotFoundError when there is none)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as exc:
        raise CheckpointError(f"{path} is not a PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"{path} is not an Ed25519 private key")
    return key


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The ledger's signing key; created on first use with mode 0600 (caller holds the lock)."""
    try:
        return load_key(path)
    except FileNotFoundError:
        pass
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        write_file(path, pem.decode(), mode=0o600, replace=False)
    except FileExistsError:  # made meanwhile (or planted): never overwrite a key
        return load_key(path)
    return key


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + _raw_public(public)).digest()[:4]


def verifier_key(name: str, public: Ed25519PublicKey) -> str:
    """The public key as a signed-note verifier key string."""
    encoded = base64.b64encode(ED25519 + _raw_public(public)).decode()
    return f"{name}+{key_id(name, public).hex()}+{encoded}"


def parse_verifier_key(vkey: str) -> tuple[str, Ed25519PublicKey]:
    try:
        name, hex_id, encoded = vkey.strip().split("+", 2)
        raw = base64.b64decode(encoded, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise CheckpointError(f"not a verifier key: {vkey!r}") from exc
    if raw[:1] != ED25519 or len(raw) != 33:
        raise CheckpointError("verifier key is not an Ed25519 key")
    public = Ed25519PublicKey.from_public_bytes(raw[1:])
    if key_id(name, public).hex() != hex_id:
        raise CheckpointError("verifier key id does not match its key")
    return name, public


def sign_checkpoint(origin: str, size: int, root: bytes, key: Ed25519PrivateKey) -> str:
    body = f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"
    signature = key_id(origin, key.public_key()) + key.sign(body.encode())
    return f"{body}\n{DASH} {origin} {base64.b64encode(signature).decode()}\n"


def open_checkpoint(note: str, vkey: str) -> Checkpoint:
    """Parse `note` and check its signature by `vkey`; raise CheckpointError on any failure."""
    name, public = parse_verifier_key(vkey)
    body, sep, signatures = note.partition("\n\n")
    if not sep or not body:
        raise CheckpointError("checkpoint has no signature block")
    body += "\n"
    lines = body.splitlines()
    if len(lines) < 3:
        raise CheckpointError("checkpoint body needs origin, size and root lines")
    origin, size_text, root_text = lines[:3]
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise CheckpointError(f"checkpoint size is not a number: {size_text!r}")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error as exc:
        raise CheckpointError("checkpoint root is not base64") from exc
    if len(root) != 32:
        raise CheckpointError("checkpoint root is not a 32-byte hash")
    wanted = key_id(name, public)
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != DASH or parts[1] != name:
            continue
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except binascii.Error:
            continue
        if raw[:4] != wanted:
            continue
        try:
            public.verify(raw[4:], body.encode())
        except InvalidSignature as exc:
            raise CheckpointError("checkpoint signature does not verify") from exc
        return Checkpoint(origin, int(size_text), root)
    raise CheckpointError(f"checkpoint carries no signature by {name}")
