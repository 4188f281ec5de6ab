import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults():
    settings = Settings.from_env({})
    assert settings.port == 8080
    assert settings.embedded_database
    assert settings.data_dir == Path("./var")
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.app_env == "production" and not settings.development  # never inferred
    assert settings.wechat_configured  # so no development conveniences
    assert not Settings.from_env({"APP_ENV": "development"}).wechat_configured


def test_values_are_parsed():
    settings = Settings.from_env(
        {"PORT": "9000", "MONGODB_URI": "mongodb://db:27017", "LOG_LEVEL": "debug", "DATA_DIR": "/srv/x",
         "WECHAT_API_BASE": "http://127.0.0.1:9/", "WECHAT_APP_ID": "wx1"}
    )
    assert settings.port == 9000
    assert not settings.embedded_database
    assert settings.log_level == "DEBUG"
    assert settings.data_dir == Path("/srv/x")
    assert settings.wechat_api_base == "http://127.0.0.1:9"
    assert settings.wechat_configured


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PORT", "abc"), ("PORT", "70000"), ("MONGODB_URI", "postgres://x"), ("LOG_LEVEL", "LOUD"),
     ("MONGODB_DB", "a.b"), ("WECHAT_ENCODING_AES_KEY", "short"), ("WECHAT_API_BASE", "ftp://x"),
     ("MAX_BODY_BYTES", "-1"), ("APP_ENV", "dev"), ("BODY_READ_TIMEOUT_SECONDS", "0")],
)
def test_invalid_value_names_the_variable(variable, value):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    assert caught.value.variable == variable
    message = str(caught.value)
    assert variable in message and "配置错误" in message and "invalid" in message
    assert "\n" not in message


def test_cli_exits_2_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bot", "serve"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PORT": "not-a-port", "DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "PORT" in lines[0]


PRODUCTION = {"WECHAT_APP_ID": "wx1", "WECHAT_APP_SECRET": "s", "WECHAT_TOKEN": "t",
              "IDENTITY_HASH_KEY": "k" * 32, "SETTLEMENT_WEBHOOK_SECRET": "w"}


def test_production_names_every_missing_secret():
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"WECHAT_APP_ID": "wx1"}).check_startable()
    message = str(caught.value)
    for variable in ("WECHAT_APP_SECRET", "WECHAT_TOKEN", "IDENTITY_HASH_KEY", "SETTLEMENT_WEBHOOK_SECRET"):
        assert variable in message
    assert "WECHAT_APP_ID," not in message and "\n" not in message
    Settings.from_env(PRODUCTION).check_startable()  # complete: starts
    with pytest.raises(SettingsError, match="IDENTITY_HASH_KEY"):
        Settings.from_env({**PRODUCTION, "IDENTITY_HASH_KEY": "short"}).check_startable()


def test_development_listens_on_loopback_unless_told_otherwise():
    Settings.from_env({"APP_ENV": "development"}).check_startable()
    with pytest.raises(SettingsError, match="DEVELOPMENT_ALLOW_REMOTE") as caught:
        Settings.from_env({"APP_ENV": "development", "HOST": "0.0.0.0"}).check_startable()
    assert caught.value.variable == "HOST"
    Settings.from_env({"APP_ENV": "development", "HOST": "0.0.0.0",
                       "DEVELOPMENT_ALLOW_REMOTE": "true"}).check_startable()
    Settings.from_env({**PRODUCTION, "HOST": "0.0.0.0"}).check_startable()


@pytest.mark.parametrize(("env", "expected"), [
    ({}, ["WECHAT_APP_ID", "WECHAT_APP_SECRET", "WECHAT_TOKEN", "IDENTITY_HASH_KEY", "SETTLEMENT_WEBHOOK_SECRET"]),
    ({"APP_ENV": "development", "HOST": "0.0.0.0"}, ["HOST", "DEVELOPMENT_ALLOW_REMOTE"]),
])
def test_serve_refuses_an_unsafe_configuration(tmp_path, env, expected):
    """What the container did without .env: no AppID used to mean development on 0.0.0.0."""
    result = subprocess.run(
        [sys.executable, "-m", "bot", "serve"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path), **env},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert all(variable in lines[0] for variable in expected)
