"""medclf config show --keys: every key with its value, allowed values and one line of help."""

from __future__ import annotations

from medclf.config import compose
from medclf.config_checks import allowed_values
from medclf.config_help import describe
from tests.conftest import enumerated_keys, medclf


def _entries(lines: list[str]) -> dict[str, tuple[str, str]]:
    """key -> (its 'key = value [allowed]' line, its help line or '')."""
    out: dict[str, tuple[str, str]] = {}
    for i, line in enumerate(lines):
        if not line.startswith(" "):
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            out[line.split(" = ", 1)[0]] = (line, nxt.strip() if nxt.startswith(" ") else "")
    return out


def test_every_checked_key_shows_its_allowed_values_and_every_enumeration_has_help():
    entries = _entries(describe(compose(["model=resnet18"])))
    shown = 0
    for key, (line, _) in entries.items():
        accepts = allowed_values(key, "resnet18")
        if accepts:
            assert line.endswith(f"  [{accepts}]"), key
            shown += 1
    assert shown >= 60  # ranges, choices and custom checks alike
    enumerations = enumerated_keys("resnet18")
    assert len(enumerations) >= 20
    for key in enumerations:
        assert entries[key][1], f"{key} has no help line"
    line, help_line = entries["data.patient_pattern"]
    assert line.startswith("data.patient_pattern = auto  [one of auto, none, or a regex")
    assert help_line.startswith("Patients from file names")
    assert all(len(h) <= 114 for _, h in entries.values())  # one terminal line each


def test_the_help_follows_the_chosen_architecture_and_preset():
    timm = _entries(describe(compose(["experiment=lung_xray"])))
    custom = _entries(describe(compose([])))
    assert timm["model.name"][0] == "model.name = convnextv2_tiny"
    assert timm["model.name"][1].startswith("Any timm architecture by name")
    assert custom["model.name"][1].startswith("A small CNN")
    assert "model.hidden_dims" in custom and "model.hidden_dims" not in timm


def test_the_cli_prints_the_keys():
    out = medclf("config", "show", "--keys", "eval.tta=flip", check=True).stdout
    assert "eval.tta = flip  [one of none, flip, flip+rot]" in out
