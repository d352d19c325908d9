"""Compose the packaged Hydra config with command-line ``key=value`` overrides.

One config tree (``medclf/conf``) serves every command. Overrides use Hydra's grammar, so
``model=resnet18`` picks a config group option and ``train.lr=1e-3`` sets a value. A model name
that has no packaged file (``model=efficientnet_b3``) is taken as a timm architecture name.
Unknown keys are rejected with the nearest valid key, never silently added.
"""

from __future__ import annotations

import difflib
from importlib import resources

from omegaconf import DictConfig, OmegaConf

from medclf.config_checks import check_values
from medclf.errors import MedclfError

CONF_MODULE = "medclf.conf"


def group_options(group: str) -> list[str]:
    folder = resources.files(CONF_MODULE) / group
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _rewrite_model_override(overrides: list[str]) -> list[str]:
    """``model=NAME`` without a packaged NAME.yaml means "the timm architecture NAME"."""
    options = group_options("model")
    out: list[str] = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.strip() == "model" and value and value not in options:
            out += ["model=timm", f"model.name={value}"]
        else:
            out.append(item)
    return out


def _check_group_choices(overrides: list[str]) -> None:
    """``experiment=NAME`` must name a shipped preset: say which exist, and the nearest."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.strip() == "experiment" and value not in ("null", ""):
            options = group_options("experiment")
            if value not in options:
                near = difflib.get_close_matches(value, options, n=1, cutoff=0.5)
                raise MedclfError(
                    f"experiment={value} is not a shipped preset: expected one of "
                    + ", ".join(options)
                    + (f". Did you mean {near[0]}?" if near else "")
                )


def _quote_unparsable(overrides: list[str]) -> list[str]:
    """Values Hydra's grammar cannot parse (regexes such as ``CONTRAST_(\\d)``, paths with
    parentheses) are taken literally as strings, so users need no shell-in-Hydra quoting."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    out = []
    for item in overrides:
        try:
            parser.parse_override(item)
        except HydraException:
            key, sep, value = item.partition("=")
            if sep and value and not value.startswith(("'", '"')):
                literal = value.replace("'", "\\'")
                literal += "\\" if literal.endswith("\\") else ""
                item = f"{key}='{literal}'"
        out.append(item)
    return out


def _all_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for k, v in cfg.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, DictConfig):
            keys += _all_keys(v, f"{full}.")
    return keys


def compose(overrides: list[str] | None = None) -> DictConfig:
    """The resolved packaged config with ``overrides`` applied; raises MedclfError on bad keys."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = _rewrite_model_override(list(overrides or []))
    for item in overrides:
        if "=" not in item:
            raise MedclfError(
                f"'{item}' is not a key=value override (for example: data.path=PATH model=resnet18)"
            )
    _check_group_choices(overrides)
    overrides = _quote_unparsable(overrides)
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
    check_values(cfg)
    return cfg


# The architecture recipe=auto trains when the command line names none (medclf.training.recipe).
RECIPE_MODEL = "resnet18"


def override_keys(overrides: list[str]) -> tuple[str, ...]:
    """The config keys (or groups) the command line sets: the recipe leaves them alone."""
    keys = []
    for item in overrides:
        key, sep, _ = item.partition("=")
        if sep:
            keys.append(key.strip().lstrip("+~"))
    return tuple(keys)


def compose_for_training(overrides: list[str] | None = None) -> DictConfig:
    """``compose`` for ``medclf train``: recipe=auto unless the command line says otherwise
    or names an experiment preset (a preset is a complete recipe), and then, with no model
    named, the recipe's architecture replaces the packaged custom_cnn (a config group is
    chosen at compose time, before the data is read)."""
    overrides = list(overrides or [])
    keys = override_keys(overrides)
    recipe = next((i.partition("=")[2] for i in overrides if i.startswith("recipe=")), None)
    if recipe is None and "experiment" in keys:
        return compose(overrides)
    if recipe is None:
        recipe, overrides = "auto", ["recipe=auto", *overrides]
    if recipe == "auto" and not any(k == "model" or k.startswith("model.") for k in keys):
        overrides = [f"model={RECIPE_MODEL}", *overrides]
    return compose(overrides)


def _explain_override_error(exc: Exception, overrides: list[str], base: DictConfig) -> str:
    known = _all_keys(base)
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if key in known or key in ("data", "model", "train", "eval", "experiment"):
            continue
        hint = difflib.get_close_matches(key, known, n=1)
        suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
        return (
            f"unknown config key '{key}'.{suggestion} Run 'medclf config show' to list every key."
        )
    first_line = str(exc).strip().splitlines()[0]
    return f"invalid override: {first_line}. Run 'medclf config show' to list every key."
