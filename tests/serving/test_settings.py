"""ServeSettings: from the composed config, the API key also from the environment."""

from __future__ import annotations

from medclf.config import compose
from medclf.serving.settings import API_KEY_ENV, ServeSettings


def test_key_from_environment_never_printed(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "from-env-123")
    settings = ServeSettings.from_cfg(compose(["serve.max_files=5"]))
    assert settings.api_key == "from-env-123" and settings.max_files == 5
    assert "from-env-123" not in repr(settings)
    given = ServeSettings.from_cfg(compose(["serve.api_key=on-command"]))
    assert given.api_key == "on-command"  # the config's key wins over the environment


def test_no_key_by_default_and_limits_in_bytes(monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    settings = ServeSettings.from_cfg(compose([]))
    assert settings.api_key is None and settings.max_upload_bytes == 64 * 2**20
    assert settings.cors_origins == () and settings.docs is True
