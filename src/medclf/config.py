"""Compose the packaged Hydra config with command-line ``key=value`` overrides.

One config tree (``medclf/conf``) serves every command. Overrides use Hydra's grammar, so
``model=resnet18`` picks a config group option and ``train.lr=1e-3`` sets a value. A model name
that has no packaged file (``model=efficientnet_b3``) is taken as a timm architecture name.
Unknown keys are rejected with the nearest valid key, never silently added.
"""

from __future__ import annotations

import difflib
from importlib import resources
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medclf.config_checks import check_values
from medclf.errors import MedclfError
from medclf.words import Word, keys, read_all

CONF_MODULE = "medclf.conf"


def group_options(group: str) -> list[str]:
    folder = resources.files(CONF_MODULE) / group
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _rewrite_model_override(words: list[Word]) -> list[str]:
    """``model=NAME`` without a packaged NAME.yaml means "the timm architecture NAME"."""
    options = group_options("model")
    out: list[str] = []
    for word in words:
        if word.key == "model" and not word.delete and word.text and word.text not in options:
            out += ["model=timm", f"model.name={word.text}"]
        else:
            out.append(word.item)
    return out


def _check_group_choices(words: list[Word]) -> None:
    """``experiment=NAME`` must name a shipped preset: say which exist, and the nearest."""
    for word in words:
        if word.key == "experiment" and word.value is not None:
            options = group_options("experiment")
            if word.text not in options:
                near = difflib.get_close_matches(word.text, options, n=1, cutoff=0.5)
                raise MedclfError(
                    f"experiment={word.text} is not a shipped preset: expected one of "
                    + ", ".join(options)
                    + (f". Did you mean {near[0]}?" if near else "")
                )


def _all_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for k, v in cfg.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, DictConfig):
            keys += _all_keys(v, f"{full}.")
    return keys


def compose(overrides: list[str] | None = None, validate: bool = True) -> DictConfig:
    """The resolved packaged config with ``overrides`` applied; raises MedclfError on bad keys
    and (``validate``) on values the schema refuses."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    words = read_all(list(overrides or []))
    _check_group_choices(words)
    overrides = _rewrite_model_override(words)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONF_MODULE, version_base="1.3"):
            try:
                cfg = hydra_compose(config_name="config", overrides=overrides)
            except (HydraException, OmegaConfBaseException) as exc:
                # the plain config, composed only to name the nearest valid key
                base = hydra_compose(config_name="config")
                raise MedclfError(_explain_override_error(exc, overrides, base)) from exc
    finally:
        GlobalHydra.instance().clear()
    OmegaConf.set_struct(cfg, True)
    if validate:
        check_values(cfg)
    return cfg


def upgraded(saved: Any) -> DictConfig:
    """A config an earlier medclf wrote (a run's config.yaml, a checkpoint's model settings),
    with every key added since at its packaged default: the code reads keys without fallbacks
    of its own, so an older run still resumes, evaluates and serves. The saved values win;
    keys retired since are kept and unused."""
    name = OmegaConf.select(OmegaConf.create(saved), "model.name") or "custom_cnn"
    base = compose([f"model={name}"], validate=False)  # defaults only: nothing to check
    OmegaConf.set_struct(base, False)
    return OmegaConf.merge(base, saved)


# The architecture recipe=auto trains when the command line names none (medclf.training.recipe).
RECIPE_MODEL = "resnet18"


def compose_for_training(overrides: list[str] | None = None) -> DictConfig:
    """``compose`` for ``medclf train``: recipe=auto unless the command line says otherwise
    or names an experiment preset (a preset is a complete recipe), and then, with no model
    or preset named, the recipe's architecture replaces the packaged custom_cnn (a config group is
    chosen at compose time, before the data is read)."""
    overrides = list(overrides or [])
    words = read_all(overrides)
    named = [w.key for w in words]
    recipe = next((w.text for w in words if w.key == "recipe"), None)
    if recipe is None and "experiment" in named:
        return compose(overrides)
    if recipe is None:
        recipe, overrides = "auto", ["recipe=auto", *overrides]
    chooses_model = any(k in ("model", "experiment") or k.startswith("model.") for k in named)
    if recipe == "auto" and not chooses_model:
        overrides = [f"model={RECIPE_MODEL}", *overrides]
    return compose(overrides)


def _explain_override_error(exc: Exception, overrides: list[str], base: DictConfig) -> str:
    known = _all_keys(base)
    for key in keys(overrides):
        if key in known or key in ("data", "model", "train", "eval", "export", "experiment"):
            continue
        hint = difflib.get_close_matches(key, known, n=1)
        suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
        return (
            f"unknown config key '{key}'.{suggestion} Run 'medclf config show' to list every key."
        )
    first_line = str(exc).strip().splitlines()[0]
    return f"invalid override: {first_line}. Run 'medclf config show' to list every key."
