"""detect-secrets plugin for token-lifecycle API tokens.

    detect-secrets scan --plugin docs/secret-scanning/detect_secrets_plugin.py > .secrets.baseline
    detect-secrets-hook --plugin docs/secret-scanning/detect_secrets_plugin.py --baseline .secrets.baseline FILES

A token is <prefix>_<id><secret><checksum>: a prefix [a-z][a-z0-9_]{0,31}, a 22-character id
(16 bytes), a 43-character secret (32 bytes) and a 6-character checksum, all base62 (0-9A-Za-z,
big-endian, left-padded). The checksum is CRC-32/IEEE (zlib.crc32) of the 65 ASCII characters
id+secret. This plugin reports a candidate only when the checksum matches and both fields are
canonical, so a random string passes with probability 2**-32: no false positives.

Set TOKEN_LIFECYCLE_PREFIX=acme_live to report only your own prefix.
"""

import os
import re
import zlib
from typing import Generator

from detect_secrets.plugins.base import RegexBasedDetector

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DIGIT = {c: i for i, c in enumerate(ALPHABET)}

# The pattern documented in token_core::format and the README.
PATTERN = re.compile(
    r"\b([a-z][a-z0-9_]{0,31})_([0-9A-Za-z]{22})([0-9A-Za-z]{43})([0-9A-Za-z]{6})\b",
    re.ASCII,
)


def base62_value(text: str) -> int:
    value = 0
    for char in text:
        value = value * 62 + DIGIT[char]
    return value


def base62_encode(value: int, width: int) -> str:
    digits = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def is_token(token_id: str, secret: str, checksum: str) -> bool:
    """The documented confirmation: canonical id and secret, and the CRC-32 checksum."""
    if base62_value(token_id) >= 1 << 128 or base62_value(secret) >= 1 << 256:
        return False
    crc = zlib.crc32((token_id + secret).encode("ascii"))
    return base62_encode(crc, 6) == checksum


class TokenLifecycleDetector(RegexBasedDetector):
    """token-lifecycle API token (CRC-32 verified)."""

    secret_type = "token-lifecycle API token"
    denylist = (PATTERN,)

    def analyze_string(self, string: str) -> Generator[str, None, None]:
        wanted = os.environ.get("TOKEN_LIFECYCLE_PREFIX")
        for match in PATTERN.finditer(string):
            prefix, token_id, secret, checksum = match.groups()
            if wanted and prefix != wanted and not prefix.endswith("_" + wanted):
                continue
            if is_token(token_id, secret, checksum):
                yield match.group(0)
