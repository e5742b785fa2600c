"""Settings: every backend, store, source and hyper-parameter, chosen without editing code.

Precedence, highest first: keyword arguments > FEWREC_* environment variables >
the TOML file (`fewrec.toml` in the working folder, or `--config PATH`) > defaults.
Nested fields use a double underscore in the environment: FEWREC_RETRIEVAL__SOURCES__EASE__LAMBDA=300.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from fewrec.data.errors import FewrecError
from fewrec.data.loaders import BUNDLED_DIR
from fewrec.data.split import SplitSettings

log = logging.getLogger("fewrec.config")


def default_data_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fewrec"


class EmbeddingSettings(BaseModel):
    """Which embedding model turns item texts into vectors."""

    model_config = ConfigDict(extra="forbid")  # a typo in a key is an error

    backend: Literal["default", "sentence-transformers", "openai"] = "default"
    model: str = "all-MiniLM-L6-v2"
    base_url: str | None = None  # for backend='openai', e.g. http://127.0.0.1:8000/v1
    api_key: str = "EMPTY"
    batch_size: int = 64
    device: str = "cpu"
    timeout_s: float = 30.0


# --------------------------------------------------------------- candidate sources as components
# The registry sits here, below the sources (fewrec/retrieval/), so that settings can validate
# each source's table without importing the sources themselves.


# How an explanation tells a source's evidence (`SourceConfig.explains`).
Explains = Literal["sequence", "item-item", "description", "most-watched", "none"]


class SourceConfig(BaseModel):
    """One candidate source as a component: its hyper-parameters, its fusion weight, whether
    it runs, and the grid its baseline is tuned over. A subclass per source adds the
    hyper-parameters and `build(context) -> CandidateSource` (fewrec/retrieval/components.py);
    `register_source` names it (`[retrieval.sources.NAME]` in fewrec.toml)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)  # a typo is an error

    enabled: bool = True  # false: configured but neither fitted nor fused
    # A weight of 0 still fits the source (its evidence is shown) without moving the rank.
    weight: float = 1.0
    # Grid points (hyper-parameter -> value) the baseline named `baseline` is tuned over on
    # validation; every other hyper-parameter keeps this config's value.
    grid: list[dict[str, Any]] = Field(default_factory=list)
    baseline: ClassVar[str | None] = None  # the `fewrec eval --baselines` name; None: no baseline
    # What the source is, declared here so that no other part spells its name to ask:
    # fused by a default retriever (in the registry's order, the order fusion sums them) ...
    default: ClassVar[bool] = False
    # ... reads the request's time (counts nothing later; the data's times must be dates) ...
    time_aware: ClassVar[bool] = False
    # ... needs the content index's item vectors (left out where there are none) ...
    needs_content: ClassVar[bool] = False
    # ... and how an explanation tells its evidence: "sequence" (people watched X, then this),
    # "item-item" (tied to history items), "description" (alike in what the items are about),
    # "most-watched" (widely watched), "none" (no evidence an explanation can cite).
    explains: ClassVar[Explains] = "none"

    # Not hyper-parameters: what fuses or tunes the source, not what it learns.
    ROLE_FIELDS: ClassVar[frozenset[str]] = frozenset({"enabled", "weight", "grid"})

    def build(self, context: Any) -> Any:
        """The source this config describes, not yet fitted (a `CandidateSource`), given a
        `BuildContext` (both in fewrec/retrieval/base.py)."""
        raise NotImplementedError(f"{type(self).__name__} does not say how to build its source")

    @model_validator(mode="after")
    def _grid_names_hyper_parameters(self) -> SourceConfig:
        known = self.field_names()
        for point in self.grid:
            unknown = [key for key in point if key not in known or key in self.ROLE_FIELDS]
            if unknown:
                raise ValueError(f"grid key(s) {', '.join(unknown)} are not hyper-parameters of this source")
        return self

    @classmethod
    def field_names(cls) -> dict[str, str]:
        """Every key a field is known by (its name and its alias) -> its name."""
        names = {name: name for name in cls.model_fields}
        names.update({f.alias: name for name, f in cls.model_fields.items() if f.alias})
        return names

    def params(self) -> dict[str, Any]:
        """The hyper-parameters alone, by their TOML names (what a model depends on)."""
        return self.model_dump(mode="json", by_alias=True, exclude=set(self.ROLE_FIELDS))

    def with_params(self, **changes: Any) -> SourceConfig:
        """A copy with `changes` (by name or alias) validated and applied; the changed fields
        count as set (`model_fields_set`), the others keep whether they were."""
        names = self.field_names()
        unknown = [key for key in changes if key not in names]
        if unknown:
            known = ", ".join(sorted(k for k in type(self).model_fields if k not in self.ROLE_FIELDS))
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; this source has: {known}")
        update = {names[key]: value for key, value in changes.items()}
        checked = type(self).model_validate({**self.model_dump(), **update})
        return self.model_copy(update={name: getattr(checked, name) for name in update})


