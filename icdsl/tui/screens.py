"""The screens of the terminal, in navigation order.

Each screen is an app mode (``App.add_mode``) with its own stack, installed once, so that the
editor's buffers and a screen's selection survive switching. The navigation bar, the keys
(``icdsl.tui.bindings``, ``screen.<id>``) and the command palette are built from this list:
a new screen (billing-cycle simulation, what-if, drill-down, dashboard) is one module under
``components/``, one row here and one row in ``bindings.ACTIONS``.

Factories are named as ``module:Class`` strings so that this list imports no widget.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from textual.screen import Screen


@dataclass(frozen=True, slots=True)
class ScreenSpec:
    id: str  # the mode name; the key's action is app.show_screen('<id>')
    title: str  # shown in the navigation bar
    factory: str  # "module:Class", a Screen subclass taking no arguments
    short: str = ""  # the title in a narrow navigation bar (default: the title)

    @property
    def short_title(self) -> str:
        return self.short or self.title

    def create(self) -> Screen:
        module, _, name = self.factory.partition(":")
        return getattr(importlib.import_module(module), name)()


SCREENS: tuple[ScreenSpec, ...] = (
    ScreenSpec("workspace", "Rules", "icdsl.tui.components.workspace_screen:WorkspaceScreen"),
    ScreenSpec("plan", "Plan", "icdsl.tui.components.plan_screen:PlanScreen"),
    ScreenSpec("explain", "Explain", "icdsl.tui.components.explain_screen:ExplainScreen", "Expl"),
    ScreenSpec("simulate", "Simulate", "icdsl.tui.components.simulate_screen:SimulateScreen", "Sim"),
    ScreenSpec("whatif", "What-if", "icdsl.tui.components.whatif_screen:WhatIfScreen", "What"),
    ScreenSpec("drill", "Drill", "icdsl.tui.components.drill_screen:DrillScreen"),
    ScreenSpec("dashboard", "Dashboard", "icdsl.tui.components.dashboard_screen:DashboardScreen", "Dash"),
    ScreenSpec("recon", "Reconcile", "icdsl.tui.components.recon_screen:ReconScreen", "Rec"),
    ScreenSpec("routing", "Routing", "icdsl.tui.components.routing_screen:RoutingScreen", "Route"),
)


def spec(screen_id: str) -> ScreenSpec:
    for s in SCREENS:
        if s.id == screen_id:
            return s
    raise KeyError(screen_id)
