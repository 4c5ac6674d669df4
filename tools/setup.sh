#!/usr/bin/env bash
# Installs what walctl needs on Debian, idempotently: nothing is downloaded when everything is present.
# Usage: tools/setup.sh
set -euo pipefail

packages=(pkg-config liblz4-dev librdkafka-dev libpq-dev libcurl4-openssl-dev postgresql kcat python3-aiosmtpd openssl
    gcc python3-dev python3-venv)
# The shipper's /metrics is checked by a real Prometheus server and promtool (WALObserveTests).
packages+=(prometheus curl)
# The live page is checked in headless Chromium (LivePageBrowserTests).
packages+=(chromium)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "setup: the Swift toolchain is required (swift not on PATH)" >&2; exit 1; }