# name -> config class; fewrec/retrieval/registry.py registers the built-in sources when the
# retrieval package loads (which `import fewrec` does first), so settings find them.
_registry: dict[str, type[SourceConfig]] = {}


def register_source(name: str, config: type[SourceConfig]) -> type[SourceConfig]:
    """Make `config` the component named `name` (`[retrieval.sources.NAME]`)."""
    _registry[name] = config
    return config


def unregister_source(name: str) -> None:
    """Forget a source registered at run time (tests, plug-ins)."""
    _registry.pop(name, None)


def source_names() -> tuple[str, ...]:
    """Every registered source, in the order registered (the built-ins first)."""
    return tuple(_registry)


def default_source_names() -> tuple[str, ...]:
    """The sources a default retriever fuses (`SourceConfig.default`), in the registry's
    order: the order it sums them."""
    if not _registry:  # never an empty default retriever: say why instead
        raise ValueError(
            "no candidate source is registered yet (fewrec.retrieval registers the built-ins when imported)"
        )
    return tuple(name for name, config in _registry.items() if config.default)


def config_class(name: str) -> type[SourceConfig]:
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(_registry) or "none yet (fewrec.retrieval registers the built-ins when imported)"
        raise ValueError(f"unknown candidate source {name!r}; known: {known}") from None


def default_config(name: str) -> SourceConfig:
    return config_class(name)()


def default_sources() -> dict[str, SourceConfig]:
    return {name: default_config(name) for name in default_source_names()}


def sources_table(given: Mapping[str, Any]) -> dict[str, SourceConfig]:
    """The `sources` table: the defaults with `given`'s tables merged in, field by field."""
    defaults = default_source_names()
    if set(defaults) <= set(given):
        order = list(given)
    else:
        order = [*defaults, *(name for name in given if name not in defaults)]
    table: dict[str, SourceConfig] = {}
    for name in order:
        cls, value = config_class(name), given.get(name)
        if isinstance(value, SourceConfig):
            if not isinstance(value, cls):
                got = type(value).__name__
                raise ValueError(f"retrieval.sources.{name} must be a {cls.__name__}, got {got}")
            table[name] = value
        else:
            try:
                table[name] = cls.model_validate(env_value(value) if value is not None else {})
            except ValidationError as exc:  # named where it was written, not as `retrieval.lambdaa`
                raise ValidationError.from_exception_data(exc.title, [
                    {"type": e["type"], "loc": ("sources", name, *e["loc"]), "input": e["input"],
                     **({"ctx": e["ctx"]} if "ctx" in e else {})}
                    for e in exc.errors()
                ]) from None  # fmt: skip
    return table


def normalise_retrieval(data: dict[str, Any]) -> dict[str, Any]:
    """The `retrieval` section's input with old keys carried over and `sources` made a full
    table of component configs (`RetrievalSettings` validates it before its fields)."""
    from fewrec.config_legacy import migrate  # the old keys live apart, with their notes

    data = migrate(dict(data))
    data["sources"] = sources_table(env_value(data.get("sources")) or {})
    return data


