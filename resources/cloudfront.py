"""CloudFront signed URLs: botocore's canned-policy signer with an RSA key from `cryptography`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime

from botocore.signers import CloudFrontSigner
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def pem_text(pem: str) -> str:
    """`pem` with literal `\\n` sequences turned into line breaks when it has no real ones."""
    # Environment files and secret stores often hold a multi-line PEM on one line with escaped
    # newlines; PEM parsers need the real line breaks.
    return pem if "\n" in pem else pem.replace("\\n", "\n")


@functools.lru_cache(maxsize=4)
def rsa_sha1_signer(pem: str) -> Callable[[bytes], bytes]:
    """A signer of messages with the PEM RSA private key `pem`, as CloudFront requires: SHA-1, PKCS#1 v1.5."""
    # Cached: loading an RSA key checks it, which costs more than signing one URL.
    try:
        key = serialization.load_pem_private_key(pem_text(pem).encode("utf-8"), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        # The error never quotes the key: it is a secret.
        raise ValueError(f"cloudfront_private_key is not an unencrypted PEM private key: {error}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(
            f"cloudfront_private_key is not an RSA private key (got {type(key).__name__}); CloudFront signed "
            "URLs need RSA"
        )
    return lambda message: key.sign(message, padding.PKCS1v15(), hashes.SHA1())


def signed_url(url: str, key_pair_id: str, private_key_pem: str, expires_at: datetime) -> str:
    """`url` with the Expires, Signature and Key-Pair-Id of a canned policy valid until `expires_at`."""
    return CloudFrontSigner(key_pair_id, rsa_sha1_signer(private_key_pem)).generate_presigned_url(
        url, date_less_than=expires_at
    )
