"""mkdocs hook: the configuration reference is generated from the packaged config, its YAML
comments and the typed schema (``medclf.config_help.key_rows``, the same rows as ``medclf
config show --keys``), so the page cannot drift from the code. A page asks for it with the
marker below."""

from __future__ import annotations

from typing import Any

MARKER = "<!-- medclf:config-keys -->"
# the sections of the packaged config, in the order a user meets them
SECTIONS = ("data", "model", "train", "eval", "export", "serve", "monitor", "mlflow")


def _cell(text: str) -> str:
    """A table cell: no pipes or line breaks, and ``<runs_root>``-style words shown, not taken
    for HTML tags."""
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def _table(rows: list[Any]) -> list[str]:
    lines = ["| key | default | accepts | what it does |", "|---|---|---|---|"]
    for r in rows:
        value = f"`{_cell(r.value)}`" if r.value else ""
        lines.append(f"| `{r.key}` | {value} | {_cell(r.allowed)} | {_cell(r.help)} |")
    return lines


def reference_markdown() -> str:
    from medclf.config import compose
    from medclf.config_help import key_rows

    rows = key_rows(compose([]))
    timm = [r for r in key_rows(compose(["model=resnet18"])) if r.key.startswith("model.")]
    out: list[str] = []
    top = [r for r in rows if "." not in r.key or r.key.split(".")[0] not in SECTIONS]
    out += ["## Top level", "", *_table(top), ""]
    for section in SECTIONS:
        chosen = [r for r in rows if r.key.startswith(section + ".")]
        title = section
        if section == "model":
            chosen, title = timm, "model (a timm architecture, e.g. model=resnet18)"
        if chosen:
            out += [f"## {title}", "", *_table(chosen), ""]
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference_markdown())