def env_value(value: Any) -> Any:
    """Environment variables arrive as text; a list or table in them is JSON."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        return json.loads(value)
    return value


class RetrievalSettings(BaseModel):
    """Candidate sources and their fusion. Each source is a component with its own table,
    `[retrieval.sources.NAME]`: its hyper-parameters, fusion `weight`, `enabled` and baseline
    `grid` (fewrec/retrieval/components.py, registered in fewrec/retrieval/registry.py). Every
    default source (`default_source_names()`) runs unless its table says `enabled = false`;
    another registered source runs once its table is present. Sources fuse in the registry's
    order, then the others in the order configured (a float sum depends on its order, and the
    published figures on that sum); a table that names every default source keeps its own
    order. The defaults were chosen on the validation split of the bundled data by `fewrec
    tune` (the test split is never used to choose them). The old flat keys (`ease_lambda`,
    `weights = {...}`, `sources = [...]`) still load, with a one-line note naming the new key
    (fewrec/config_legacy.py)."""

    model_config = ConfigDict(extra="forbid")  # a typo in a key is an error

    # name -> that source's config (a `SourceConfig` subclass), in fusion order.
    sources: dict[str, SerializeAsAny[BaseModel]] = Field(default_factory=lambda: default_sources())
    fusion: Literal["weighted", "rrf"] = "weighted"
    rrf_k: int = 60
    candidates: int = 20
    # Users scored at once: every source returns a dense (batch × items) float32 array, so memory
    # grows with batch_users × items (1024 × 20,000 items: 80 MB per array), never with all users.
    batch_users: int = Field(default=1024, ge=1)
    # `fewrec tune` keeps every source's scores of each validation target (users × items per
    # source and split): without --users it tunes on a seeded sample of the users whose scores
    # fit this many GB.
    tune_memory_gb: float = Field(default=2.0, gt=0)
    seed: int = 0  # every seeded source's seed (ALS, BPR)

    @model_validator(mode="before")
    @classmethod
    def _components(cls, data: Any) -> Any:
        return normalise_retrieval(data) if isinstance(data, dict) else data

    @property
    def active(self) -> list[str]:
        """The enabled sources, in the order fusion sums them."""
        return [name for name, config in self.sources.items() if config.enabled]  # type: ignore[attr-defined]

    @property
    def weights(self) -> dict[str, float]:
        """Each enabled source's fusion weight (read-only: `with_weights` changes them)."""
        return {name: float(self.source(name).weight) for name in self.active}

    @property
    def weights_configured(self) -> bool:
        """Whether any weight was named by the settings (a TOML file, the environment, keyword
        arguments) rather than left to the defaults."""
        return any("weight" in config.model_fields_set for config in self.sources.values())

    def needs_content(self, names: list[str] | None = None) -> bool:
        """Whether any of `names` (default: the active sources) needs the content index."""
        return any(self.source(name).needs_content for name in (self.active if names is None else names))

    def source(self, name: str) -> SourceConfig:
        """The config of source `name`: as configured, else its registered defaults."""
        config = self.sources.get(name)
        return config if config is not None else default_config(name)  # type: ignore[return-value]

    def with_source(self, name: str, **changes: Any) -> RetrievalSettings:
        """A copy with source `name`'s config changed (by field name or TOML key)."""
        changed = self.source(name).with_params(**changes)
        return self.model_copy(update={"sources": {**self.sources, name: changed}})

    def with_weights(self, weights: dict[str, float]) -> RetrievalSettings:
        """A copy with these fusion weights (configured sources only; the others keep theirs)."""
        sources = dict(self.sources)
        for name, weight in weights.items():
            if name in sources:
                sources[name] = self.source(name).with_params(weight=float(weight))
        return self.model_copy(update={"sources": sources})


