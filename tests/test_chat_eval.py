"""The chat evaluation (`fewrec eval-chat`): the phrasings file loads and every family writes
the intended titles into its messages; the title accounting; the query-weight choice; the
harness scores a chat that reads exactly like the ceiling; a tiny end-to-end run; and the
one-line error for a dataset without titles."""

from __future__ import annotations

import json
import re
import unicodedata

import numpy as np
import pytest
from typer.testing import CliRunner

from fewrec.agent.chat import ChatAgent, ChatState, ChatTurn, PendingChoice
from fewrec.agent.recommender import Recommender
from fewrec.cli import app
from fewrec.eval import chat_eval
from fewrec.eval.chat_phrasings import (
    PhrasingsError,
    Rendered,
    family_seed,
    load_phrasings,
    misspell,
    render,
    shared_titles,
)
from fewrec.eval.runner import EvalError
from fewrec.fit.chat_weights import choose_weights
from fewrec.prompts.templates import display_title

YEAR = re.compile(r"\s*\(\d{4}\)$")


@pytest.fixture(scope="module")
def phrasings():
    return load_phrasings()


@pytest.fixture(scope="module")
def samples(bundled_split, phrasings):
    """40 users' intended items, sampled as the evaluation samples them."""
    users = chat_eval.sample_users(bundled_split, "test", 40, seed=3)
    table = chat_eval._ratings_by_user(bundled_split, "test")
    return {
        int(u): chat_eval.user_items(
            bundled_split, int(u), "test", table, phrasings, np.random.default_rng([3, int(u)])
        )[0]
        for u in users
    }


