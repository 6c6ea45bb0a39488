"""The terminal's widgets and screens, one per module, each with its own scoped DEFAULT_CSS.

Screens (one per app mode, listed in ``icdsl.tui.screens``): ``workspace_screen`` (file tree,
editor, problems), ``plan_screen`` (the compiled plan), ``explain_screen`` (traffic records and
their rating step by step), ``help_screen`` (modal: every key). Widgets: ``nav_bar``,
``file_tree``, ``rule_editor``, ``problems``, ``plan_view``, ``traffic_table``, ``explanation``;
``commands`` is the command palette's provider.

Widgets never compute: they render the app's state (``icdsl.tui.project.Analysis``) and post
messages (``icdsl.tui.messages.OpenLocation``) that the app handles.
"""
