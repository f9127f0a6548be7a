#!/usr/bin/env python3
"""An independent implementation of docs/FORMAT.md (sections 2 to 7), used to
cross-check the test vectors pinned in tests/vectors.rs.

It is written from the spec alone, not from the Rust code: if both agree,
the spec describes what veilfs writes. Needs python3-cryptography >= 44
(AES-GCM-SIV and Argon2id). Run: python3 tests/format_reference.py
It prints every vector; tests/vectors.rs holds the same values, and
`--check` fails unless every one of them appears there.
"""

import base64
import hashlib
import hmac
import json
import os
import struct
import sys

try:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
except ImportError as e:
    print(f"format_reference.py: skipped, python3-cryptography >= 44 is needed ({e})")
    sys.exit(0)


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def hkdf(k: bytes, label: bytes, n: int) -> bytes:
    return HKDF(hashes.SHA256(), n, b"veilfs-v1", label).derive(k)


K = bytes(range(32))
SUB = {
    "content": hkdf(K, b"veilfs v1 content key", 32),
    "names": hkdf(K, b"veilfs v1 name key", 32),
    "dir_iv": hkdf(K, b"veilfs v1 dir iv key", 32),
    "root_iv": hkdf(K, b"veilfs v1 root dir iv", 16),
    "metadata": hkdf(K, b"veilfs v1 metadata key", 32),
    "key_id": hkdf(K, b"veilfs v1 key id", 16),
    "config_mac": hkdf(K, b"veilfs v1 config mac key", 32),
}

# --- §4 content -------------------------------------------------------------
SHIFT = 12
S = 1 << SHIFT
FILE_ID = bytes(range(0x10, 0x20))
HEADER = bytes([1, SHIFT]) + FILE_ID


def seal(header: bytes, index: int, last: bool, plain: bytes, nonce: bytes) -> bytes:
    ad = header + struct.pack(">QB", index, 1 if last else 0)
    return nonce + AESGCMSIV(SUB["content"]).encrypt(nonce, plain, ad)


CHUNK_PLAIN = b"veilfs test vector: chunk 0"
CHUNK_NONCE = bytes(range(0xA0, 0xAC))
chunk_last = seal(HEADER, 0, True, CHUNK_PLAIN, CHUNK_NONCE)
chunk_mid = seal(HEADER, 5, False, CHUNK_PLAIN, CHUNK_NONCE)

FILE_PLAIN = bytes((i * 7) % 251 for i in range(5000))
chunks = [FILE_PLAIN[i : i + S] for i in range(0, len(FILE_PLAIN), S)]
backing = HEADER + b"".join(
    seal(HEADER, i, i == len(chunks) - 1, c, bytes([0xB0 + i]) * 12)
    for i, c in enumerate(chunks)
)


# --- §5, §6 names and directory IVs ----------------------------------------
def enc_name(iv: bytes, name: bytes) -> str:
    pad = 16 - len(name) % 16
    p = name + bytes([pad]) * pad
    return b64(AESGCMSIV(SUB["names"]).encrypt(iv[:12], p, iv))


def child_iv(parent: bytes, name: bytes) -> bytes:
    return hmac.new(SUB["dir_iv"], parent + name, hashlib.sha256).digest()[:16]


ROOT = SUB["root_iv"]
wa_iv = child_iv(ROOT, b"WhatsApp")
long_full = enc_name(ROOT, b"a" * 200)
long_entry = b64(hashlib.sha256(long_full.encode()).digest()) + ".vln"
# --- §7 symlink targets -----------------------------------------------------
SYMLINK_NONCE = bytes(range(0x40, 0x4C))


def stored_target(target: bytes, nonce: bytes):
    """(backing symlink target, record content or None)."""
    sealed = b64(nonce + AESGCMSIV(SUB["metadata"]).encrypt(nonce, target, b"veilfs v1 symlink"))
    if len(sealed) <= 1024:
        return sealed, None
    return b64(hashlib.sha256(sealed.encode()).digest()) + ".vlink", sealed


short_target, _ = stored_target(b"../media/IMG-0001.jpg", SYMLINK_NONCE)
long_link, long_sealed = stored_target(b"a" * 4095, SYMLINK_NONCE)
assert len(long_link) == 49 and len(long_sealed) == 5498
assert stored_target(b"a" * 740, SYMLINK_NONCE)[1] is None
assert stored_target(b"a" * 741, SYMLINK_NONCE)[1] is not None

xattr = "user." + b64(
    AESGCMSIV(SUB["names"]).encrypt(bytes(12), b"comment", b"veilfs v1 xattr name")
)


# §6 directory IVs written since the security review: R || BIRTH.
def birth(parent: bytes, name: bytes) -> bytes:
    return hmac.new(SUB["dir_iv"], b"veilfs v2 dir birth" + parent[8:] + name, hashlib.sha256).digest()[:8]


media_iv = bytes(range(0x30, 0x38)) + birth(ROOT, b"Media")


# §7 version 2: padded xattr names, values bound to the entry ID, symlink
# targets bound to their directory's birth tag (the IV's last 8 bytes).
def pad16(b: bytes) -> bytes:
    n = 16 - len(b) % 16
    return b + bytes([n]) * n


