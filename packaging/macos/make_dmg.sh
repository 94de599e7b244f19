#!/usr/bin/env bash
# Build the macOS app and its disk image: PyInstaller's BUNDLE step makes "dist/BVAE Desktop.app", which is
# self-tested, then put on a compressed .dmg beside a link to /Applications (drag to install).
#   usage (on a Mac, from the repository root, Python 3.10+):  bash packaging/macos/make_dmg.sh
# Output: dist/bvae-desktop-VERSION-macos-ARCH.dmg. Unsigned: see packaging/README.md for signing and notarising.
# This cannot be built on Linux (hdiutil and the macOS bootloader are macOS-only).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(uname -s)" = Darwin ] || { echo "make_dmg.sh: run me on macOS" >&2; exit 1; }
PY=${PY:-.venv/bin/python}
if [ ! -x "$PY" ]; then
    python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet torch==2.13.0 -e '.[bundle]'
    PY=.venv/bin/python
fi
"$PY" -m pip install --quiet -e '.[bundle]'
VERSION=$("$PY" -c 'import importlib.metadata as m; print(m.version("bvae-desktop"))')
APP="dist/BVAE Desktop.app"
DMG="dist/bvae-desktop-$VERSION-macos-$(uname -m).dmg"

"$PY" -m PyInstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller packaging/bvae_desktop.spec
"$APP/Contents/MacOS/bvae-desktop" --self-test

STAGE=build/dmg
rm -rf "$STAGE" "$DMG"
mkdir -p "$STAGE"
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
hdiutil create -volname "β-VAE Desktop $VERSION" -srcfolder "$STAGE" -fs HFS+ -format UDZO -ov "$DMG.tmp.dmg"
mv "$DMG.tmp.dmg" "$DMG"
rm -rf "$STAGE"
echo "$DMG ($(du -sh "$DMG" | cut -f1))"
