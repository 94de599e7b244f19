; Inno Setup script for β-VAE Desktop: a setup .exe that installs the PyInstaller one-folder app,
; adds a Start-menu shortcut (and, if asked, a desktop one) and registers an uninstaller.
; Build on Windows, after PyInstaller made dist\bvae-desktop\ (packaging\windows\build.ps1 does both):
;   iscc /DAppVersion=0.1.0 packaging\windows\bvae_desktop.iss
; Output: dist\bvae-desktop-<version>-windows-x64-setup.exe
; This cannot be built on Linux; see packaging\README.md.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "β-VAE Desktop"
#define AppExe "bvae-desktop.exe"
#define Root "..\.."

[Setup]
; a fixed AppId ties upgrades and the uninstaller to one product: never change it
AppId={{5B7E3C2A-9F1D-4E6B-A8C4-2D0F7B1E9A35}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=β-VAE Desktop developers
DefaultDirName={autopf}\bvae-desktop
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; per-user install by default (no administrator needed); the dialog offers all users
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#Root}\dist
OutputBaseFilename=bvae-desktop-{#AppVersion}-windows-x64-setup
SetupIconFile={#Root}\packaging\icons\bvae-desktop.ico
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName} {#AppVersion}
; torch is large: LZMA2 with a solid archive makes the setup about a third smaller
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
CloseApplications=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#Root}\dist\bvae-desktop\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"; WorkingDir: "{userdocs}"
Name: "{group}\{cm:UninstallProgram,{#AppName}}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; WorkingDir: "{userdocs}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; files Python may have written beside the app (the app writes runs and settings to the user's folders, which stay)
Type: filesandordirs; Name: "{app}\_internal\__pycache__"