class LLMSettings(BaseModel):
    """Which language model scores and explains candidates, and how it is reached."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["llamacpp", "openai"] = "llamacpp"
    # llamacpp: a bundled name ('gemma3-270m', 'smollm2-135m') or a GGUF path;
    # openai: the model name the server serves (e.g. what `vllm serve MODEL` was given).
    model: str = "gemma3-270m"
    base_url: str | None = None  # openai: e.g. http://127.0.0.1:8000/v1
    api_key: str = "EMPTY"
    timeout_s: float = 30.0
    max_retries: int = 3  # attempts after the first, on connection errors, 429 and 5xx
    retry_max_wait_s: float = 8.0  # cap of the exponential back-off between attempts
    retry_deadline_s: float | None = (
        None  # total time for one call and its retries (None: max(60, 2·timeout))
    )
    concurrency: int = 8  # requests in flight during batch evaluation (keeps vLLM batching busy)
    top_logprobs: int = 20  # choice mode over HTTP; vLLM needs --max-logprobs at least this
    n_ctx: int = 4096  # llamacpp context window
    threads: int | None = None  # llamacpp threads (default: all cores)
    instruct: bool = False  # instruction-tuned model: it writes the explanations (checked for grounding)
    # openai backend only: the server parses tool calls (e.g. `vllm serve --enable-auto-tool-choice
    # --tool-call-parser hermes`), so the chat agent lets the LLM plan its tool calls.
    tool_calling: bool = False


class RerankSettings(BaseModel):
    """The LLM reranking step: prompt, demonstrations, scoring mode and fusion."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    mode: Literal["likelihood", "choice"] = "likelihood"  # choice: instruction-tuned models only
    candidates: int = 20
    k_shot: int = 3  # demonstrations from other users' histories (0 = zero-shot)
    history_items: int = 10  # most recent items of the user shown in the prompt
    demo_history_items: int = 5  # items shown per demonstration
    calibrate: bool = True  # likelihood mode: subtract the content-free log-likelihood (PMI)
    title_words: int = 4  # likelihood mode: words of each candidate's title that are scored
    permutations: int = 1  # choice mode: average over this many candidate orders (position bias)
    alpha: float = 0.0  # final = alpha * z(LLM) + (1 - alpha) * z(retrieval); chosen on validation
    prompt_version: str = "v1"
    explain_top: int = 3


