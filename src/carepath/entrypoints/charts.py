"""Report charts as PNG or SVG (matplotlib, drawn off-screen): a funnel, engagement over time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from carepath.errors import InvalidInput, Problem
from carepath.services.engagement import DayOfEngagement
from carepath.services.reports import FunnelRow

FORMATS = (".png", ".svg")


def _pyplot() -> Any:
    import matplotlib  # noqa: PLC0415 - heavy: only when a chart is asked for

    matplotlib.use("Agg")  # no screen
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def check_chart_path(path: Path) -> None:
    if path.suffix.lower() not in FORMATS:
        raise InvalidInput([Problem("--chart", "a chart file ends in .png or .svg")])
    if not path.parent.is_dir():
        raise InvalidInput([Problem("--chart", f"the folder {path.parent} does not exist")])


def funnel_chart(title: str, rows: Sequence[FunnelRow], path: Path) -> None:
    """Horizontal bars per step, in journey order: reached, converted after it, dropped there."""
    check_chart_path(path)
    plt = _pyplot()
    steps = [r.step for r in rows][::-1]
    height = max(3.0, 0.38 * len(steps) + 1.8)
    figure, axes = plt.subplots(figsize=(9, height))
    reached = [r.entered for r in rows][::-1]
    converted = [r.converted for r in rows][::-1]
    dropped = [r.dropped for r in rows][::-1]
    axes.barh(steps, reached, color="#c6dbef", label="reached the step")
    axes.barh(steps, converted, color="#2171b5", label="converted later")
    axes.barh(steps, dropped, left=converted, color="#e6550d", label="dropped off here")
    for y, value in enumerate(reached):
        axes.text(value, y, f" {value}", va="center", fontsize=8)
    axes.set_xlabel("contacts")
    axes.set_title(title)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=8, frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def engagement_chart(title: str, days: Sequence[DayOfEngagement], path: Path) -> None:
    """Messages sent, opened and clicked by people, per day."""
    check_chart_path(path)
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(9, 3.6))
    x = list(range(len(days)))
    for values, label, color in (
        ([d.sent for d in days], "sent", "#9ecae1"),
        ([d.opened for d in days], "opened (people)", "#3182bd"),
        ([d.clicked for d in days], "clicked (people)", "#e6550d"),
    ):
        axes.plot(x, values, label=label, color=color, linewidth=1.6)
    ticks = x[:: max(1, len(x) // 8)]
    axes.set_xticks(ticks, [days[i].day for i in ticks], rotation=30, ha="right", fontsize=8)
    axes.set_ylabel("messages per day")
    axes.set_title(title)
    axes.legend(fontsize=8, frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