def one_edit_apart(a: str, b: str) -> bool:
    """Exactly one letter dropped, doubled/inserted, or two neighbours swapped."""
    if a == b:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long = sorted((a, b), key=len)
    return len(long) - len(short) == 1 and any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def plain(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    return re.sub(r"\W+", " ", "".join(ch for ch in text if not unicodedata.combining(ch))).strip()


def bare_display(raw: str) -> str:
    """What a person types for a catalog title: the display form, no year, no alternative names."""
    title = YEAR.sub("", display_title(raw))
    return re.sub(r"\s*\([^()]*\)", "", title).strip() or title


# --------------------------------------------------------------------------- the phrasings file
def test_the_shipped_file_covers_the_phrasings_asked_for(phrasings):
    families = phrasings.families
    assert len(families) >= 13 and len(set(phrasings.names)) == len(families)
    assert all(f.description and f.turns for f in families)
    placeholders = set().union(*(f.placeholders for f in families))
    assert {"titles", "head", "tail", "genre", "decade", "mood"} <= placeholders
    assert any(f.years for f in families) and any(not f.years for f in families)
    for option in ("lower", "typo", "catalog_form", "known_user"):
        assert any(getattr(f, option) for f in families), option
    assert any(f.bullet for f in families) and any(f.quote for f in families)
    assert any(";" in f.separator for f in families)
    assert any(len(f.turns) == 2 for f in families)
    assert [f.name for f in families if f.has_query] == ["mood", "known_user_mood"]


def test_every_family_writes_each_intended_title(bundled_split, phrasings, samples):
    catalog = bundled_split.catalog
    rendered_any = dict.fromkeys(phrasings.names, 0)
    for user, items in samples.items():
        assert phrasings.min_items <= len(items) <= phrasings.max_items
        assert set(items) <= set(bundled_split.history(user, "test").tolist())  # never the held-out item
        for family in phrasings.families:
            out = render(family, items, catalog, phrasings, family_seed(3, user, family.name))
            if isinstance(out, str):
                needs = {"genre", "decade", "mood", "disliked", "not_genre", "wrong", "event_year"}
                assert family.placeholders & needs or family.typo, (family.name, out)
                continue
            rendered_any[family.name] += 1
            message = "\n".join(out.turns)
            if family.known_user:
                assert out.intended == [] and out.mood and out.mood in message
                continue
            assert out.intended == items[-family.max_titles :] if family.max_titles else items
            positions = [message.find(w) for w in out.written]
            # in order; {tail} may come first ("I saw {tail} in 2010 … I also liked {head}")
            order = positions if "{titles}" in "".join(family.turns) else positions[:-1]
            assert -1 not in positions and order == sorted(order), (family.name, message)
            typos = 0
            for item, written in zip(out.intended, out.written, strict=True):
                raw = str(catalog.frame["title"].iat[item])
                year = catalog.frame["year"].iat[item]
                if family.catalog_form:
                    assert written == raw
                    continue
                if family.lower:
                    assert written == written.lower()
                assert bool(YEAR.search(written)) == (family.years and not np.isnan(float(year)))
                meant, got = plain(bare_display(raw)), plain(YEAR.sub("", written))
                if got != meant:
                    assert family.typo and one_edit_apart(got, meant), (family.name, written, raw)
                    typos += 1
            assert typos == (1 if family.typo else 0), (family.name, out.written)
            if "head" in family.placeholders:
                assert out.written[-1] in out.turns[-1] and out.written[0] in out.turns[0]
            if out.genre:  # the most common genre of the intended items, said in the message
                counts = [sum(g in catalog.frame["genres"].iat[i] for i in out.intended) for g in
                          {g for i in out.intended for g in catalog.frame["genres"].iat[i]}
                          if g in phrasings.genre_words]  # fmt: skip
                assert sum(out.genre in catalog.frame["genres"].iat[i] for i in out.intended) == max(counts)
                assert phrasings.genre_words[out.genre] in message
            if out.years:
                assert out.years[0] <= int(catalog.frame["year"].iat[out.intended[-1]]) <= out.years[1]
    # every family was asked at least once (those naming other items: below, with them)
    needs_other = {f.name for f in phrasings.families if f.placeholders & {"disliked", "wrong"}}
    assert all(n for name, n in rendered_any.items() if name not in needs_other), rendered_any


def test_shared_titles_are_those_no_reader_can_tell_apart(bundled_split):
    catalog = bundled_split.catalog
    jungle = [i for i, t in enumerate(catalog.frame["title"]) if t.startswith("Jungle Book, The (")]
    assert len(jungle) >= 2
    assert set(jungle) <= shared_titles(catalog, with_year=False)
    assert not set(jungle) & shared_titles(catalog, with_year=True)  # 1967 and 1994
    heat = catalog.frame.index[catalog.frame["title"] == "Heat (1995)"][0]
    assert heat not in shared_titles(catalog, with_year=False)


def test_misspell_makes_one_edit_and_keeps_first_letters():
    for seed in range(60):
        title = "Sling Blade and Reservoir Dogs"
        typo = misspell(title, np.random.default_rng(seed))
        assert one_edit_apart(typo, title)
        assert [w[0] for w in typo.split()] == [w[0] for w in title.split()]


def test_a_malformed_phrasings_file_is_a_clear_error(tmp_path):
    good = '[[family]]\nname = "x"\ndescription = "d"\nturns = ["I loved {titles}"]\n'
    path = tmp_path / "p.toml"
    for text, words in [
        (good.replace("{titles}", "{films}"), "unknown placeholder"),
        (good + "colour = true\n", "unknown option"),
        (good.replace('turns = ["I loved {titles}"]', 'turns = "I loved {titles}"'), "list of strings"),
        ("[sampling]\nmin_items = 3\n", "no [[family]]"),
        (good + good, "two families"),
    ]:
        path.write_text(text)
        with pytest.raises(PhrasingsError, match=re.escape(words)):
            load_phrasings(path)
    path.write_text(good)
    assert load_phrasings(path).names == ["x"]


# --------------------------------------------------------------------------- accounting, weights
def test_title_accounting_on_a_hand_made_conversation():
    state = ChatState(
        liked=[1, 99], disliked=[3], excluded=[50],
        pending=[PendingChoice(phrase="King Kong", sentiment="like", options=[2, 7])],
    )  # fmt: skip
    got = chat_eval.account([1, 2, 3, 4], state)
    assert got.correct == [1] and got.asked_back == [2] and got.missed == [4]
    assert sorted(got.wrong) == [3, 50, 99]  # 3 named but taken as disliked; 99, 50 never named
    assert got.misread
    asked_only = chat_eval.account([1, 2], ChatState(liked=[1], pending=state.pending))
    assert asked_only.asked_back == [2] and not asked_only.misread  # asked back is not a misread
    assert not chat_eval.account([], ChatState()).misread


def test_accounting_holds_dislikes_to_their_ground_truth():
    # A disliked item kept away (disliked, or "nothing like") is read right; taken as liked, wrong.
    for kept_away in (ChatState(liked=[1], disliked=[2]), ChatState(liked=[1], avoid_like=[2])):
        got = chat_eval.account([1], kept_away, disliked=[2])
        assert got.correct == [1, 2] and not got.misread
    flipped = chat_eval.account([1], ChatState(liked=[1, 2]), disliked=[2])
    assert flipped.wrong == [2] and flipped.wrong_feeling == [2] and flipped.misread
    unread = chat_eval.account([1], ChatState(liked=[1]), disliked=[2])
    assert unread.missed == [2] and unread.wrong_feeling == []
    corrected = chat_eval.account([1], ChatState(liked=[1, 5]))  # 5: named, then corrected away
    assert corrected.wrong == [5] and corrected.wrong_feeling == []


NEGATIVE = ("dislike_typographic", "not_a_fan", "couldnt_stand_but_loved", "anything_but_genre", "no_genre",
            "not_in_the_mood_genre", "child_age", "event_year", "correction")  # fmt: skip


def test_negative_families_write_what_their_ground_truth_says(bundled_split, phrasings, samples):
    catalog = bundled_split.catalog
    table = chat_eval._ratings_by_user(bundled_split, "test")
    genres = catalog.frame["genres"]
    rendered = dict.fromkeys(NEGATIVE, 0)
    for user, items in samples.items():
        rng = np.random.default_rng([3, user])
        other = chat_eval.user_items(bundled_split, user, "test", table, phrasings, rng)[1]
        assert not set(other.disliked) & set(items) and set(other.disliked) <= set(other.others)
        for name in NEGATIVE:
            out = render(phrasings.family(name), items, catalog, phrasings, family_seed(3, user, name), other)
            if isinstance(out, str):
                continue
            rendered[name] += 1
            message, wanted = " ".join(out.turns), chat_eval.intended_filters(out)
            for item in out.disliked:
                assert item not in items and bare_display(str(catalog.frame["title"].iat[item])) in message
            if out.not_genre:
                assert phrasings.genre_words[out.not_genre] in message
                assert not any(out.not_genre in genres.iat[i] for i in out.intended)
                assert wanted.exclude_genres == [out.not_genre] and not wanted.genres
            if out.kids:
                assert wanted.genres == ["Children"] and wanted.exclude_genres == ["Horror"]
                assert re.search(r"\b([5-9]|1[0-2])-year-old\b", message)
            if name == "event_year":
                assert wanted.is_empty() and re.search(r" in (19|20)\d\d ", message)
            if out.corrected:
                wrong = bare_display(str(catalog.frame["title"].iat[out.corrected[0]]))
                assert message.index(wrong) < message.index(" I mean ") and out.corrected[0] not in items
    assert all(rendered.values()), rendered  # every family was asked at least once


def test_query_weight_choice_best_then_larger():
    sweep = {0.0: {"mood": 0.2, "ku": 0.3}, 0.25: {"mood": 0.3, "ku": 0.3}, 0.5: {"mood": 0.3, "ku": 0.1}}
    chosen = choose_weights(
        sweep, {"mood": 10, "ku": 10}, {"mood": "query_weight_with_titles", "ku": "query_weight"}
    )
    # mood: 0.25 and 0.5 tie at the best, the larger wins; ku: 0 and 0.25 tie, 0.5 loses
    assert chosen == {"query_weight_with_titles": 0.5, "query_weight": 0.25}


# --------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def cheap_fit():
    """conftest's `cheap_recommender` fitted only on what came before each user's test item, as
    the evaluation replays; with the content index (in the session's data folder, which the
    other tests build): the words a message leaves over query it."""
    return {"fit_on": "test", "use_content": True}


class ExactReader:
    """A stand-in for the chat agent that reads every intended title exactly (it is told them)
    and answers like the chat: the liked items, the cards of earlier turns excluded."""

    def __init__(self, recommender: Recommender, rendered: Rendered) -> None:
        self.recommender, self.rendered = recommender, rendered
        self.filters = chat_eval.intended_filters(rendered)

    def start(self, user_id: str) -> tuple[ChatState, str]:
        return ChatState(user_id=user_id), ""

    def respond(self, state: ChatState, message: str) -> tuple[ChatTurn, ChatState]:
        state = state.model_copy(deep=True)
        split = self.recommender.split
        for item, written in zip(self.rendered.intended, self.rendered.written, strict=True):
            if written in message:
                state.liked.append(split.item_ids[item].item())
        if message == self.rendered.turns[-1]:
            state.disliked += [split.item_ids[i].item() for i in self.rendered.disliked]
        state.filters = self.filters
        recs = self.recommender.recommend(
            user_id=state.user_id, history=list(state.liked), k=chat_eval.CARDS, filters=self.filters,
            exclude=[*state.shown, *state.disliked], explain=False, as_of=state.as_of,
        )  # fmt: skip
        state.shown += [r.item_id for r in recs]
        return ChatTurn(message=message, reply="", recommendations=recs, seconds=0.01), state


def test_a_chat_that_reads_exactly_scores_as_the_ceiling(
    bundled_split, phrasings, samples, cheap_recommender
):
    cheap_recommender.settings.chat.cards = chat_eval.CARDS
    names = ("list_with_years", "request_genre", "request_decade", "two_turns", "dislike_typographic",
             "anything_but_genre", "child_age", "event_year", "correction")  # fmt: skip
    families = [phrasings.family(n) for n in names]
    table = chat_eval._ratings_by_user(bundled_split, "test")
    users = list(samples)[:10]
    times = bundled_split.reference_times(np.array(users), "test")
    compared = 0
    for user, as_of in zip(users, times.tolist(), strict=True):
        for family in families:
            rng = np.random.default_rng([3, user])
            other = chat_eval.user_items(bundled_split, user, "test", table, phrasings, rng)[1]
            rng = family_seed(3, user, family.name)
            rendered = render(family, samples[user], bundled_split.catalog, phrasings, rng, other)
            if isinstance(rendered, str):
                continue
            scorer = chat_eval.Scorer(ExactReader(cheap_recommender, rendered), cheap_recommender, "test")
            record = scorer.run(rendered, user, as_of)
            assert not record.accounting.misread and record.filters_ok
            assert record.ranks["chat"] == record.ranks["ceiling"], (family.name, user)
            compared += 1
    assert compared >= 70


def test_tiny_end_to_end_run_writes_the_reports(bundled_split, cheap_recommender, tmp_path):
    settings = cheap_recommender.settings
    settings.chat.cards = 5  # as the page shows: the evaluation answers with 20 of its own
    before = settings.model_dump(mode="json")
    report = chat_eval.evaluate_chat(
        bundled_split, settings, users=5, seed=0, families=["quoted", "request_decade", "request_genre"],
        query_weights=[], recommender=cheap_recommender,
    )  # fmt: skip
    files = chat_eval.write(report, tmp_path / "run")
    assert {f.name for f in files} == {"results.json", "report.md", "hits_by_family.png"}
    data = json.loads((tmp_path / "run" / "results.json").read_text())
    assert data["kind"] == "chat" and data["complete"] is True and data["users"] == 5
    assert [f["name"] for f in data["families"]] == ["quoted", "request_decade", "request_genre"]
    assert data["sweep"] is None and set(data["query_weights"]) == {
        "query_weight",
        "query_weight_with_titles",
    }
    for result in [*data["families"], data["overall"]]:
        assert result["messages"] + sum(result["skipped"].values()) >= 5 or result["name"] == "all"
        assert set(result["hits"]) == {"chat", "ceiling", "popularity"}
        for hits in result["hits"].values():
            assert set(hits) == {"hits@5", "hits@10", "hits@20"}
            assert hits["hits@5"] <= hits["hits@10"] <= hits["hits@20"] <= 1
        assert 0 <= result["misread_rate"] <= 1 and result["seconds_p95"] >= result["seconds_p50"] > 0
        assert set(result["titles"]) == {
            "intended",
            "linked",
            "missed",
            "asked_back",
            "wrong",
            "wrong_feeling",
        }
        assert 0 <= result["shared_title_rate"] <= 1
        assert result["no_cards_rate"] == 0  # the chat answered every message
    assert data["overall"]["messages"] == sum(f["messages"] for f in data["families"])
    text = (tmp_path / "run" / "report.md").read_text()
    assert "| quoted |" in text and "Target misread-title rate" in text
    assert data["settings"]["chat"]["cards"] == chat_eval.CARDS
    # The evaluation answered with 20 cards from settings of its own: the caller's are as they were.
    assert cheap_recommender.settings is settings and settings.model_dump(mode="json") == before


def test_cli_rejects_a_dataset_without_titles(events_without_titles):
    args = ["eval", "--chat", "--dataset", str(events_without_titles), "--users", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and isinstance(result.exception, EvalError)
    assert "titles" in str(result.exception) and "\n" not in str(result.exception)
    result = CliRunner().invoke(app, ["eval", "--query-weights", "0,0.5"])
    assert isinstance(result.exception, EvalError) and "--chat" in str(result.exception)


def test_chat_agent_runs_through_the_harness(bundled_split, phrasings, samples, cheap_recommender):
    """The real chat agent, one message: whatever it reads, the record is consistent."""
    cheap_recommender.settings.chat.cards = chat_eval.CARDS
    user = next(iter(samples))
    family = phrasings.family("quoted")
    rendered = render(
        family, samples[user], bundled_split.catalog, phrasings, family_seed(3, user, family.name)
    )
    assert not isinstance(rendered, str)
    scorer = chat_eval.Scorer(ChatAgent(cheap_recommender), cheap_recommender, "test")
    as_of = int(bundled_split.reference_times(np.array([user]), "test")[0])
    record = scorer.run(rendered, user, as_of)
    a = record.accounting
    assert len(a.correct) + len(a.missed) + len(a.asked_back) + sum(
        i in a.wrong for i in (bundled_split.item_ids[j].item() for j in rendered.intended)
    ) == len(rendered.intended)
    assert set(record.ranks) == {"chat", "ceiling", "popularity"} and len(record.seconds) == 1


def test_ctrl_c_leaves_results_marked_incomplete(bundled_split, cheap_recommender, tmp_path):
    class Interrupted(ChatAgent):
        """Ctrl-C on the fifth message."""

        calls = 0

        def respond(self, state: ChatState, message: str) -> tuple[ChatTurn, ChatState]:
            Interrupted.calls += 1
            if Interrupted.calls == 5:
                raise KeyboardInterrupt
            return super().respond(state, message)

    report = chat_eval.evaluate_chat(
        bundled_split, cheap_recommender.settings, users=3, seed=0, families=["quoted", "request_genre"],
        query_weights=[], recommender=cheap_recommender, make_agent=Interrupted,
    )  # fmt: skip
    assert not report.complete and any("interrupted" in n for n in report.notes)
    first, second = report.families
    assert (first.messages, first.partial) == (3, False) and (second.messages, second.partial) == (1, True)
    assert report.overall is not None and report.overall.messages == 4
    chat_eval.write(report, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "results.json").read_text())["complete"] is False
    assert "INCOMPLETE" in (tmp_path / "run" / "report.md").read_text()
