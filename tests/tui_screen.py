"""What an analyst sees: the terminal's screen as text lines (what Pilot's app draws, cell by
cell), to assert that something is *visible* at 80x24, not only present in a widget."""


def screen_lines(app) -> list[str]:
    strips = app.screen._compositor.render_strips()
    return ["".join(seg.text for seg in strip).rstrip() for strip in strips]


def screen_text(app) -> str:
    return "\n".join(screen_lines(app))


def row_of(app, needle: str) -> str:
    """The first line of the screen containing ``needle`` (AssertionError if none)."""
    for line in screen_lines(app):
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} is not on the screen:\n{screen_text(app)}")


def column_of(line: str, text: str) -> int:
    i = line.find(text)
    assert i >= 0, f"{text!r} not in {line!r}"
    return i
