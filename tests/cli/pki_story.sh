#!/usr/bin/env bash
# The whole PKI story from the command line alone, against a running `make run`-style
# server (embedded worker): a CA hierarchy, profiles and a delegated domain from
# `config apply`; requests (a folder of CSRs in one call, and a server-generated key),
# approval with --wait, every download format and a PKCS#12, revocation seen on the CRL.
# `openssl` judges what comes back. Run by tests/cli/test_pki_story.py; by hand:
#   CW_URL=http://127.0.0.1:5000 tests/cli/pki_story.sh     (from the repository root)
# Needs: flask (FLASK, default `.venv/bin/flask --app wsgi`), python3 (PYTHON), openssl.
set -euo pipefail

FLASK=(${FLASK:-.venv/bin/flask --app wsgi})
PYTHON=${PYTHON:-python3}
URL=${CW_URL:?set CW_URL to the server, e.g. http://127.0.0.1:5000}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cw() { "${FLASK[@]}" "$@"; }
step() { printf '== %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }
# json EXPR: evaluate a Python expression over the JSON document on stdin (as `d`).
json() { "$PYTHON" -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

step "config apply: organization, domain delegated to it, CA hierarchy, profiles"
cat >"$WORK/certwright.yaml" <<'YAML'
organizations:
  - {name: Acme Corp, city: Springfield, state: Illinois, country: US, departments: [IT Operations]}
domains:
  - name: example.test
    delegations: [{to: Acme Corp, types: [ssl, client, device]}]
authorities:
  - {name: Acme Root, customer: Acme, key_type: EC-P384, country: US}
  - {name: Acme Issuing, customer: Acme, key_type: EC-P256, parent: Acme Root, country: US}
  - {name: Acme Devices, customer: Acme, key_type: EC-P256, parent: Acme Root, country: US, purpose: device}
profiles:
  - {name: TLS 90d, type: ssl, ca: Acme Issuing, terms: [90], key_types: [RSA-2048, EC-P256], approval: required}
  - {name: Devices, type: device, ca: Acme Devices, terms: [365], key_types: [EC-P256], approval: automatic}
YAML
set +e; cw config plan "$WORK/certwright.yaml" >"$WORK/plan.txt"; code=$?; set -e
[ "$code" = 2 ] || fail "config plan should exit 2 (changes), not $code"
grep -q "+ create authority 'Acme Root'" "$WORK/plan.txt" || fail "the plan does not create the root"
cw config apply "$WORK/certwright.yaml"
cw config plan "$WORK/certwright.yaml" >/dev/null || fail "a second plan should find nothing to change"

step "cert request: three CSRs (openssl) in one call, and one server-generated key"
mkdir "$WORK/csrs"
for host in www api mail; do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$WORK/$host.key" -subj "/CN=$host.example.test" \
    -addext "subjectAltName=DNS:$host.example.test" -out "$WORK/csrs/$host.csr" 2>/dev/null
done
cw cert request --csr "$WORK/csrs" --org "Acme Corp" --profile "TLS 90d" --term 90 --json >"$WORK/requests.json"
[ "$(json 'len(d)' <"$WORK/requests.json")" = 3 ] || fail "three requests expected"
[ "$(json '{r["status"] for r in d}' <"$WORK/requests.json")" = "{'Requested'}" ] || fail "not Requested"
IDS=$(json '" ".join(str(r["id"]) for r in d)' <"$WORK/requests.json")
cw cert request --keygen EC-P256 --cn vpn.example.test --org "Acme Corp" --profile "TLS 90d" \
  --term 90 --json >"$WORK/keygen.json"
KEYGEN=$(json 'd["id"]' <"$WORK/keygen.json")

step "cert approve --wait: returns when the server's worker has issued them"
# shellcheck disable=SC2086
cw cert approve $IDS "$KEYGEN" --message "scripted" --wait --timeout 60 --json >"$WORK/issued.json"
[ "$(json '{r["status"] for r in d}' <"$WORK/issued.json")" = "{'Issued'}" ] || fail "not all issued: $(cat "$WORK/issued.json")"
VPN=$(json 'd[-1]["certificate_id"]' <"$WORK/issued.json")    # the last request approved

step "cert list / show"
cw cert list --org "Acme Corp" --status Issued --type ssl --json >"$WORK/list.json"
[ "$(json 'len(d)' <"$WORK/list.json")" = 4 ] || fail "four issued certificates expected"
CERT=$(json '[c["id"] for c in d if c["common_name"] == "www.example.test"][0]' <"$WORK/list.json")
cw cert show "$CERT" --json >"$WORK/show.json"
[ "$(json 'd["common_name"]' <"$WORK/show.json")" = "www.example.test" ] || fail "cert show"

step "cert download: every format, checked by openssl"
cw cert download "$CERT" --format x509IO --out "$WORK/cas.pem"            # issuing CA, then root
openssl crl2pkcs7 -nocrl -certfile "$WORK/cas.pem" | openssl pkcs7 -print_certs -noout >/dev/null
awk '/BEGIN/{n++} n==2' "$WORK/cas.pem" >"$WORK/root.pem"
cw cert download "$CERT" --format x509IOR --out "$WORK/cas-reversed.pem"  # root first
cmp -s <(head -c 200 "$WORK/cas-reversed.pem") <(head -c 200 "$WORK/root.pem") || fail "x509IOR is not root first"
for fmt in x509 pem; do                                                    # leaf + chain
  cw cert download "$CERT" --format "$fmt" --out "$WORK/$fmt.pem"
  openssl verify -CAfile "$WORK/root.pem" -untrusted "$WORK/$fmt.pem" "$WORK/$fmt.pem" >/dev/null \
    || fail "$fmt does not verify to the root"
done
for fmt in x509CO pemco; do                                               # leaf only
  cw cert download "$CERT" --format "$fmt" --out "$WORK/$fmt.pem"
  openssl x509 -in "$WORK/$fmt.pem" -noout -subject | grep -q "CN = www.example.test" || fail "$fmt"
  openssl verify -CAfile "$WORK/root.pem" -untrusted "$WORK/cas.pem" "$WORK/$fmt.pem" >/dev/null || fail "$fmt"
done
cw cert download "$CERT" --format pemia --out "$WORK/pemia.pem"            # leaf + issuing CA
[ "$(grep -c 'BEGIN CERTIFICATE' "$WORK/pemia.pem")" = 2 ] || fail "pemia holds the leaf and the issuing CA"
openssl verify -CAfile "$WORK/root.pem" -untrusted "$WORK/pemia.pem" "$WORK/pemia.pem" >/dev/null || fail "pemia"
cw cert download "$CERT" --format cer --out "$WORK/leaf.cer"               # DER
openssl x509 -inform DER -in "$WORK/leaf.cer" -noout -subject | grep -q "CN = www.example.test" || fail "cer"
cw cert download "$CERT" --format bin --out "$WORK/chain.p7b"              # PKCS#7 DER
[ "$(openssl pkcs7 -inform DER -in "$WORK/chain.p7b" -print_certs | grep -c 'subject=')" = 3 ] || fail "bin"
cw cert download "$CERT" --format base64 --out "$WORK/chain.p7c"           # PKCS#7 PEM
[ "$(openssl pkcs7 -in "$WORK/chain.p7c" -print_certs | grep -c 'subject=')" = 3 ] || fail "base64"
# The CSR's key matches the issued certificate.
[ "$(openssl x509 -in "$WORK/x509CO.pem" -noout -pubkey)" = "$(openssl pkey -in "$WORK/www.key" -pubout)" ] || fail "key"

step "cert download --format p12: the server-generated key, under our password"
printf 'Correct-Horse-Battery\n' >"$WORK/p12-password"
cw cert download "$VPN" --format p12 --password-file "$WORK/p12-password" --out "$WORK/vpn.p12"
openssl pkcs12 -in "$WORK/vpn.p12" -passin file:"$WORK/p12-password" -nodes 2>/dev/null >"$WORK/vpn.pem"
grep -q "PRIVATE KEY" "$WORK/vpn.pem" || fail "no key in the PKCS#12"
openssl x509 -in "$WORK/vpn.pem" -noout -subject | grep -q "CN = vpn.example.test" || fail "p12 certificate"
[ "$(stat -c %a "$WORK/vpn.p12")" = 600 ] || fail "the PKCS#12 is readable by others"

step "an automatic profile: issued without an approval"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/dev.key" \
  -subj "/CN=sensor1.example.test" -addext "subjectAltName=DNS:sensor1.example.test" \
  -out "$WORK/dev.csr" 2>/dev/null
cw cert request --csr "$WORK/dev.csr" --type device --org "Acme Corp" --profile Devices --term 365 --json >"$WORK/dev.json"
DEV=$(json 'd["id"]' <"$WORK/dev.json")
[ "$(json 'd["status"]' <"$WORK/dev.json")" = Approved ] || fail "the device request was not approved"

step "cert revoke: the CA's CRL lists it"
cw cert revoke "$CERT" --reason keyCompromise --json >"$WORK/revoked.json"
[ "$(json 'd[0]["status"]' <"$WORK/revoked.json")" = Revoked ] || fail "not revoked"
SERIAL=$(json 'd[0]["serial"]' <"$WORK/revoked.json")
CA_ID=$(cw ca list --json | json '[c["id"] for c in d if c["name"] == "Acme Issuing"][0]')
"$PYTHON" -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1], timeout=10).read())' \
  "$URL/pki/crl/$CA_ID.crl" >"$WORK/issuing.crl"
LISTED=$(openssl crl -inform DER -in "$WORK/issuing.crl" -noout -text \
  | sed -n 's/.*Serial Number: *\([0-9A-Fa-f]*\).*/\1/p' | tr 'a-f' 'A-F' | sed 's/^0*//')
WANT=$(printf '%s' "$SERIAL" | tr 'a-f' 'A-F' | sed 's/^0*//')
grep -qx "$WANT" <<<"$LISTED" || fail "serial $SERIAL is not on the CRL (listed: $LISTED)"

step "jobs enqueue --wait: a job from this process runs on the server within seconds"
cw jobs enqueue audit_verify --wait --timeout 30 | grep -q "done" || fail "audit_verify did not run"

# The automatic device request is issued by the server without anyone approving it.
for _ in $(seq 60); do
  [ "$(cw cert list --type device --json | json 'len(d)')" = 1 ] && break
  sleep 0.5
done
[ "$(cw cert list --type device --json | json 'len(d)')" = 1 ] || fail "request $DEV was not issued"
echo "CLI story: OK"
