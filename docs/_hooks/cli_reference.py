"""mkdocs hook: the command-line reference, generated from the click commands.

`docs/cli.md` holds the prose; the marker `<!-- dmftjax-cli-reference -->` is replaced at
build time by one section per subcommand with its `--help` text, so the page always lists
every subcommand and every option of the installed `dmftjax` (no plugin needed)."""

from __future__ import annotations

import click

MARKER = "<!-- dmftjax-cli-reference -->"
# the order of the sections; subcommands not named here follow in alphabetical order
ORDER = ("demo", "predict", "simulate", "fixed-point", "spectral", "sweep", "tune")
WIDTH = 88


def _help(command: click.Command, name: str, parent: click.Context | None) -> str:
    settings = dict(command.context_settings or {}, terminal_width=WIDTH,
                    max_content_width=WIDTH)
    return command.get_help(click.Context(command, info_name=name, parent=parent, **settings))


def cli_reference() -> str:
    from dmftjax.cli import main

    root = click.Context(main, info_name="dmftjax", terminal_width=WIDTH,
                         max_content_width=WIDTH, **(main.context_settings or {}))
    names = [n for n in ORDER if n in main.commands]
    names += sorted(n for n in main.commands if n not in names)
    out = ["## `dmftjax`", "", "```text", _help(main, "dmftjax", None), "```", ""]
    for name in names:
        out += [f"## `dmftjax {name}` {{ #{name} }}", "",
                "```text", _help(main.commands[name], name, root), "```", ""]
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_reference())
