#!/usr/bin/env bash
# Build the Linux app: PyInstaller's one-folder bundle in dist/bvae-desktop/, then the installable tarball
# dist/bvae-desktop-VERSION-linux-ARCH.tar.gz (the bundle, install.sh, uninstall.sh, the .desktop file, icons).
#   usage: packaging/linux/build.sh        (PY=path/to/python to use another interpreter than .venv's)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
VERSION=$("$PY" -c 'import importlib.metadata as m; print(m.version("bvae-desktop"))')
NAME="bvae-desktop-$VERSION-linux-$(uname -m)"

start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/bvae_desktop.spec
built=$(date +%s)

bash packaging/linux/stage.sh dist/bvae-desktop "build/linux-package/$NAME" "$VERSION"
tar -C build/linux-package -czf "dist/$NAME.tar.gz.tmp" "$NAME"
mv "dist/$NAME.tar.gz.tmp" "dist/$NAME.tar.gz"  # whole or not at all
rm -rf build/linux-package
packed=$(date +%s)
echo "bundle: dist/bvae-desktop ($(du -sh dist/bvae-desktop | cut -f1)), PyInstaller took $((built - start)) s"
echo "package: dist/$NAME.tar.gz ($(du -sh "dist/$NAME.tar.gz" | cut -f1)), packed in $((packed - built)) s"
