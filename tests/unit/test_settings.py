"""Settings: every key checked with a hint, the environment over the file, secrets by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from digital_finance.config import SETTINGS_SECTIONS, ConfigError, RunConfig, load_config
from digital_finance.lakehouse.storage import location


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[expectations]]\nname = "n"\ndataset = "stocks"\ncondition = "price > 0"\nacton = "fail"\n',
         "unknown key `acton` in [[expectations]] #1; did you mean `action`?"),
        ('[[expectaions]]\nname = "n"\n', "unknown key `expectaions` in the top level; did you mean `expectations`?"),
        ('[engine]\nmemory_limt = "2GB"\n', "unknown key `memory_limt` in [engine]; did you mean `memory_limit`?"),
        ('source_timezone = "UTC"\n', "unknown key `source_timezone` in the top level; did you mean `source_tz`?"),
        ('[engine]\nsilver_write = "fast"\n', "[engine] `silver_write`: Input should be 'auto', 'mark', 'rewrite', 'merge' or 'rebuild'"),
        ('[storage.options]\naccount_key = { secert = "k" }\n', "unknown key `secert`"),
    ],
)  # fmt: skip
def test_a_misspelled_or_wrong_key_is_an_error_that_names_the_fix(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, text))
    assert message in str(info.value)


def test_the_environment_wins_over_the_file_and_the_flag_over_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _config(tmp_path, 'source_tz = "Europe/Paris"\n[engine]\nmemory_limit = "1GB"\n')
    monkeypatch.setenv("DIGITAL_FINANCE_ENGINE__MEMORY_LIMIT", "3GB")
    monkeypatch.setenv("DIGITAL_FINANCE_SOURCE_TZ", "Asia/Tokyo")
    config = load_config(path)
    assert config.memory_limit == "3GB" and config.source_tz == "Asia/Tokyo"
    assert load_config(path, "America/New_York").source_tz == "America/New_York"


def test_without_settings_the_defaults_are_those_of_the_settings_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast = load_config(None)  # no file, no settings in the environment: pydantic not imported
    monkeypatch.setenv("DIGITAL_FINANCE_SOURCE_TZ", "UTC")
    assert load_config(None) == fast == RunConfig()


def test_the_sections_the_fast_path_looks_for_are_the_models_fields() -> None:
    from digital_finance.settings import Settings

    assert set(SETTINGS_SECTIONS) == set(Settings.model_fields)


CANARY = "canary-5ecret-value-0123456789"


def test_a_secret_is_found_by_name_in_the_environment_then_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "lake-key").write_text(CANARY + "\n")
    text = f'[secrets]\nfolder = "{folder}"\n[storage.options]\naccount_name = "acct"\naccount_key = {{ secret = "lake-key" }}\n'
    config = load_config(_config(tmp_path, text))
    assert config.plain_storage_options() == {"account_name": "acct", "account_key": CANARY}
    monkeypatch.setenv("DIGITAL_FINANCE_SECRET_LAKE_KEY", "from-env")
    assert load_config(_config(tmp_path, text)).plain_storage_options()["account_key"] == "from-env"
    # nothing that is printed or logged shows the value
    assert CANARY not in repr(config) and CANARY not in str(config)
    where = location("az://c/lake", config.plain_storage_options())
    assert CANARY not in repr(where) and CANARY not in str(where)


def test_a_missing_secret_says_where_it_was_looked_for(tmp_path: Path) -> None:
    text = f'[secrets]\nfolder = "{tmp_path}"\n[storage.options]\naccount_key = {{ secret = "nope" }}\n'
    with pytest.raises(
        ConfigError,
        match=r"secret 'nope' was not found \(looked in \$DIGITAL_FINANCE_SECRET_NOPE, .*nope\)",
    ):
        load_config(_config(tmp_path, text))