class ChatSettings(BaseModel):
    """The chat agent and its Gradio page."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"  # the page listens on loopback unless told otherwise
    port: int = 7860
    cards: int = 5  # recommendations per reply
    # Turns a wish (genres, years, query words) steers after it was last said, unless replaced;
    # None: it holds until the person says another. Chosen by 5-fold cross-validation over the
    # 600 given ReDial dialogues (60 a fold, seeker_only, turn by turn): R@10 / R@20 0.133 /
    # 0.188 with None against 0.121 / 0.170 with 2 (better in 4 folds, equal in 1). Small
    # talk ("thanks", "I haven't seen those") wore a wish out after two messages.
    wish_turns: int | None = Field(default=None, ge=0)
    max_message_chars: int = 2000  # longer messages are cut (and the reply says so)
    planner: Literal["auto", "fixed", "tools"] = "auto"  # auto: tools when llm.tool_calling
    # How much a meaning query weighs against the taste of the history (0–1): for a known user
    # who names no title, and for a conversation with liked titles. Chosen by `fewrec eval-chat`
    # on validation users (docs/results-chat): a known user's taste beat every weight above 0
    # (hits@20 0.304 against 0.299 at 0.1); with titles 0 and 0.1 tied (0.163; 0.25: 0.158), and
    # a tie goes to the larger weight.
    query_weight: float = Field(default=0.0, ge=0.0, le=1.0)
    query_weight_with_titles: float = Field(default=0.1, ge=0.0, le=1.0)
    # What human clerks suggested in real conversations (fewrec/agent/conversation_prior.py,
    # fitted on ReDial's training dialogues only), mixed into the ranking with this weight
    # (0 = off); `prior_popularity` is how much of it is how often a film is suggested at all.
    # 0.5 measured by `fewrec eval-conversations train_data.jsonl --dialogues 150 --seed 0` with
    # the counts of the other 350 training dialogues (`build_prior --leave-out 150 --seed 0`):
    # the chat's Recall@20 0.061 without it, 0.160 with it.
    prior_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    # The prior says what a conversation is about; named liked titles say more about a taste,
    # so its weight falls with those beyond the first `prior_fade_after`:
    # prior_weight / (1 + prior_fade × max(0, liked titles − prior_fade_after)). Chosen with
    # `fewrec eval-chat --split valid --users 80` (12 families) and `fewrec eval-conversations
    # train_data.jsonl --dialogues 60`: chat/ceiling hits@20 over the families 0.63 without a
    # fade, 1.04 with 2 after 2; ReDial train R@10 0.268 → 0.239 (a fade of 1 from the first
    # title: 1.03 and 0.134). Seekers name 0–2 films before 87% of the clerks' suggestions.
    prior_fade: float = Field(default=2.0, ge=0.0)
    prior_fade_after: int = Field(default=2, ge=0)
    prior_popularity: float = Field(default=0.5, ge=0.0)
    prior_file: Path | None = None  # None: the bundled file
    explain: bool = True  # explanations on the cards (an evaluation that scores ranks skips them)


class Settings(BaseSettings):
    """All of fewrec's knobs. `Settings.load(config_path)` reads a TOML file too."""

    model_config = SettingsConfigDict(
        env_prefix="FEWREC_",
        env_nested_delimiter="__",
        toml_file="fewrec.toml",
        extra="forbid",
    )
    toml_path: ClassVar[Path | None] = None

    data_dir: Path = Field(default_factory=default_data_dir)
    dataset: str | None = None  # None: the bundled ml-latest-small
    dataset_format: str = "auto"
    split: SplitSettings = Field(default_factory=SplitSettings)
    chroma_host: str | None = None  # set: use a Chroma server through HttpClient
    chroma_port: int = 8000
    # None: one collection per dataset and embedding model (`collection_name`), so indexing one
    # dataset never touches another's items; a name given here is used as it is.
    chroma_collection: str | None = None
    # Repeated (user, item, timestamp) rows: an error, or keep the first ("drop") or the last.
    duplicates: Literal["error", "drop", "keep-last"] = "error"
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    rerank: RerankSettings = Field(default_factory=RerankSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    seed: int = 0

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_path or "fewrec.toml")
        return (init_settings, env_settings, toml)

    @classmethod
    def load(cls, config: Path | str | None = None, **overrides: Any) -> Settings:
        """Settings from defaults, a TOML file and the environment (see module docstring)."""
        if config is not None and not Path(config).is_file():
            raise FewrecError(f"config file not found: {config}")
        previous = cls.toml_path
        cls.toml_path = Path(config) if config is not None else None
        file = config if config is not None else "fewrec.toml"
        origin = f"config file {file} or FEWREC_ variables" if Path(file).is_file() else "FEWREC_ variables"
        _warn_unknown_variables()
        try:
            return cls(**overrides)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {file} is not valid TOML: {exc}") from None
        except ValidationError as exc:
            problems = "; ".join(_problem(error) for error in exc.errors())
            raise SettingsError(f"bad settings ({origin}): {problems}") from None
        finally:
            cls.toml_path = previous

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def model_dir(self) -> Path:
        """Trained model weights (e.g. SASRec), keyed by their training data."""
        return self.data_dir / "models"

    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def loader_options(self) -> dict[str, Any]:
        """Options for the dataset loaders: `load_dataset(..., **settings.loader_options)`. The
        loaders' defaults are left out, so that the split cache keys stay what they were."""
        return {} if self.duplicates == "error" else {"duplicates": self.duplicates}

    # ------------------------------------------------------------------ per-dataset state
    # The split cache and SASRec's weights are keyed by content (the dataset's bytes, the
    # training data), so datasets never share an entry there; what is keyed by name is below.
    @property
    def dataset_ident(self) -> str:
        """What names the dataset: 'bundled', or its absolute path (wherever fewrec runs from)."""
        if self.dataset is None or str(self.dataset) in ("", "bundled", "ml-latest-small"):
            return "bundled"
        path = Path(self.dataset).expanduser().resolve()
        # The bundled folder named by its path is the bundled data: its tuned weights apply.
        return "bundled" if path == BUNDLED_DIR.resolve() else str(path)

    @property
    def dataset_key(self) -> str:
        """A short stable id of the dataset, readable in file names: '<name>-<8 hex of its path>'."""
        return f"{_slug(self._dataset_name)}-{_digest(self.dataset_ident, 8)}"

    @property
    def _dataset_name(self) -> str:
        ident = self.dataset_ident
        return "ml-latest-small" if ident == "bundled" else Path(ident).name.split(".")[0]

    @property
    def embedding_key(self) -> str:
        """The embedding model as it decides the vectors (the default backend ignores `model`)."""
        e = self.embedding
        return "default:all-MiniLM-L6-v2" if e.backend == "default" else f"{e.backend}:{e.model}"

    @property
    def collection_name(self) -> str:
        """The content index's Chroma collection: `chroma_collection` when set, else one per
        (dataset, embedding model), e.g. 'fewrec-items-ml-latest-small-1a2b3c4d5e'."""
        if self.chroma_collection:
            return self.chroma_collection
        digest = _digest(f"{self.dataset_ident}\n{self.embedding_key}", 10)
        return f"fewrec-items-{_slug(self._dataset_name)}-{digest}"

    @property
    def tuned_path(self) -> Path:
        """Where `fewrec tune` keeps this dataset's weights (one entry per protocol and model)."""
        return self.data_dir / "tuned" / f"{self.dataset_key}.json"


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


