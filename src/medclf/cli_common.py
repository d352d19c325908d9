"""What every medclf command shares: one error line and exit 2 for bad input (a traceback
only with --debug), the help texts, and the checks of a command's own keys."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from medclf.errors import MedclfError

state = {"debug": False}
F = TypeVar("F", bound=Callable[..., Any])
DATA_PATH_HELP = "Dataset folder, manifest CSV, .npz file or kaggle:OWNER/DATASET"
OVERRIDES_HELP = "key=value overrides of the packaged config, e.g. data.path=DIR model=resnet18"
log = logging.getLogger("medclf")


def _setup_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


# import names of packages the full install has and the slim serving install leaves out
FULL_INSTALL = frozenset(
    {"torch", "torchvision", "timm", "lightning", "torchmetrics", "sklearn", "matplotlib",
     "kornia", "imagehash", "kagglehub", "pytorch_grad_cam", "cv2", "tensorboard",
     "onnxscript", "psutil", "jinja2", "pandas", "pyarrow"}
)  # fmt: skip


def missing_package(name: str) -> str:
    top = name.split(".")[0]
    return (
        f"this needs '{top}', which this installation lacks (a serving-only install serves "
        "exported ONNX files and registered versions); install the full medclf for training, "
        "evaluation and PyTorch runs: pip install medclf"
    )


def handles_errors(fn: F) -> F:
    """MedclfError -> one line on stderr and exit code 2 (traceback only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _setup_logging()
        try:
            return fn(*args, **kwargs)
        except MedclfError as exc:
            if state["debug"]:
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except ModuleNotFoundError as exc:
            # the slim serving install (requirements/serve.txt) has no training stack: a
            # command or model that needs it says which package and what to install
            if state["debug"] or not exc.name or exc.name.split(".")[0] not in FULL_INSTALL:
                raise
            typer.echo(f"error: {missing_package(exc.name)}", err=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            # a path the user gave that cannot be read or written (data.path=/proc,
            # runs_root=/proc/x, a storage file in a missing folder): name it, no traceback
            if state["debug"] or not exc.filename:
                raise
            reason = exc.strerror or type(exc).__name__
            typer.echo(
                f"error: {exc.filename}: {reason}; check the path and its permissions", err=True
            )
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def require(found: dict[str, str], key: str, usage: str) -> str:
    if not found.get(key):
        raise MedclfError(f"missing {key}=...; usage: {usage}")
    return found[key]


def reject_extra(rest: list[str], command: str) -> None:
    if rest:
        raise MedclfError(f"unknown argument '{rest[0]}' for 'medclf {command}' (see --help)")


def only_section(rest: list[str], section: str, command: str) -> None:
    """The words left after a command's own must be ``SECTION.key=value`` settings."""
    from medclf.words import keys

    for item, key in zip(rest, keys(rest), strict=True):
        if not key.startswith(f"{section}."):
            raise MedclfError(
                f"unknown argument '{item}' for 'medclf {command}': it takes its own words and "
                f"{section}.* settings (see --help)"
            )


def artifact(found: dict[str, str], usage: str) -> str:
    """``model=`` names the artifact for evaluate, export, predict and serve (a run folder or
    an ONNX file); ``run=``, its older spelling, is still read."""
    model, run = found.get("model", ""), found.get("run", "")
    if model in ("onnx", "checkpoint") and run:
        backend = "onnx" if model == "onnx" else "torch"
        raise MedclfError(f"model={model} is now backend={backend}; model= names the run")
    if model and run and model != run:
        raise MedclfError("give the model once: model=RUN (run= is its older spelling)")
    return require({"model": model or run}, "model", usage)
