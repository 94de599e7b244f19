"""An objective's own terms (β-TCVAE's TC, ...) reach the loss plot by name, with no code per objective."""

from __future__ import annotations

import numpy as np

from bvae_desktop.gui.loss_plot import LossPlotView


def test_extras_get_a_curve_each_made_on_first_sight_and_cleared_with_the_run(qtbot):
    view = LossPlotView()
    qtbot.addWidget(view)
    steps = np.arange(1, 6)
    view.add_steps(steps, steps * 10.0, steps * 9.0, steps * 1.0)
    view.add_extras(steps, {"tc": np.full(5, 2.5), "mi": np.full(5, 0.5)})
    view.add_extras(np.arange(6, 8), {"tc": np.full(2, 3.0), "mi": np.full(2, 0.25)})
    assert view.extra_names() == ["tc", "mi"]
    x, y = view.curve("train", "tc").getData()
    assert list(x) == list(range(1, 8)) and list(y) == [2.5] * 5 + [3.0] * 2
    labels = [label.text for _, label in view.legend.items]
    assert "train tc" in labels and "train mi" in labels
    view.log_y = True  # negative or zero extras are clipped like the rest, nothing raises
    view.clear()
    assert view.extra_names() == [] and "train tc" not in [label.text for _, label in view.legend.items]