xattr_v2 = "user." + b64(
    AESGCMSIV(SUB["names"]).encrypt(bytes(12), pad16(b"comment"), b"veilfs v2 xattr name")
)
ENTRY_ID = bytes(range(0x20, 0x30))
XV_NONCE = bytes(range(0xD0, 0xDC))
xattr_value_v2 = XV_NONCE + AESGCMSIV(SUB["metadata"]).encrypt(
    XV_NONCE, b"hello", b"veilfs v2 xattr value" + xattr_v2.encode() + ENTRY_ID
)
SL_NONCE = bytes(range(0xC0, 0xCC))
symlink_v2 = b64(
    SL_NONCE
    + AESGCMSIV(SUB["metadata"]).encrypt(
        SL_NONCE, b"../WhatsApp/msgstore.db", b"veilfs v2 symlink" + media_iv[8:]
    )
)


# --- §3 config --------------------------------------------------------------
def u32(v: int) -> bytes:
    return struct.pack(">I", v)


def sstr(s: str) -> bytes:
    return u32(len(s.encode())) + s.encode()


def config(created: str, slot):
    params = (
        b"veilfs-config-v1" + u32(1) + sstr("AES-256-GCM-SIV") + u32(S) + u32(175)
        + u32(0) + sstr(created) + SUB["key_id"]
    )
    slots = []
    canonical_slots = b""
    if slot:
        password, m, t, p, salt, nonce = slot
        sb = sstr("password") + sstr("argon2id") + u32(19) + u32(m) + u32(t) + u32(p) + salt
        kek = Argon2id(salt=salt, length=32, iterations=t, lanes=p, memory_cost=m).derive(password)
        wrapped = AESGCMSIV(kek).encrypt(nonce, K, params + sb)
        slots.append({
            "kind": "password", "kdf": "argon2id", "argon2_version": 19,
            "m_kib": m, "t": t, "p": p,
            "salt": b64(salt), "nonce": b64(nonce), "wrapped_key": b64(wrapped),
        })
        canonical_slots += sb + nonce + wrapped
    canonical = params + u32(len(slots)) + canonical_slots
    mac = hmac.new(SUB["config_mac"], canonical, hashlib.sha256).digest()
    doc = {
        "format": "veilfs", "version": 1, "created": created,
        "cipher": "AES-256-GCM-SIV", "chunk_size": S, "long_name_threshold": 175,
        "feature_flags": [], "key_id": b64(SUB["key_id"]), "key_slots": slots,
        "mac": b64(mac),
    }
    return json.dumps(doc, indent=2) + "\n"


PASSWORD_SLOT = (
    b"correct horse battery staple", 32768, 2, 1,
    bytes(range(0x40, 0x50)), bytes(range(0x50, 0x5C)),
)

def vectors():
    yield "content key", SUB["content"].hex()
    yield "name key", SUB["names"].hex()
    yield "dir iv key", SUB["dir_iv"].hex()
    yield "root dir iv", SUB["root_iv"].hex()
    yield "metadata key", SUB["metadata"].hex()
    yield "key id", SUB["key_id"].hex()
    yield "config mac key", SUB["config_mac"].hex()
    yield "header", HEADER.hex()
    yield "chunk 0, last", chunk_last.hex()
    yield "chunk 5, not last", chunk_mid.hex()
    yield "5000-byte file, sha256", hashlib.sha256(backing).hexdigest()
    yield "'chat.db' in the root", enc_name(ROOT, b"chat.db")
    yield "'0123456789abcdef' in the root", enc_name(ROOT, b"0123456789abcdef")
    yield "IV of 'WhatsApp' in the root", wa_iv.hex()
    yield "'msgstore.db.crypt14' in WhatsApp", enc_name(wa_iv, b"msgstore.db.crypt14")
    yield "200 x 'a', full encoded name", long_full
    yield "200 x 'a', long-name entry", long_entry
    yield "xattr name 'comment'", xattr
    yield "symlink target '../media/IMG-0001.jpg', inline", short_target
    yield "4095 x 'a' symlink target, record name", long_link
    yield "4095 x 'a' symlink target, sha256 of the record", hashlib.sha256(
        long_sealed.encode()
    ).hexdigest()
    yield "IV of 'Media' in the root, random half 30..37", media_iv.hex()
    yield "xattr name 'comment', padded", xattr_v2
    yield "xattr value 'hello' of 'comment', entry ID 20..2f", xattr_value_v2.hex()
    yield "symlink target in Media", symlink_v2
    yield "password config", config("2026-01-01T00:00:00Z", PASSWORD_SLOT)
    yield "key-only config", config("2026-01-01T00:00:00Z", None)


if __name__ == "__main__":
    if "--check" in sys.argv:
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "vectors.rs"), encoding="utf-8") as f:
            pinned = f.read()
        missing = [name for name, value in vectors() if value not in pinned]
        for name in missing:
            print(f"format_reference.py: {name}: tests/vectors.rs does not pin this value")
        if missing:
            sys.exit(1)
        print(f"format_reference.py: all {len(list(vectors()))} vectors agree with tests/vectors.rs")
        sys.exit(0)
    for name, value in vectors():
        print(f"{name}:", value if "\n" not in value else "\n" + value)
