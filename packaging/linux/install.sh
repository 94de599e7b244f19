#!/usr/bin/env bash
# Install β-VAE Desktop from this unpacked tarball.
#   usage: ./install.sh [--prefix DIR]      (default: ~/.local, or $PREFIX)
# Puts the app in DIR/lib/bvae-desktop, a bvae-desktop link in DIR/bin, the menu entry in
# DIR/share/applications and the icons in DIR/share/icons/hicolor. Every path it adds is listed in
# DIR/lib/bvae-desktop/install-manifest.txt, which DIR/lib/bvae-desktop/uninstall.sh reads to remove them.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=${PREFIX:-$HOME/.local}
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#--prefix=}; shift ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
[ -x "$HERE/app/bvae-desktop" ] || { echo "install.sh: $HERE/app/bvae-desktop is missing: run me from the unpacked tarball" >&2; exit 1; }
mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)
APPDIR="$PREFIX/lib/bvae-desktop"

if [ -e "$APPDIR/uninstall.sh" ]; then  # an earlier version: remove it first, so no stale file survives
    "$APPDIR/uninstall.sh" --quiet
fi

manifest=()
made_dir() {  # mkdir -p, remembering each directory it creates (so uninstall removes only those)
    local dir=$1 missing=()
    while [ ! -d "$dir" ]; do missing=("$dir" "${missing[@]}"); dir=$(dirname "$dir"); done
    for dir in "${missing[@]}"; do mkdir "$dir"; manifest+=("dir ${dir#"$PREFIX"/}"); done
}

# the app: copied beside its final place, then renamed into it (an interrupted install leaves no half app)
made_dir "$PREFIX/lib"
tmp="$PREFIX/lib/.bvae-desktop.installing.$$"
rm -rf "$tmp"
cp -a "$HERE/app" "$tmp"
cp "$HERE/uninstall.sh" "$tmp/uninstall.sh"
mv "$tmp" "$APPDIR"
manifest+=("app lib/bvae-desktop")

made_dir "$PREFIX/bin"
ln -sfn "../lib/bvae-desktop/bvae-desktop" "$PREFIX/bin/bvae-desktop"
manifest+=("file bin/bvae-desktop")

case "$PREFIX" in  # a theme name works where the icon theme is searched; elsewhere give the file itself
    "$HOME/.local"|/usr/local|/usr) icon=bvae-desktop ;;
    *) icon="$PREFIX/share/icons/hicolor/scalable/apps/bvae-desktop.svg" ;;
esac
made_dir "$PREFIX/share/applications"
sed -e "s|@EXEC@|$PREFIX/bin/bvae-desktop|g" -e "s|@ICON@|$icon|g" \
    "$HERE/share/applications/bvae-desktop.desktop" > "$PREFIX/share/applications/bvae-desktop.desktop"
manifest+=("file share/applications/bvae-desktop.desktop")

for src in "$HERE"/share/icons/hicolor/*/apps/bvae-desktop.*; do
    rel=${src#"$HERE"/}
    made_dir "$(dirname "$PREFIX/$rel")"
    cp "$src" "$PREFIX/$rel"
    manifest+=("file $rel")
done

printf '%s\n' "${manifest[@]}" > "$APPDIR/install-manifest.txt.tmp"
mv "$APPDIR/install-manifest.txt.tmp" "$APPDIR/install-manifest.txt"
echo "installed β-VAE Desktop in $APPDIR"
echo "  run: $PREFIX/bin/bvae-desktop   (check it: $PREFIX/bin/bvae-desktop --self-test)"
echo "  remove: $APPDIR/uninstall.sh"
