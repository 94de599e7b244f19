"""The Models menu: the bundled models (opened like File ▸ Open checkpoint), their cards, the comparison.

`ModelsMenu(window)` builds the menu from the registry (core.model_zoo), adds a label to the status
bar saying which model the explorer, scatter and Compress tabs show, and, once the window is up,
shows the bundled dSprites β-VAE there when nothing else is shown yet (nothing at all when no model
is bundled). Opening a bundled model goes through `window.open_checkpoint`: its settings go into the
training panel and its model into the views; it holds weights only, so the window does not offer to
continue it (Train starts a new run with its settings).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from bvae_desktop.core import model_zoo
from bvae_desktop.core.errors import BvaeError

if TYPE_CHECKING:
    from bvae_desktop.core.model_source import ModelSource
    from bvae_desktop.gui.compare_view import CompareDialog
    from bvae_desktop.gui.main_window import MainWindow


def shown_model_text(source: ModelSource | None, *, live: bool = False) -> str:
    """What the status bar says about the model the explorer views show."""
    if source is None:
        return ""
    if live:
        return f"Showing the model being trained (step {source.step:,})"
    label = source.label
    name = label.removeprefix("bundled model ") if label.startswith("bundled model ") else None
    name = name or model_zoo.bundled_name_for(label)
    if name is not None:
        model = model_zoo.find_model(name)
        if model is not None:
            return f"Showing bundled model {name} ({model.short()})"
    weight = "β = 1" if source.config.objective == "vae" else f"β = {source.beta:g}"
    return f"Showing {label} ({weight}, step {source.step:,})"


class ModelCardsDialog(QDialog):
    """Every bundled model's card: a list on the left, the card on the right, Open."""

    def __init__(self, menu: ModelsMenu, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelCardsDialog")
        self.setWindowTitle("Bundled models")
        self._menu = menu
        self.list = QListWidget(self)
        self.list.setObjectName("modelCardsList")
        self.text = QPlainTextEdit(self)
        self.text.setObjectName("modelCardText")
        self.text.setReadOnly(True)
        for model in menu.models:
            item = QListWidgetItem(f"{model.name}\n{model.title}")
            item.setData(Qt.ItemDataRole.UserRole, model.name)
            self.list.addItem(item)
        buttons = QDialogButtonBox(self)
        self.openButton = buttons.addButton("Open", QDialogButtonBox.ButtonRole.AcceptRole)
        self.openButton.setObjectName("openModelButton")
        buttons.addButton(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        self.openButton.clicked.connect(self._on_open)
        self.list.currentItemChanged.connect(self._on_current)
        body = QHBoxLayout()
        body.addWidget(self.list, 1)
        body.addWidget(self.text, 3)
        layout = QVBoxLayout(self)
        if menu.problems:
            warning = QLabel("\n".join(menu.problems), self)
            warning.setObjectName("modelCardsProblems")
            warning.setWordWrap(True)
            layout.addWidget(warning)
        layout.addLayout(body)
        layout.addWidget(buttons)
        self.openButton.setEnabled(bool(menu.models))
        if menu.models:
            self.list.setCurrentRow(0)
        else:
            self.text.setPlainText("No models are bundled with this installation.")
        self.resize(900, 560)

    def select(self, name: str) -> None:
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole) == name:
                self.list.setCurrentRow(row)

    def current_name(self) -> str | None:
        item = self.list.currentItem()
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def _on_current(self, current: QListWidgetItem | None, _previous: object = None) -> None:
        if current is None:
            return
        model = self._menu.model(current.data(Qt.ItemDataRole.UserRole))
        if model is not None:
            card = json.dumps(model.card, indent=2, ensure_ascii=False)
            self.text.setPlainText(f"{model.describe()}\n\npath: {model.weights}\n\n{card}")

    def _on_open(self) -> None:
        name = self.current_name()
        if name is not None and self._menu.open_model(name):
            self.accept()


FIRST_PAINT_WAIT_MS = 300  # show the first-launch model this long after start-up if no paint came first


class ModelsMenu(QObject):
    """The Models menu of `window`, its status-bar label, and the model shown at first launch."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.first_launch_checked = False  # set once the first-launch model has been shown (or not)
        self.problems: list[str] = []
        self.models = model_zoo.list_models(problems=self.problems)
        self.compare_dialog: CompareDialog | None = None
        self.cards_dialog: ModelCardsDialog | None = None
        self.menu = window.menuBar().addMenu("&Models")
        self.menu.setObjectName("modelsMenu")
        self.menu.setToolTipsVisible(True)
        self.actions: dict[str, QAction] = {}
        for model in self.models:
            action = QAction(f"{model.name} — {model.title}", window)
            action.setObjectName(f"openModel-{model.name}")
            action.setToolTip(model.describe())
            action.setStatusTip(f"open the bundled model {model.name} ({model.short()})")
            action.triggered.connect(lambda _checked=False, name=model.name: self.open_model(name))
            self.menu.addAction(action)
            self.actions[model.name] = action
        if not self.models:
            empty = QAction("No bundled models", window)
            empty.setObjectName("noBundledModelsAction")
            empty.setEnabled(False)
            self.menu.addAction(empty)
        self.menu.addSeparator()
        self.cardsAction = self._add("Model cards…", self.show_cards, "modelCardsAction")
        self.cardsAction.setEnabled(bool(self.models) or bool(self.problems))
        self.compareAction = self._add("Compare two models…", self.show_compare, "compareModelsAction")
        self.label = QLabel(window)
        self.label.setObjectName("shownModelLabel")
        window.statusBar().addPermanentWidget(self.label)
        # after the window's first paint (loading and checking the weights takes ~0.4 s on the GUI thread: before
        # the paint it delayed the window at start-up), or after FIRST_PAINT_WAIT_MS if it is never painted
        window.installEventFilter(self)
        QTimer.singleShot(FIRST_PAINT_WAIT_MS, self, self._show_default_once)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.window and event.type() == QEvent.Type.Paint and not self.first_launch_checked:
            QTimer.singleShot(0, self, self._show_default_once)  # after this paint, not inside it
        return False

    def _show_default_once(self) -> None:
        if not self.first_launch_checked:
            self.window.removeEventFilter(self)
            self.show_default_model()

    def _add(self, text: str, slot, name: str) -> QAction:  # type: ignore[no-untyped-def]
        action = QAction(text, self.window)
        action.setObjectName(name)
        action.triggered.connect(slot)
        self.menu.addAction(action)
        return action

    def model(self, name: str) -> model_zoo.BundledModel | None:
        return next((m for m in self.models if m.name == name), None)

    # --- opening ----------------------------------------------------------------------------------

    def open_model(self, name: str) -> bool:
        """Open a bundled model as File ▸ Open checkpoint would (weights checked against the card first)."""
        try:
            path = model_zoo.verify_weights(model_zoo.get_model(name))
        except BvaeError as exc:
            self.window.show_error("Cannot open model", str(exc))
            return False
        checkpoint = self.window.open_checkpoint(path)
        if checkpoint is None:
            return False
        if self.window.model_source is not None:
            self.window.model_source.label = f"bundled model {name}"
            self.show_source(self.window.model_source)
        self.window.statusBar().showMessage(f"opened bundled model {name}: {self.label.text()}", 15000)
        return True

    def show_default_model(self) -> None:
        """At first launch: the bundled dSprites β-VAE in the explorer views, unless something is shown."""
        window = self.window
        self.first_launch_checked = True
        if window.model_source is not None or window.training:
            return
        model = self.model(model_zoo.DEFAULT_MODEL)
        if model is None:
            return
        try:
            source = model_zoo.model_source(model)
        except BvaeError as exc:  # a damaged install: say so quietly, the window works without it
            window.statusBar().showMessage(f"bundled model {model.name} not shown: {exc}", 15000)
            return
        if window.model_source is not None or window.training:  # something came first while loading
            return
        window.set_model_source(source)  # the permanent label on the right says which model is shown

    def show_source(self, source: ModelSource | None, *, live: bool = False) -> None:
        """Say which model the explorer, scatter and Compress tabs show (main window calls this)."""
        text = shown_model_text(source, live=live)
        self.label.setText(text)
        self.label.setToolTip(text)

    # --- dialogs ----------------------------------------------------------------------------------

    def show_cards(self, name: str | None = None) -> ModelCardsDialog:
        if self.cards_dialog is None:
            self.cards_dialog = ModelCardsDialog(self, self.window)
        if isinstance(name, str):
            self.cards_dialog.select(name)
        self.cards_dialog.show()
        self.cards_dialog.raise_()
        return self.cards_dialog

    def show_compare(self) -> CompareDialog:
        from bvae_desktop.gui.compare_view import CompareDialog

        if self.compare_dialog is None:
            self.compare_dialog = CompareDialog(self.window)
        else:
            self.compare_dialog.view.refresh()
        self.compare_dialog.show()
        self.compare_dialog.raise_()
        return self.compare_dialog

    def shutdown(self) -> None:
        """Stop the comparison's work (the main window calls this on close)."""
        if self.compare_dialog is not None:
            self.compare_dialog.shutdown()
