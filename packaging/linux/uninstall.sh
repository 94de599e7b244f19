#!/usr/bin/env bash
# Remove an installation of β-VAE Desktop: everything install.sh added, as its manifest lists, and
# nothing else (your runs and settings stay).
#   usage: DIR/lib/bvae-desktop/uninstall.sh         (the installed copy knows its prefix)
#      or: ./uninstall.sh --prefix DIR               (from the unpacked tarball)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=""
QUIET=0
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#--prefix=}; shift ;;
        --quiet) QUIET=1; shift ;;
        -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
        *) echo "uninstall.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$PREFIX" ]; then
    if [ -f "$HERE/install-manifest.txt" ]; then PREFIX=$(dirname "$(dirname "$HERE")"); else PREFIX=$HOME/.local; fi
fi
PREFIX=$(cd "$PREFIX" 2>/dev/null && pwd) || { echo "uninstall.sh: no such prefix" >&2; exit 1; }
APPDIR="$PREFIX/lib/bvae-desktop"
MANIFEST="$APPDIR/install-manifest.txt"
[ -f "$MANIFEST" ] || { echo "uninstall.sh: no installation in $PREFIX ($MANIFEST is missing)" >&2; exit 1; }

dirs=()
while read -r kind rel; do
    case "$rel" in ""|/*|*..*) echo "uninstall.sh: refusing manifest entry '$rel'" >&2; exit 1 ;; esac
    case "$kind" in
        file) rm -f "$PREFIX/$rel" ;;
        dir) dirs=("$rel" "${dirs[@]}") ;;  # deepest (made last) first
        app) ;;
    esac
done < "$MANIFEST"
[ -x "$APPDIR/bvae-desktop" ] && rm -rf "$APPDIR"
for rel in "${dirs[@]}"; do rmdir "$PREFIX/$rel" 2>/dev/null || true; done  # only if now empty
[ "$QUIET" = 1 ] || echo "removed β-VAE Desktop from $PREFIX (your runs and settings are kept)"
