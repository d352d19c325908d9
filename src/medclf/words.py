"""The one reader of command-line words: ``key=value`` in Hydra's override grammar.

Every command takes the same kinds of words, and every one of them is read here:

- config overrides (``data.path=DIR``, ``eval.tta=flip``, ``+eval.gates.macro_auc.min=0.9``,
  ``~eval.gates.latency``), composed by ``medclf.config.compose`` or, for a run that already
  has its config (``resume``, ``evaluate``), applied to it by ``apply_overrides``;
- the command's own keys: ``model=`` the artifact (a run folder or an ONNX file) for evaluate,
  export, predict and serve, ``backend=``, ``split=``, ``format=``, ``host=``, ``port=``,
  ``resume=``;
- plain words (predict's image paths).

Values are typed as Hydra types them (``logger=[csv]`` a list, ``progress_bar=false`` a
bool, ``null`` None), so a key means the same on every command. A value the grammar cannot
parse (a regex such as ``CONTRAST_(\\d)``, a path with parentheses) is taken literally as a
string, so users need no quoting inside their shell's quoting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from medclf.errors import MedclfError


@dataclass(frozen=True)
class Word:
    """One ``key=value`` word, read with Hydra's grammar."""

    key: str  # without the + (add) or ~ (delete) prefix
    text: str  # the value as typed, outer quotes removed
    value: Any  # the typed value (None for null and for a deletion)
    item: str  # the word as compose takes it (a literal that needed quoting is quoted)
    delete: bool = False
    sweep: bool = False


def _parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def read(item: str, parser: Any | None = None) -> Word:
    """One word; raises MedclfError when it is not ``key=value`` (or ``~key``)."""
    from hydra.errors import HydraException

    parser = parser or _parser()
    key, _, text = item.partition("=")
    try:
        override = parser.parse_override(item)
    except HydraException:
        if "=" not in item or not key or text.startswith(("'", '"')):
            raise MedclfError(
                f"'{item}' is not a key=value setting (for example: data.path=PATH model=resnet18)"
            ) from None
        literal = text.replace("'", "\\'")
        literal += "\\" if literal.endswith("\\") else ""
        item = f"{key}='{literal}'"
        override = parser.parse_override(item)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    sweep = override.is_sweep_override()
    return Word(
        key=override.key_or_group,
        text=text,
        value=None if override.is_delete() or sweep else override.value(),
        item=item,
        delete=override.is_delete(),
        sweep=sweep,
    )


def read_all(items: list[str]) -> list[Word]:
    parser = _parser()
    return [read(item, parser) for item in items]


def keys(items: list[str]) -> tuple[str, ...]:
    """The config keys (or groups) that ``items`` set."""
    return tuple(w.key for w in read_all(items))


def _is_path_word(item: str) -> bool:
    """A plain word (predict's image paths), also one that happens to contain ``=``
    (``scans/a=b.png``); ``~key`` is a setting (a deletion) though it has no ``=``."""
    if item.startswith("~"):
        return False
    return "=" not in item or "/" in item.partition("=")[0] or Path(item).exists()


def split_words(
    args: list[str] | None, own: set[str], plain: bool = False
) -> tuple[dict[str, str], list[str], list[str]]:
    """``args`` -> (the command's own keys as typed, config overrides, plain words).
    ``plain=False`` refuses plain words here, naming the first."""
    parser = _parser()
    found: dict[str, str] = {}
    overrides: list[str] = []
    words: list[str] = []
    for item in args or []:
        if _is_path_word(item):
            words.append(item)
            continue
        word = read(item, parser)
        if word.key in own and not item.startswith(("+", "~")):
            found[word.key] = word.text
        else:
            overrides.append(word.item)
    if words and not plain:
        raise MedclfError(f"'{words[0]}' is not a key=value setting (see --help)")
    return found, overrides, words


def apply_overrides(cfg: DictConfig, items: list[str]) -> None:
    """Apply config overrides to an already composed config (a run's own ``config.yaml``),
    typed exactly as compose would type them."""
    with open_dict(cfg):
        for word in read_all(items):
            if word.sweep:
                raise MedclfError(f"'{word.item}': a sweep (a,b) is not a single setting")
            if word.delete:
                parent, _, leaf = word.key.rpartition(".")
                node = OmegaConf.select(cfg, parent) if parent else cfg
                if isinstance(node, DictConfig) and leaf in node:
                    del node[leaf]
                continue
            OmegaConf.update(cfg, word.key, word.value, merge=True, force_add=True)
