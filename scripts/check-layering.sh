#!/usr/bin/env bash
# Keeps the layers of DESIGN.md honest: the pure modules (model, cores, config) import no I/O.
set -euo pipefail
cd "$(dirname "$0")/.."

pure=(ProxyModel PolicyCore ProxyConfig IdentityCore AuditCore)
forbidden='^\s*(@[A-Za-z_]+\s+)*((public|package|internal|private|fileprivate)\s+)?import\s+(NIO[A-Za-z0-9_]*|AsyncHTTPClient|ServiceLifecycle|UnixSignals|NIOSSL|NIOHTTP2|NIOExtras|Logging)\b'
status=0
for module in "${pure[@]}"; do
    dir="Sources/$module"
    [ -d "$dir" ] || continue
    if hits=$(grep -rnE "$forbidden" "$dir" --include='*.swift'); then
        echo "layering violation: $module is a pure module and may not import I/O:" >&2
        echo "$hits" >&2
        status=1
    fi
done
# The executable only parses arguments: it may not reach past ProxyServer into the data plane.
if hits=$(grep -rnE '^\s*(public\s+)?import\s+(NIO[A-Za-z0-9_]*|ProxyHTTP|PolicyCore)\b' Sources/portcullis --include='*.swift'); then
    echo "layering violation: the executable imports the data plane directly:" >&2
    echo "$hits" >&2
    status=1
fi
if [ "$status" -eq 0 ]; then echo "layering: ok (${pure[*]} import no I/O)"; fi
exit "$status"
