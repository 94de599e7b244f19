#!/usr/bin/env bash
# The Linux package end to end: unpack the tarball, install it into a temporary prefix, run the installed
# app's --self-test with an empty HOME and TMPDIR (they must stay empty), uninstall, and check the prefix is
# empty again. `make bundle-test` and CI run it after `make bundle`.
#   usage: packaging/linux/test_install.sh [TARBALL]    (default: the newest dist/bvae-desktop-*-linux-*.tar.gz)
set -euo pipefail
cd "$(dirname "$0")/../.."
# (no `| head` in this script: under pipefail the writer's SIGPIPE would fail it with status 141)
TARBALL=${1:-$(ls -t dist/bvae-desktop-*-linux-*.tar.gz 2>/dev/null | awk 'NR == 1')}
[ -n "$TARBALL" ] && [ -f "$TARBALL" ] || { echo "test_install.sh: no tarball; run 'make bundle' first" >&2; exit 1; }
fail() { echo "bundle test FAILED: $*" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/unpacked" "$work/prefix" "$work/home" "$work/tmp"
start=$(date +%s)

tar -C "$work/unpacked" -xzf "$TARBALL"
pkg=$(ls -d "$work"/unpacked/bvae-desktop-*)
"$pkg/install.sh" --prefix "$work/prefix"
bin="$work/prefix/bin/bvae-desktop"
[ -L "$bin" ] && [ -x "$bin" ] || fail "$bin is not an executable link"
desktop="$work/prefix/share/applications/bvae-desktop.desktop"
grep -qx "Exec=$bin" "$desktop" || fail "$desktop does not run $bin"
icon=$(sed -n 's/^Icon=//p' "$desktop")
[ -f "$icon" ] || fail "the menu entry's icon $icon is missing"
if command -v desktop-file-validate >/dev/null; then desktop-file-validate "$desktop" || fail "invalid $desktop"; fi

want=$(awk 'NR == 1 {print $3}' "$pkg/README.txt")  # the package's own README (a wildcard also finds sklearn's)
got=$(env -i PATH=/usr/bin:/bin LANG=C.UTF-8 HOME="$work/home" TMPDIR="$work/tmp" "$bin" --version 2>/dev/null)
[ "$got" = "β-VAE Desktop $want" ] || fail "--version says '$got', the package is $want"
env -i PATH=/usr/bin:/bin LANG=C.UTF-8 HOME="$work/home" TMPDIR="$work/tmp" "$bin" --self-test \
    || fail "the installed app's --self-test exited $?"
left=$(find "$work/home" "$work/tmp" -mindepth 1 | awk 'NR <= 5')
[ -z "$left" ] || fail "the self-test wrote outside its temp folder: $left"

"$work/prefix/lib/bvae-desktop/uninstall.sh"
left=$(find "$work/prefix" -mindepth 1 | awk 'NR <= 5')
[ -z "$left" ] || fail "uninstall left: $left"
echo "bundle test passed in $(( $(date +%s) - start )) s: installed into a temp prefix, --self-test passed, uninstall removed everything"
