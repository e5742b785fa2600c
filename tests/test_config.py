"""Tests of fewrec.config.Settings (precedence, TOML, errors) and the `fewrec datasets` command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from fewrec.cli import app, main
from fewrec.config import RetrievalSettings, Settings, SettingsError, default_data_dir
from fewrec.data import DatasetError, FewrecError

TOML = """
seed = 3
dataset = "from-toml"

[chat]
port = 9000

[retrieval]
candidates = 30

[retrieval.sources.ease]
lambda = 100.0

[split]
min_count = 10
"""


@pytest.fixture
def toml_file(clean_env) -> Path:
    path = clean_env / "custom.toml"
    path.write_text(TOML)
    return path


def test_defaults(clean_env):
    settings = Settings.load()
    assert settings.seed == 0
    assert settings.dataset is None
    assert settings.dataset_format == "auto"
    assert settings.retrieval == RetrievalSettings()
    assert settings.split.min_count == 5
    assert settings.data_dir == default_data_dir()
    assert settings.cache_dir == settings.data_dir / "cache"


def test_toml_overrides_defaults(toml_file):
    settings = Settings.load(toml_file)
    assert (settings.seed, settings.dataset, settings.chat.port) == (3, "from-toml", 9000)
    assert settings.retrieval.source("ease").lambda_ == 100.0
    assert settings.retrieval.source("ease").weight == 0.75  # the other fields keep their defaults
    assert settings.retrieval.active == RetrievalSettings().active  # and so do the other sources
    assert settings.retrieval.candidates == 30
    assert settings.retrieval.rrf_k == RetrievalSettings().rrf_k  # untouched nested default
    assert settings.split.min_count == 10


def test_env_overrides_toml_and_merges_nested(toml_file, monkeypatch):
    monkeypatch.setenv("FEWREC_SEED", "5")
    monkeypatch.setenv("FEWREC_RETRIEVAL__SOURCES__EASE__LAMBDA", "300")
    monkeypatch.setenv("FEWREC_RETRIEVAL__SOURCES__ALS__WEIGHT", "0.3")
    settings = Settings.load(str(toml_file))
    assert settings.seed == 5
    assert settings.retrieval.source("ease").lambda_ == 300.0
    assert settings.retrieval.weights["als"] == 0.3
    assert settings.retrieval.candidates == 30  # from TOML: the nested tables are merged
    assert settings.dataset == "from-toml"


def test_keyword_arguments_override_env_and_toml(toml_file, monkeypatch):
    monkeypatch.setenv("FEWREC_SEED", "5")
    monkeypatch.setenv("FEWREC_DATASET", "from-env")
    monkeypatch.setenv("FEWREC_RETRIEVAL__SOURCES__EASE__LAMBDA", "300")
    settings = Settings.load(toml_file, seed=7, retrieval={"sources": {"ease": {"lambda": 42.0}}})
    assert settings.seed == 7
    assert settings.retrieval.source("ease").lambda_ == 42.0
    assert settings.dataset == "from-env"
    assert settings.chat.port == 9000


def test_env_without_toml(clean_env, monkeypatch):
    monkeypatch.setenv("FEWREC_DATA_DIR", str(clean_env / "data"))
    monkeypatch.setenv("FEWREC_RETRIEVAL__SOURCES__EASE__LAMBDA", "250.5")
    settings = Settings.load()
    assert settings.data_dir == clean_env / "data"
    assert settings.cache_dir == clean_env / "data" / "cache"
    assert settings.retrieval.source("ease").lambda_ == 250.5


def test_fewrec_toml_in_working_folder_is_read_by_default(clean_env):
    (clean_env / "fewrec.toml").write_text("seed = 11\n")
    assert Settings.load().seed == 11
    assert Settings().seed == 11
    other = clean_env / "other.toml"
    other.write_text("[chat]\nport = 1234\n")
    explicit = Settings.load(other)
    assert (explicit.seed, explicit.chat.port) == (0, 1234)  # only the given file is read


def test_load_does_not_leak_the_toml_path(toml_file):
    assert Settings.load(toml_file).seed == 3
    assert Settings.load().seed == 0
    assert Settings.toml_path is None


def test_missing_config_file(clean_env):
    with pytest.raises(FewrecError, match=r"config file not found: missing\.toml"):
        Settings.load("missing.toml")
    with pytest.raises(FewrecError, match="not found"):
        Settings.load(clean_env)  # a folder is not a config file


def test_unknown_toml_key_is_rejected(clean_env):
    path = clean_env / "bad.toml"
    path.write_text("seed = 1\nease_lamda = 3\n")
    with pytest.raises(SettingsError, match=r"unknown key ease_lamda; the keys there: data_dir, .*seed$"):
        Settings.load(path)


def test_an_old_flat_key_at_the_top_level_names_its_new_key(clean_env):
    path = clean_env / "old.toml"
    path.write_text("ease_lambda = 300\n")
    with pytest.raises(
        SettingsError, match=r"unknown key ease_lambda: it is now retrieval\.sources\.ease\.lambda"
    ):
        Settings.load(path)
    path.write_text("[retrieval]\nease_lambda = 300\n")  # where it was written before: it loads
    assert Settings.load(path).retrieval.source("ease").lambda_ == 300


def test_a_file_that_is_not_toml_is_one_line(clean_env):
    path = clean_env / "broken.toml"
    path.write_text("[retrieval\nseed = 1\n")
    with pytest.raises(SettingsError, match=r"config file .*broken\.toml is not valid TOML: Expected '\]'"):
        Settings.load(path)


def test_an_unknown_top_level_variable_is_named_and_ignored(clean_env, monkeypatch, caplog):
    monkeypatch.setenv("FEWREC_DATASETT", "elsewhere.csv")
    with caplog.at_level("WARNING", logger="fewrec.config"):
        settings = Settings.load()
    assert settings.dataset is None
    assert "FEWREC_DATASETT names no setting: ignored (did you mean FEWREC_DATASET?)" in caplog.text


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[retrieval]\nease_lamda = 3.0\n", "unknown key retrieval.ease_lamda"),
        # Named where it was written, with the nearest key the source takes.
        (
            "[retrieval.sources.ease]\nlamda = 3.0\n",
            "unknown key retrieval.sources.ease.lamda; did you mean lambda?",
        ),
        (
            '[retrieval.sources.ease]\nweight = "high"\n',
            "retrieval.sources.ease.weight: Input should be a valid number",
        ),
        ("[retrieval.sources.nope]\nweight = 3.0\n", "retrieval: unknown candidate source 'nope'"),
        ("[split]\nmin_cont = 2\n", "unknown key split.min_cont; did you mean min_count?"),
        ('[embedding]\nbackendd = "openai"\n', "unknown key embedding.backendd; did you mean backend?"),
    ],
)
def test_unknown_nested_toml_key_is_rejected(clean_env, text, key):
    path = clean_env / "nested.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=re.escape(key)):
        Settings.load(path)


def test_unknown_nested_env_key_is_rejected(clean_env, monkeypatch):
    monkeypatch.setenv("FEWREC_RETRIEVAL__EASE_LAMDA", "3")
    with pytest.raises(SettingsError, match=r"\(FEWREC_ variables\): unknown key retrieval\.ease_lamda"):
        Settings.load()
    monkeypatch.delenv("FEWREC_RETRIEVAL__EASE_LAMDA")
    monkeypatch.setenv("FEWREC_RETRIEVAL__SOURCES__EASE__LAMDA", "3")
    with pytest.raises(
        SettingsError, match=r"unknown key retrieval\.sources\.ease\.lamda; did you mean lambda\?"
    ):
        Settings.load()


def test_unknown_keyword_is_rejected(clean_env):
    with pytest.raises(SettingsError, match="unknown key nonsense"):
        Settings.load(nonsense=1)
    with pytest.raises(ValidationError, match="nonsense"):  # built directly: pydantic's own error
        Settings(nonsense=1)


def test_wrong_type_in_toml_is_rejected(clean_env):
    path = clean_env / "typed.toml"
    path.write_text('[chat]\nport = "not a port"\n')
    with pytest.raises(
        SettingsError, match=r"chat\.port: Input should be a valid integer.*\(got 'not a port'\)"
    ):
        Settings.load(path)


def test_wrong_type_in_env_is_rejected(clean_env, monkeypatch):
    monkeypatch.setenv("FEWREC_RETRIEVAL__SOURCES__EASE__LAMBDA", "lots")
    with pytest.raises(SettingsError, match=r"retrieval\.sources\.ease\.lambda: .*\(got 'lots'\)"):
        Settings.load()


# --------------------------------------------------------------------------- CLI


def test_cli_datasets_on_bundled_data(clean_env, monkeypatch):
    data_dir = clean_env / "data"
    monkeypatch.setenv("FEWREC_DATA_DIR", str(data_dir))
    result = CliRunner().invoke(app, ["datasets"])
    assert result.exit_code == 0, result.output
    assert "610" in result.output
    assert "3,650" in result.output
    assert "90,274" in result.output
    assert "movielens" in result.output and "ml-100k" in result.output
    assert list((data_dir / "cache" / "splits").iterdir())  # the split was cached there


def test_cli_datasets_missing_path(clean_env):
    missing = "/does/not/exist"
    result = CliRunner().invoke(app, ["datasets", "--dataset", missing])
    assert result.exit_code != 0
    assert isinstance(result.exception, DatasetError)
    assert missing in str(result.exception)
    assert "not found" in str(result.exception)


def test_cli_datasets_missing_config(clean_env):
    result = CliRunner().invoke(app, ["datasets", "--config", "nope.toml"])
    assert result.exit_code != 0
    assert isinstance(result.exception, FewrecError)
    assert "nope.toml" in str(result.exception)


def test_cli_main_prints_error_in_one_line(clean_env, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["fewrec", "datasets", "--dataset", "/does/not/exist"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    out = capsys.readouterr().out
    assert "error:" in out and "/does/not/exist" in out and "Traceback" not in out


def test_cli_main_prints_a_settings_mistake_in_one_line(clean_env, monkeypatch, capsys):
    path = clean_env / "typo.toml"
    path.write_text("[retrieval.sources.ease]\nlambdaa = 300\n")
    monkeypatch.setattr("sys.argv", ["fewrec", "recommend", "--config", str(path), "--user", "1"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    out = " ".join(capsys.readouterr().out.split())  # rich wraps the line at the terminal's width
    assert "error: bad settings" in out and "retrieval.sources.ease.lambdaa; did you mean lambda?" in out
    assert "Traceback" not in out


def test_the_bundled_folder_named_by_its_path_is_the_bundled_data(clean_env):
    from fewrec.data.loaders import BUNDLED_DIR

    assert Settings.load(dataset=str(BUNDLED_DIR)).dataset_ident == "bundled"  # its tuned weights apply
    elsewhere = clean_env / "ratings.csv"
    assert Settings.load(dataset=str(elsewhere)).dataset_ident == str(elsewhere.resolve())
