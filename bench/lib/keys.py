#!/usr/bin/env python3
"""Keys, JWKS and tokens for the benchmark (Python standard library plus the openssl CLI).

    keys.py OUTDIR

writes into OUTDIR:
  rs-key.pem, rs-pub.pem        RSA-2048 private and public key (PEM)
  es-key.pem, es-pub.pem        P-256 private and public key (PEM)
  rs.jwks.json, es.jwks.json    one key each (kid bench-rs / bench-es), for Portcullis
  all.jwks.json                 both keys
  tokens/<ALG>-<name>           one token per file (no newline), ALG in rs, es:
      good        iss, aud, exp (+1 day), groups [admins], padded to about 900 bytes
      nogroup     valid, but groups [viewers]: authenticated, refused by the rule (403)
      expired     exp an hour ago
      wrongaud    aud "other-service"
      wrongiss    iss https://evil.bench.example
      none        alg "none", no signature, good claims
      hs256pub    HS256, HMAC keyed with the public key PEM (the key-confusion attack)
Every signature is made by openssl; ES256 DER signatures are converted to JOSE r||s.
"""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time

ISSUER = "https://issuer.bench.example"
AUDIENCE = "bench"
TARGET_SIZE = 900


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def openssl(*args, stdin=None) -> bytes:
    return subprocess.run(["openssl", *args], input=stdin, check=True, capture_output=True).stdout


def der_length(data: bytes, i: int):
    first = data[i]
    if first < 0x80:
        return first, i + 1
    count = first & 0x7F
    return int.from_bytes(data[i + 1 : i + 1 + count], "big"), i + 1 + count


def ecdsa_der_to_jose(der: bytes) -> bytes:
    # SEQUENCE { INTEGER r, INTEGER s }
    assert der[0] == 0x30
    _, i = der_length(der, 1)
    parts = []
    for _ in range(2):
        assert der[i] == 0x02
        length, i = der_length(der, i + 1)
        value = der[i : i + length]
        i += length
        parts.append(int.from_bytes(value, "big").to_bytes(32, "big"))
    return parts[0] + parts[1]


def sign(alg: str, signing_input: bytes, out: str) -> bytes:
    if alg == "RS256":
        return openssl("dgst", "-sha256", "-sign", os.path.join(out, "rs-key.pem"), stdin=signing_input)
    if alg == "ES256":
        der = openssl("dgst", "-sha256", "-sign", os.path.join(out, "es-key.pem"), stdin=signing_input)
        return ecdsa_der_to_jose(der)
    raise ValueError(alg)


def make_keys(out: str) -> None:
    rs_key = os.path.join(out, "rs-key.pem")
    es_key = os.path.join(out, "es-key.pem")
    if not os.path.exists(rs_key):
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rs_key)
    if not os.path.exists(es_key):
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", es_key)
    with open(os.path.join(out, "rs-pub.pem"), "wb") as f:
        f.write(openssl("pkey", "-in", rs_key, "-pubout"))
    with open(os.path.join(out, "es-pub.pem"), "wb") as f:
        f.write(openssl("pkey", "-in", es_key, "-pubout"))


