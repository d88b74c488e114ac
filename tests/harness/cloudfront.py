"""A test CloudFront key pair, and the check CloudFront makes of a signed URL, written from AWS's docs."""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
from urllib.parse import parse_qs, urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

KEY_PAIR_ID = "K2JCJMDEHXQW5F"
CDN_URL = "https://d111111abcdef8.cloudfront.net"


@functools.cache
def rsa_key() -> rsa.RSAPrivateKey:
    """One RSA key for the whole session: generating it is the slow part of these tests."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: PrivateKeyTypes | None = None) -> str:
    """`key` (default `rsa_key()`) as the unencrypted PKCS#8 PEM text CloudFront's key pairs come in."""
    return (key or rsa_key()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


@dataclasses.dataclass(frozen=True)
class SignedUrl:
    resource: str  # the URL without the signing parameters, as the policy names it
    expires: int  # epoch seconds
    key_pair_id: str


def _b64decode(text: str) -> bytes:
    # CloudFront's URL-safe base64: '+' '=' '/' are sent as '-' '_' '~'.
    return base64.b64decode(text.translate(str.maketrans("-_~", "+=/")), validate=True)


def verify_signed_url(url: str, public_key: rsa.RSAPublicKey | None = None) -> SignedUrl:
    """Check `url`'s canned-policy signature as CloudFront does; InvalidSignature if it does not verify."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, strict_parsing=True)
    assert sorted(query) == ["Expires", "Key-Pair-Id", "Signature"], f"not a canned-policy signed URL: {url}"
    [expires], [signature], [key_pair_id] = query["Expires"], query["Signature"], query["Key-Pair-Id"]
    resource = urlunsplit(parts._replace(query=""))
    # The canned policy CloudFront rebuilds from the request: exactly this JSON, without whitespace.
    policy = json.dumps(
        {"Statement": [{"Resource": resource, "Condition": {"DateLessThan": {"AWS:EpochTime": int(expires)}}}]},
        separators=(",", ":"),
    )
    (public_key or rsa_key().public_key()).verify(
        _b64decode(signature), policy.encode("utf-8"), padding.PKCS1v15(), hashes.SHA1()
    )
    return SignedUrl(resource, int(expires), key_pair_id)
