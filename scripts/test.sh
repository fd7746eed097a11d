#!/usr/bin/env bash
# Runs every test of Portcullis: layering check, build, policy examples, unit and integration tests.
# Installs the peers the tests use (curl, openssl, rsyslogd) when they are missing and it can (root with apt-get);
# otherwise it fails: a missing peer is never a skipped test.
set -euo pipefail
cd "$(dirname "$0")/.."

required_tools=(curl openssl rsyslogd)
# The Debian packages that provide each tool.
declare -A tool_packages=([curl]=curl [openssl]=openssl [rsyslogd]="rsyslog rsyslog-gnutls")
has_tool() {
    case "$1" in
        # rsyslogd is in /usr/sbin (not in every PATH); the syslog sink's TLS tests need its gnutls driver.
        rsyslogd)
            { command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ]; } &&
                compgen -G "/usr/lib/*/rsyslog/lmnsd_gtls.so" >/dev/null
            ;;
        *) command -v "$1" >/dev/null 2>&1 ;;
    esac
}
missing=()
for tool in "${required_tools[@]}"; do
    has_tool "$tool" || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    packages=()
    for tool in "${missing[@]}"; do
        read -r -a tool_package_list <<<"${tool_packages[$tool]}"
        packages+=("${tool_package_list[@]}")
    done
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing: ${packages[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
    else
        echo "error: missing tools needed by the tests: ${missing[*]} (install them: apt-get install ${packages[*]})" >&2
        exit 1
    fi
fi
for tool in "${required_tools[@]}"; do
    has_tool "$tool" || { echo "error: $tool still missing" >&2; exit 1; }
done

# The audit event schema is checked with python's jsonschema (PyPI) by the integration tests.
if ! python3 -c 'import jsonschema' >/dev/null 2>&1; then
    echo "installing: jsonschema (PyPI)"
    python3 -m pip install --quiet 'jsonschema==4.26.0'
fi
python3 -c 'import jsonschema' || { echo "error: python3 jsonschema missing" >&2; exit 1; }

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
