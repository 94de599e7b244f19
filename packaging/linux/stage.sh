#!/usr/bin/env bash
# Lay out the Linux package tree from a one-folder app:
#   stage.sh APP_DIR DEST VERSION
# DEST gets app/ (hard links to APP_DIR where the file system allows, else a copy), install.sh, uninstall.sh,
# README.txt, share/applications/bvae-desktop.desktop and share/icons/hicolor/*/apps/bvae-desktop.{png,svg}.
# build.sh tars DEST; the tests stage a stand-in app to check install.sh and uninstall.sh.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: stage.sh APP_DIR DEST VERSION" >&2; exit 2; }
APP=$1 DEST=$2 VERSION=$3
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$DEST"
mkdir -p "$DEST/share/applications" "$DEST/share/icons/hicolor/scalable/apps"
cp -al "$APP" "$DEST/app" 2>/dev/null || { rm -rf "$DEST/app"; cp -a "$APP" "$DEST/app"; }
cp "$ROOT/packaging/linux/install.sh" "$ROOT/packaging/linux/uninstall.sh" "$DEST/"
cp "$ROOT/packaging/linux/bvae-desktop.desktop" "$DEST/share/applications/"
for png in "$ROOT"/bvae_desktop/resources/icons/bvae-desktop-*.png; do
    size=${png##*-}; size=${size%.png}
    mkdir -p "$DEST/share/icons/hicolor/${size}x${size}/apps"
    cp "$png" "$DEST/share/icons/hicolor/${size}x${size}/apps/bvae-desktop.png"
done
cp "$ROOT/resources/icons/bvae-desktop.svg" "$DEST/share/icons/hicolor/scalable/apps/bvae-desktop.svg"
cat > "$DEST/README.txt" <<TXT
β-VAE Desktop $VERSION for Linux ($(uname -m))

Install for yourself (no root; the app goes to ~/.local/lib/bvae-desktop, the menu entry to ~/.local/share):
    ./install.sh
or elsewhere:  ./install.sh --prefix /opt/bvae-desktop     (sudo ./install.sh --prefix /usr/local: for everyone)
Then start it from the applications menu, or run  bvae-desktop  (~/.local/bin must be on PATH).
Check an installation:  bvae-desktop --self-test
Remove it:  ~/.local/lib/bvae-desktop/uninstall.sh    (or ./uninstall.sh --prefix DIR)
Your runs and settings (~/.local/share/bvae-desktop, ~/.config/bvae-desktop) are kept.
TXT
