import subprocess
import sys
import textwrap


def test_core_imports_with_qt_unavailable():
    """The engine must run where Qt cannot load: block PySide6 and pyqtgraph, import everything in core."""
    code = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph', 'PyQt5', 'PyQt6'):
                    raise ImportError('Qt blocked for this test: ' + name)
                return None
        sys.meta_path.insert(0, Block())
        import bvae_desktop.core as core
        names = [m.name for m in pkgutil.walk_packages(core.__path__, 'bvae_desktop.core.')]
        for name in names:
            importlib.import_module(name)
        import bvae_desktop.cli
        assert not any(m.split('.')[0] in ('PySide6', 'pyqtgraph') for m in sys.modules)
        print(len(names))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 10
