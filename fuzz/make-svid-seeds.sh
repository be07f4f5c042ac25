#!/usr/bin/env bash
# Mints fuzz/seeds/svid/: self-signed leaf certificates (DER) that keep or break each
# X.509-SVID rule inspect_leaf checks. Keys are fresh on every run; the seeds are committed,
# so this only needs running to add a case.
set -euo pipefail
out="$(dirname "$0")/seeds/svid"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/p256.key" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$tmp/p384.key" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:secp256k1 -out "$tmp/k256.key" 2>/dev/null
openssl genpkey -algorithm ED25519 -out "$tmp/ed25519.key" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/rsa2048.key" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out "$tmp/rsa1024.key" 2>/dev/null

id=spiffe://example.org/ns/shop/sa/cart
# mint NAME KEY SUBJECT EXTENSION...
mint() {
  local name=$1 key=$2 subject=$3
  shift 3
  local args=()
  for ext in "$@"; do args+=(-addext "$ext"); done
  openssl req -x509 -new -key "$tmp/$key.key" -subj "$subject" -days 365 -set_serial 0x8f23abcd \
    -config /dev/null "${args[@]}" -outform DER -out "$out/$name.der"
}
ku='keyUsage=critical,digitalSignature'
bc='basicConstraints=critical,CA:FALSE'
mint good-p256 p256 /CN=cart "subjectAltName=URI:$id,DNS:cart.shop" "$ku" "$bc"
mint good-p384 p384 /CN=cart "subjectAltName=URI:$id" "$ku"
mint good-ed25519 ed25519 /CN=cart "subjectAltName=URI:$id" "$ku"
mint good-rsa2048 rsa2048 /CN=cart "subjectAltName=URI:$id" "$ku"
mint empty-subject p256 / "subjectAltName=critical,URI:$id" "$ku"
mint empty-subject-san-not-critical p256 / "subjectAltName=URI:$id" "$ku"
mint ca p256 /CN=cart "subjectAltName=URI:$id" "$ku" 'basicConstraints=critical,CA:TRUE'
mint no-key-usage p256 /CN=cart "subjectAltName=URI:$id"
mint key-usage-not-critical p256 /CN=cart "subjectAltName=URI:$id" 'keyUsage=digitalSignature'
mint key-cert-sign p256 /CN=cart "subjectAltName=URI:$id" 'keyUsage=critical,digitalSignature,keyCertSign'
mint crl-sign p256 /CN=cart "subjectAltName=URI:$id" 'keyUsage=critical,digitalSignature,cRLSign'
mint no-digital-signature p256 /CN=cart "subjectAltName=URI:$id" 'keyUsage=critical,keyEncipherment'
mint no-san p256 /CN=cart "$ku"
mint no-uri-san p256 /CN=cart 'subjectAltName=DNS:cart.shop' "$ku"
mint two-uris p256 /CN=cart "subjectAltName=URI:$id,URI:spiffe://example.org/other" "$ku"
mint bad-spiffe-id p256 /CN=cart 'subjectAltName=URI:spiffe://Example.org/x' "$ku"
mint no-path p256 /CN=cart 'subjectAltName=URI:spiffe://example.org' "$ku"
mint weak-rsa1024 rsa1024 /CN=cart "subjectAltName=URI:$id" "$ku"
mint weak-secp256k1 k256 /CN=cart "subjectAltName=URI:$id" "$ku"
