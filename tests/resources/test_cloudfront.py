from datetime import datetime, timezone

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from harness.cloudfront import CDN_URL, KEY_PAIR_ID, private_pem, rsa_key, verify_signed_url

from resources.cloudfront import pem_text, rsa_sha1_signer, signed_url

EXPIRES = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_signed_url_verifies_with_the_public_key():
    url = f"{CDN_URL}/assetql/raw/b1/cabin%20snow.png"
    signed = verify_signed_url(signed_url(url, KEY_PAIR_ID, private_pem(), EXPIRES))
    assert signed.resource == url
    assert signed.expires == int(EXPIRES.timestamp())
    assert signed.key_pair_id == KEY_PAIR_ID


def test_a_signature_made_with_another_key_does_not_verify():
    other = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    url = signed_url(f"{CDN_URL}/a.png", KEY_PAIR_ID, private_pem(other), EXPIRES)
    with pytest.raises(InvalidSignature):
        verify_signed_url(url, rsa_key().public_key())


def test_a_changed_expiry_does_not_verify():
    url = signed_url(f"{CDN_URL}/a.png", KEY_PAIR_ID, private_pem(), EXPIRES)
    tampered = url.replace(f"Expires={int(EXPIRES.timestamp())}", f"Expires={int(EXPIRES.timestamp()) + 1}")
    with pytest.raises(InvalidSignature):
        verify_signed_url(tampered)


def test_a_pem_with_escaped_newlines_is_read():
    escaped = private_pem().replace("\n", "\\n")
    assert pem_text(escaped) == private_pem()
    verify_signed_url(signed_url(f"{CDN_URL}/a.png", KEY_PAIR_ID, escaped, EXPIRES))


def test_an_unreadable_key_is_named_without_quoting_it():
    secret = "-----BEGIN PRIVATE KEY-----\nnot-base64-secret\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ValueError, match="cloudfront_private_key is not an unencrypted PEM private key") as info:
        rsa_sha1_signer(secret)
    assert "not-base64-secret" not in str(info.value)


def test_a_non_rsa_key_is_refused():
    key = ec.generate_private_key(ec.SECP256R1())
    message = r"cloudfront_private_key is not an RSA private key \(got EC.*\); CloudFront signed URLs need RSA"
    with pytest.raises(ValueError, match=message):
        rsa_sha1_signer(private_pem(key))
