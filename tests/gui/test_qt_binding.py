import sys


def test_qt_binding_keeps_reference_counts_of_none():
    """PySide6 6.12.0 on Python < 3.12 decrefs None on every void call; pyqtgraph then aborts the app."""
    from PySide6.QtCore import QObject

    obj = QObject()
    before = sys.getrefcount(None)
    for _ in range(200):
        obj.setObjectName("x")
    assert sys.getrefcount(None) - before > -50
