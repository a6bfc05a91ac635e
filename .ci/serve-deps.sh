#!/usr/bin/env bash
# Installs what the tests need beyond pip, idempotently (a second run does nothing):
#   - Debian packages chromium (OHIF browser test), orthanc + orthanc-dicomweb (comparison);
#   - Debian's prometheus, for `promtool check rules` on deploy/monitoring (without its
#     recommends; its service is not started);
#   - the prebuilt OHIF Viewer, `npm pack @ohif/app@VERSION` unpacked to
#     ${MIRROR_OHIF_CACHE:-$HOME/.cache/tcia-mirror/ohif}/VERSION/dist (npm from apt if missing).
# Playwright's own browser downloads are not used: the tests drive /usr/bin/chromium.
# Prints the OHIF dist path on stdout (export it as MIRROR_OHIF_DIST to override the cache).
set -euo pipefail

ohif_version="${MIRROR_OHIF_VERSION:-3.13.2}"
cache="${MIRROR_OHIF_CACHE:-$HOME/.cache/tcia-mirror/ohif}"
dist="$cache/$ohif_version/dist"

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

missing=()
for pkg in chromium orthanc orthanc-dicomweb; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$pkg")
    fi
done
if [ ! -f "$dist/index.html" ] && ! command -v npm >/dev/null; then
    missing+=(npm)
fi
# promtool's package goes in without its recommends (a web UI's JavaScript, fonts).
lean=()
if ! command -v promtool >/dev/null; then
    lean+=(prometheus)
fi
if [ "${#missing[@]}" -gt 0 ] || [ "${#lean[@]}" -gt 0 ]; then
    echo "serve-deps: apt-get install ${missing[*]} ${lean[*]}" >&2
    $sudo apt-get update -qq
    if [ "${#missing[@]}" -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
    fi
    if [ "${#lean[@]}" -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            "${lean[@]}" >&2
    fi
fi

if [ ! -f "$dist/index.html" ]; then
    echo "serve-deps: npm pack @ohif/app@$ohif_version" >&2
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "@ohif/app@$ohif_version" >/dev/null)
    tar xzf "$work"/ohif-app-*.tgz -C "$work"
    mkdir -p "$cache/$ohif_version"
    rm -rf "$dist"
    mv "$work/package/dist" "$dist"
fi
echo "$dist"
