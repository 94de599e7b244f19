# Build the Windows installer: the PyInstaller one-folder app, its self-test, then the Inno Setup setup .exe.
# Run from the repository root in PowerShell, with Python 3.10+ and Inno Setup 6 (iscc on PATH, or the
# default install folder):
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..\..")

if (-not (Test-Path .venv)) { python -m venv .venv }
$py = ".venv\Scripts\python.exe"
& $py -m pip install --quiet --upgrade pip
& $py -m pip install --quiet torch==2.13.0
& $py -m pip install --quiet -e ".[bundle]"
$version = & $py -c "import importlib.metadata as m; print(m.version('bvae-desktop'))"

& $py -m PyInstaller --noconfirm --clean --distpath dist --workpath build\pyinstaller packaging\bvae_desktop.spec
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed" }

# the windowed exe has no console: wait for it and read its exit code (0 = every step passed)
$test = Start-Process -FilePath "dist\bvae-desktop\bvae-desktop.exe" -ArgumentList "--self-test" -Wait -PassThru
if ($test.ExitCode -ne 0) { throw "the frozen app's --self-test failed (exit $($test.ExitCode))" }

$iscc = (Get-Command iscc -ErrorAction SilentlyContinue).Source
if (-not $iscc) { $iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe" }
& $iscc "/DAppVersion=$version" packaging\windows\bvae_desktop.iss
if ($LASTEXITCODE -ne 0) { throw "Inno Setup failed" }
Write-Host "dist\bvae-desktop-$version-windows-x64-setup.exe"