class SettingsError(FewrecError):
    """Settings that cannot load: a key or value the models refuse, or a file that is not TOML."""


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys a settings table takes, as they are written, at the place `loc` points into."""
    model: Any = Settings
    path = list(loc)
    while path:
        part = path.pop(0)
        if model is RetrievalSettings and part == "sources" and path:
            model = config_class(str(path.pop(0)))
            continue
        field = model.model_fields.get(part) if isinstance(model, type) else None
        model = field.annotation if field is not None else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _problem(error: Any) -> str:
    """One error of the settings as a user can act on it: where, what, and the nearest key."""
    loc = tuple(error["loc"])
    where = ".".join(map(str, loc))
    if error["type"] != "extra_forbidden":
        message = str(error["msg"]).removeprefix("Value error, ")
        given = error.get("input")
        shown = f" (got {given!r})" if isinstance(given, str | int | float | bool) else ""
        return f"{where}: {message}{shown}"
    key = str(loc[-1])
    if len(loc) == 1 and (new := _legacy_key(key)):
        return f"unknown key {key}: it is now {new} (the old key still loads under [retrieval], with a note)"
    keys = _keys_at(loc[:-1])
    near = difflib.get_close_matches(key, keys, n=1)
    hint = f"; did you mean {near[0]}?" if near else (f"; the keys there: {', '.join(keys)}" if keys else "")
    return f"unknown key {where}{hint}"


def _legacy_key(key: str) -> str | None:
    """The new name of an old flat `[retrieval]` key (None: not one)."""
    from fewrec.config_legacy import LEGACY_KEYS

    if key == "weights":
        return "retrieval.sources.NAME.weight"
    return " and ".join(f"retrieval.sources.{t}" for t in LEGACY_KEYS[key]) if key in LEGACY_KEYS else None


def _warn_unknown_variables() -> None:
    """A FEWREC_ variable that names no setting is ignored by pydantic-settings: say so, once
    per name (a nested one, FEWREC_RETRIEVAL__X, is an error already)."""
    for name in sorted(os.environ):
        top = name.removeprefix("FEWREC_").split("__")[0].lower()
        if name.startswith("FEWREC_") and top not in Settings.model_fields and name not in _warned:
            _warned.add(name)
            near = difflib.get_close_matches(top, list(Settings.model_fields), n=1)
            hint = f" (did you mean FEWREC_{near[0].upper()}?)" if near else ""
            log.warning("environment variable %s names no setting: ignored%s", name, hint)


_warned: set[str] = set()


def _slug(text: str, limit: int = 24) -> str:
    """Lower-case letters, digits and single dashes (valid in Chroma names and file names)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return slug or "data"