def rsa_jwk(out: str) -> dict:
    text = openssl("rsa", "-in", os.path.join(out, "rs-key.pem"), "-noout", "-modulus").decode()
    modulus = bytes.fromhex(text.strip().split("=", 1)[1])
    text = openssl("rsa", "-in", os.path.join(out, "rs-key.pem"), "-noout", "-text").decode()
    exponent = 65537
    for line in text.splitlines():
        if line.startswith("publicExponent:"):
            exponent = int(line.split()[1])
    e = exponent.to_bytes((exponent.bit_length() + 7) // 8, "big")
    return {"kty": "RSA", "kid": "bench-rs", "use": "sig", "alg": "RS256", "n": b64u(modulus), "e": b64u(e)}


def ec_jwk(out: str) -> dict:
    der = openssl("pkey", "-in", os.path.join(out, "es-key.pem"), "-pubout", "-outform", "DER")
    point = der[-65:]  # uncompressed point 04 || x || y ends the SubjectPublicKeyInfo
    assert point[0] == 0x04
    return {
        "kty": "EC", "kid": "bench-es", "use": "sig", "alg": "ES256", "crv": "P-256",
        "x": b64u(point[1:33]), "y": b64u(point[33:65]),
    }


def token(header: dict, claims: dict, signer) -> str:
    signing_input = (b64u(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + b64u(json.dumps(claims, separators=(",", ":")).encode()))
    return signing_input + "." + signer(signing_input.encode())


def padded_claims(base: dict, header: dict, signature_chars: int) -> dict:
    """A realistic claim set (scopes, as an IdP issues them) grown until the token is about TARGET_SIZE bytes."""
    claims = dict(base)
    scopes = ["openid", "profile", "email", "offline_access"]
    extra = ["airflow.dags.read", "airflow.dags.write", "airflow.runs.trigger", "airflow.variables.read",
             "reports.read", "reports.write", "jobs.submit", "jobs.cancel", "warehouse.query",
             "warehouse.export", "catalog.read", "catalog.write", "lineage.read", "metrics.read",
             "audit.read", "secrets.list", "connections.read", "pools.read", "xcom.read", "logs.read"]
    header_len = len(b64u(json.dumps(header, separators=(",", ":")).encode()))
    for item in extra:
        claims["scope"] = " ".join(scopes)
        payload_len = len(b64u(json.dumps(claims, separators=(",", ":")).encode()))
        if header_len + 1 + payload_len + 1 + signature_chars >= TARGET_SIZE - 12:
            break
        scopes.append(item)
    claims["scope"] = " ".join(scopes)
    return claims


def main() -> None:
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "tokens"), exist_ok=True)
    make_keys(out)
    rs, es = rsa_jwk(out), ec_jwk(out)
    for name, keys in (("rs", [rs]), ("es", [es]), ("all", [rs, es])):
        with open(os.path.join(out, f"{name}.jwks.json"), "w") as f:
            json.dump({"keys": keys}, f, indent=1)

    now = int(time.time())
    base = {
        "iss": ISSUER,
        "sub": "00u1bench7x9ABCDEF357",
        "aud": AUDIENCE,
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 86400,
        "jti": hashlib.sha256(str(now).encode()).hexdigest()[:32],
        "email": "ada.lovelace@example.com",
        "name": "Ada Lovelace",
        "groups": ["admins"],
        "amr": ["pwd", "mfa"],
        "azp": "bench-client",
    }
    for prefix, alg, kid, sig_chars, pub in (("rs", "RS256", "bench-rs", 342, "rs-pub.pem"),
                                             ("es", "ES256", "bench-es", 86, "es-pub.pem")):
        header = {"alg": alg, "typ": "JWT", "kid": kid}
        good = padded_claims(base, header, sig_chars)
        signer = lambda data, alg=alg: b64u(sign(alg, data, out))
        variants = {
            "good": (header, good, signer),
            "nogroup": (header, {**good, "groups": ["viewers"]}, signer),
            "expired": (header, {**good, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}, signer),
            "wrongaud": (header, {**good, "aud": "other-service"}, signer),
            "wrongiss": (header, {**good, "iss": "https://evil.bench.example"}, signer),
            "none": ({"alg": "none", "typ": "JWT"}, good, lambda data: ""),
        }
        with open(os.path.join(out, pub), "rb") as f:
            public_pem = f.read()
        variants["hs256pub"] = (
            {"alg": "HS256", "typ": "JWT", "kid": kid}, good,
            lambda data, key=public_pem: b64u(hmac.new(key, data, hashlib.sha256).digest()),
        )
        for name, (h, c, s) in variants.items():
            with open(os.path.join(out, "tokens", f"{prefix}-{name}"), "w") as f:
                f.write(token(h, c, s))
    sizes = {p: len(open(os.path.join(out, "tokens", f"{p}-good")).read()) for p in ("rs", "es")}
    print(f"keys and tokens in {out} (good token bytes: RS256 {sizes['rs']}, ES256 {sizes['es']})")


if __name__ == "__main__":
    main()
