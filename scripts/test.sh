#!/usr/bin/env bash
# Runs every test of Portcullis: layering check, build, policy examples, unit and integration tests.
# Installs the peers the tests use (curl, openssl) when they are missing and it can (root with apt-get);
# otherwise it fails: a missing peer is never a skipped test.
set -euo pipefail
cd "$(dirname "$0")/.."

required_tools=(curl openssl)
missing=()
for tool in "${required_tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "error: missing tools needed by the tests: ${missing[*]} (install them: apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi
for tool in "${required_tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool still missing" >&2; exit 1; }
done

echo "== layering"
scripts/check-layering.sh

echo "== build"
swift build
bin="$(swift build --show-bin-path)/portcullis"
export PORTCULLIS_BIN="$bin"

echo "== policy examples: check --strict and their policy tests"
for policy in policies/*.yaml; do
    tests="policies/tests/$(basename "$policy" .yaml).test.yaml"
    [ -f "$tests" ] || { echo "error: $policy has no test file $tests" >&2; exit 1; }
    "$bin" check --config "$policy" --no-files --strict
    "$bin" test --config "$policy" "$tests"
done

echo "== unit tests"
swift test --skip IntegrationTests

echo "== integration tests (spawned binary, real sockets, curl)"
swift test --filter IntegrationTests --no-parallel

echo "== all tests passed"
