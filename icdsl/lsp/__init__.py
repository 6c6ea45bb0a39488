"""The language server: ``icdsl lsp`` for editors (VS Code, Neovim, Emacs, ...; docs/editors.md).

A face, like the command line and the terminal: ``analysis`` loads, checks and compiles the
project with the editor's unsaved texts through the same functions as ``icdsl check``, and
indexes the names declared and used; ``features`` answers hover, definitions, references,
completion, symbols and "did you mean" fixes as plain data; ``server`` speaks the protocol
(pygls) over stdio. Nothing here decides what a rule means.
"""
