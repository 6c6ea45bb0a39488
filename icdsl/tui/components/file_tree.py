"""The project's files, grouped: rule files, decks, traffic."""

from __future__ import annotations

from pathlib import Path

from textual.message import Message
from textual.widgets import Tree

from icdsl.tui.project import Project, ProjectFiles

GROUPS = (("rules", "Rules"), ("decks", "Decks"), ("traffic", "Traffic"), ("inventory", "Inventory"))


class FileTree(Tree[Path]):
    """Rule files (``*.icd``), decks (CSV files under ``decks/``) and traffic files."""

    DEFAULT_CSS = """
    FileTree {
        width: 100%;
        height: 1fr;
        padding: 0;
        background: $surface;
        &:focus { background-tint: $foreground 3%; }
    }
    """

    class FileSelected(Message):
        def __init__(self, path: Path, group: str) -> None:
            super().__init__()
            self.path = path
            self.group = group

    def __init__(self, project: Project, *, id: str | None = None):
        super().__init__(project.name, id=id)
        self.project = project
        self.show_root = False
        self.guide_depth = 2
        self.groups: dict[Path, str] = {}

    def on_mount(self) -> None:
        self.reload()

    def reload(self, files: ProjectFiles | None = None) -> None:
        files = files or self.project.files()
        self.clear()
        self.groups = {}
        for group, title in GROUPS:
            paths: list[Path] = getattr(files, group)
            node = self.root.add(f"{title} ({len(paths)})", expand=True, allow_expand=bool(paths))
            node.data = None
            for p in paths:
                node.add_leaf(self.project.shown(p), data=p)
                self.groups[p] = group
        self.root.expand()

    def on_tree_node_selected(self, event: Tree.NodeSelected[Path]) -> None:
        event.stop()
        node = event.node
        if node.data is None or node.parent is None:
            return
        self.post_message(self.FileSelected(node.data, self.groups.get(node.data, "rules")))
