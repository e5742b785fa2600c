"""The conversation evaluation (`fewrec eval-conversations`): ReDial's JSONL and the adapter
format read into dialogues, ReDial's title quirks matched to the catalog, new-item targets,
the recall arithmetic on a hand-made dialogue, both replay modes through the real chat, the
reading accuracy, a small end-to-end run, and bad input (tests/data/redial_sample.jsonl: 7
ReDial dialogues, CC BY 4.0, see tests/data/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import item_titled
from typer.testing import CliRunner

from fewrec.agent.chat import ChatAgent, ChatState, ChatTurn, PendingChoice
from fewrec.agent.recommender import Recommendation, Recommender
from fewrec.cli import app
from fewrec.data.dialogues import (
    ConversationFormatError,
    Dialogue,
    TitleMatcher,
    dialogue_from_turns,
    new_item_turns,
    read_dialogues,
)
from fewrec.eval import conversation_eval as ce
from fewrec.eval.harness import place_of
from fewrec.eval.runner import EvalError

SAMPLE = Path(__file__).resolve().parent / "data" / "redial_sample.jsonl"


@pytest.fixture(scope="module")
def sample() -> list[Dialogue]:
    return read_dialogues(SAMPLE)


# --------------------------------------------------------------------------- reading files
def test_reads_redial_with_its_quirks(sample):
    assert len(sample) == 7
    first = sample[0]
    assert first.dialogue_id == "15875" and len(first.turns) == 22
    assert [t.role for t in first.turns[:3]] == ["recommender", "seeker", "seeker"]
    assert first.films["140066"] == "Bridesmaids (2011)"  # two spaces before the year, collapsed
    assert first.films["161259"] == "How to Train Your Dragon"  # no year, trailing space dropped
    mention = first.turns[11]
    assert mention.text == "Okay, have you seen @136983?" and mention.films == ["136983"]
    assert first.shown_text(mention) == "Okay, have you seen Ghostbusters (1984)?"
    no_labels = next(d for d in sample if d.dialogue_id == "19504")
    assert no_labels.labels == {}  # ReDial writes an empty list
    disliked = next(d for d in sample if d.dialogue_id == "10324").labels["138962"]
    assert (disliked.liked, disliked.seen, disliked.suggested) == (0, 0, 1)


def test_new_item_turns_merge_the_recommenders_messages_and_skip_repeats(sample):
    first = sample[0]
    points = new_item_turns(first)
    assert [p.targets for p in points] == [["136983"], ["131869", "161259"], ["102249"]]
    assert [p.seeker_messages_before for p in points] == [7, 9, 11]
    assert points[1].mentioned_before == ["136983", "140066"]  # the seeker's own mention counts
    made = dialogue_from_turns(
        "hand",
        [
            {"role": "seeker", "text": "I loved Heat (1995)", "films": ["Heat (1995)"]},
            {"role": "recommender", "text": "Heat again? Or Ronin (1998)", "films": ["Heat (1995)"]},
            {
                "role": "recommender",
                "text": "and Collateral (2004)",
                "films": ["Ronin (1998)", "Collateral (2004)"],
            },
            {"role": "recommender", "text": "Heat, really", "films": ["Heat (1995)"]},
        ],
    )
    points = new_item_turns(made)
    assert len(points) == 1 and points[0].first_turn == 1
    assert points[0].targets == ["Ronin (1998)", "Collateral (2004)"]


def test_adapter_format_file(tmp_path):
    record = {
        "dialogue_id": "a1",
        "turns": [
            {"role": "seeker", "text": "I loved Heat (1995)", "films": ["Heat (1995)"]},
            {"role": "recommender", "text": "Try  Ronin (1998)", "films": ["Ronin  (1998)"]},
        ],
        "labels": {"Heat (1995)": {"liked": 1, "seen": 1}},
    }
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps(record) + "\n\n")
    (dialogue,) = read_dialogues(path)
    assert dialogue.films == {"Heat (1995)": "Heat (1995)", "Ronin (1998)": "Ronin (1998)"}
    assert dialogue.labels["Heat (1995)"].liked == 1
    assert dialogue.shown_text(dialogue.turns[1]) == "Try  Ronin (1998)"  # written as the person wrote it
    assert new_item_turns(dialogue)[0].targets == ["Ronin (1998)"]


# --------------------------------------------------------------------------- matching
def test_title_matching_on_title_and_year(bundled_split):
    catalog = bundled_split.catalog
    matcher = TitleMatcher(catalog)
    avengers = matcher.match("The Avengers  (2012)")  # the catalog writes "Avengers, The (2012)"
    assert avengers.kind == "title and year" and catalog.title(avengers.item_id) == "Avengers, The (2012)"
    assert matcher.match("Heat (1995)").item_id == item_titled(bundled_split, "Heat (1995)")
    one_off = matcher.match("Heat (1996)")
    assert one_off.kind == "year one off" and one_off.item_id == item_titled(bundled_split, "Heat (1995)")
    assert (
        matcher.match("Heat (1971)").kind == "year differs" and matcher.match("Heat (1971)").item_id is None
    )
    no_year = matcher.match("Notting Hill ")
    assert no_year.kind == "no year, one film" and catalog.title(no_year.item_id) == "Notting Hill (1999)"
    missing = matcher.match("Zzyzx Quux Nonexistent (2011)")
    assert missing.kind == "not in catalog" and not missing.matched


def test_a_shared_title_without_year_is_the_most_watched(bundled_split, cheap_recommender):
    frame = bundled_split.catalog.frame
    titanics = frame.loc[frame["title"].str.match(r"Titanic \(\d{4}\)$"), "item_id"].tolist()
    assert len(titanics) >= 2
    matcher = TitleMatcher(bundled_split.catalog, ce._watched(cheap_recommender))
    found = matcher.match("Titanic")
    counts = cheap_recommender.retriever.popularity.counts
    most = max(titanics, key=lambda i: counts[bundled_split.item_index(i)])
    assert found.kind == "no year, most watched" and found.item_id == most
    assert matcher.match("Titanic (1953)").item_id == item_titled(bundled_split, "Titanic (1953)")


# --------------------------------------------------------------------------- scoring
class ScriptedChat:
    """Stands in for the chat: every reply shows the same cards, whatever was said."""

    def __init__(self, cards: list, settings) -> None:
        self.cards, self.settings = cards, settings
        self.messages: list[str] = []

    def start(self, user_id: str | None = None) -> tuple[ChatState, str]:
        return ChatState(), ""

    def respond(self, state: ChatState, message: str) -> tuple[ChatTurn, ChatState]:
        self.messages.append(message)
        recs = [
            Recommendation(item_id=i, title=str(i), score=0.0, rank=n + 1) for n, i in enumerate(self.cards)
        ]
        return ChatTurn(message=message, reply="", recommendations=recs, seconds=0.01), state


def test_recall_on_a_hand_made_dialogue(bundled_split, cheap_recommender):
    ids = bundled_split.catalog.frame["item_id"].tolist()
    heat, collateral, ronin, later = (
        item_titled(bundled_split, t)
        for t in ("Heat (1995)", "Collateral (2004)", "Ronin (1998)", "Alien (1979)")
    )
    fillers = [i for i in ids if i not in (heat, collateral, ronin, later)]
    # Heat (mentioned) first: it is removed, so Collateral ranks first and Ronin seventh.
    cards = [heat, collateral, *fillers[:5], ronin, *fillers[5:30], later]
    dialogue = dialogue_from_turns(
        "hand",
        [
            {"role": "seeker", "text": "I loved Heat (1995)", "films": ["Heat (1995)"]},
            {
                "role": "recommender",
                "text": "Collateral (2004) or Ronin (1998)",
                "films": ["Collateral (2004)", "Ronin (1998)"],
            },
            {"role": "seeker", "text": "seen Ronin (1998)", "films": ["Ronin (1998)"]},
            {
                "role": "recommender",
                "text": "Alien (1979)? Zzyzx Quux (2011)?",
                "films": ["Alien (1979)", "Zzyzx Quux (2011)"],
            },
        ],
    )
    chat = ScriptedChat(cards, cheap_recommender.settings.chat)
    replayer = ce.Replayer(chat, cheap_recommender, TitleMatcher(bundled_split.catalog))  # type: ignore[arg-type]
    replay = replayer.replay(dialogue, 0, "seeker_only")
    assert replay.targets == 4 and [t.targets for t in replay.scored] == [2, 1]
    assert replay.scored[0].ranks["chat"] == [0, 6]
    assert replay.scored[1].ranks["chat"] == [None]  # 33rd card of 34, beyond the 20 scored
    result = ce.ModeResult(mode="seeker_only", description="")
    ce.summarise_recall(result, [replay], 0)
    assert result.targets_in_catalog == 3 and result.targets == 4
    assert result.recall["chat"] == {
        "recall@1": 1 / 3,
        "recall@5": 1 / 3,
        "recall@10": 2 / 3,
        "recall@20": 2 / 3,
    }
    assert result.recall_all_targets["chat"]["recall@10"] == 0.5  # the missing film as a miss
    assert replay.scored[1].cards["chat"] == 20 and replay.scored[0].cards["popularity"] == 20
    # The dialogue so far as one message: the seeker's messages before each turn, joined.
    assert chat.messages == [
        "I loved Heat (1995)",
        "I loved Heat (1995)",
        "seen Ronin (1998)",
        "I loved Heat (1995)\nseen Ronin (1998)",
    ]
    popular = replayer.reference_rankings(new_item_turns(dialogue)[1], dialogue, 0)["popularity"]
    kept = [i for i in popular if i not in (heat, collateral, ronin)][:20]
    counts = cheap_recommender.retriever.popularity.counts
    assert len(kept) == 20 and all(counts[bundled_split.item_index(i)] > 0 for i in kept)


def test_reading_accuracy_counts_places_against_labels():
    reading = ce.reading_of(
        [
            ("liked", 1, 1),
            ("not read", 1, 1),
            ("liked", 0, 1),
            ("disliked", 0, 0),
            ("seen / not again", 2, 1),
        ]
    )
    assert reading.films == 5
    assert reading.liked_kept == 0.5 and reading.disliked_not_liked == 0.5
    assert reading.seen_accuracy == pytest.approx(3 / 5)  # the disliked unseen film was read as known
    assert reading.unsaid == {"seen / not again": 1}
    state = ChatState(
        liked=[1], excluded=[2], pending=[PendingChoice(phrase="x", sentiment="like", options=[3])]
    )
    assert [place_of(state, i) for i in (1, 2, 3, 4)] == [
        "liked",
        "seen / not again",
        "asked back",
        "not read",
    ]


# --------------------------------------------------------------------------- the real chat
class RecordingChat(ChatAgent):
    """The real chat, recording each message with the shown cards the state carried in."""

    def __init__(self, recommender: Recommender) -> None:
        super().__init__(recommender)
        self.calls: list[tuple[str, list]] = []

    def respond(self, state: ChatState, message: str) -> tuple[ChatTurn, ChatState]:
        self.calls.append((message, list(state.shown)))
        return super().respond(state, message)


class CardsSeenChat(ChatAgent):
    """The real chat, recording the cards each message may refer to."""

    def __init__(self, recommender: Recommender) -> None:
        super().__init__(recommender)
        self.seen: dict[str, list] = {}

    def respond(self, state: ChatState, message: str) -> tuple[ChatTurn, ChatState]:
        self.seen.setdefault(message, list(state.last_cards))
        return super().respond(state, message)


def test_the_seeker_answers_the_human_recommenders_films_never_the_chats_cards(
    bundled_split, cheap_recommender
):
    heat, collateral, ronin = (
        item_titled(bundled_split, t) for t in ("Heat (1995)", "Collateral (2004)", "Ronin (1998)")
    )
    dialogue = dialogue_from_turns(
        "cards",
        [
            {"role": "seeker", "text": "I loved Heat (1995)", "films": ["Heat (1995)"]},
            {"role": "recommender", "text": "Collateral (2004) or Ronin (1998)?",
             "films": ["Collateral (2004)", "Ronin (1998)"]},
            {"role": "seeker", "text": "seen it, loved it", "films": []},
            {"role": "seeker", "text": "anything with car chases?", "films": []},
        ],
    )  # fmt: skip
    matcher = TitleMatcher(bundled_split.catalog)
    seen = {}
    for mode in ce.MODES:
        agent = CardsSeenChat(cheap_recommender)
        replay = ce.Replayer(agent, cheap_recommender, matcher).replay(dialogue, 0, mode)
        seen[mode] = [agent.seen[m] for m in ("seen it, loved it", "anything with car chases?")]
        assert replay.final is not None and heat in replay.final.liked
        shown_by_chat = set(replay.final.shown) - {heat, collateral, ronin}
        assert not shown_by_chat & set(replay.final.liked), mode  # no card of the chat's taken as liked
    assert seen["seeker_only"] == [[], []]
    assert seen["with_recommender"] == [[collateral, ronin], [collateral, ronin]]


def test_both_replay_modes_through_the_chat(sample, bundled_split, cheap_recommender):
    dialogue = next(d for d in sample if d.dialogue_id == "6092")  # romantic comedies
    cheap_recommender.settings.chat.cards = ce.CARDS
    matcher = TitleMatcher(bundled_split.catalog)
    notting_hill, love_actually = (matcher.match(dialogue.films[k]).item_id for k in ("191932", "142573"))
    assert notting_hill is not None and love_actually is not None
    sent = [dialogue.shown_text(t) for t in dialogue.turns if t.role == "seeker"]
    answer = (
        "Yes, I have seen both.  Notting Hill is one of my favorites!  "
        "Love Actually (2003) was pretty good, too."
    )
    assert answer in sent and not any("@" in s for s in sent)
    carried = {}
    for mode in ce.MODES:
        agent = RecordingChat(cheap_recommender)
        replay = ce.Replayer(agent, cheap_recommender, matcher).replay(dialogue, 0, mode)
        turn_by_turn = [(m, shown) for m, shown in agent.calls if m in sent]
        assert [m for m, _ in turn_by_turn] == sent  # each seeker message, in order, once
        carried[mode] = dict(turn_by_turn)[answer]
        assert replay.scored and all(set(t.ranks) == set(ce.METHODS) for t in replay.scored)
        assert replay.final is not None and len(replay.seconds) == len(sent)
    assert {notting_hill, love_actually} <= set(carried["with_recommender"])
    assert (
        not {notting_hill, love_actually} & set(carried["seeker_only"]) or len(carried["seeker_only"]) >= 20
    )


def test_end_to_end_on_the_sample_writes_the_reports(sample, cheap_recommender, tmp_path):
    report = ce.evaluate_conversations(SAMPLE, cheap_recommender, dialogues=sample, seed=0)
    files = ce.write(report, tmp_path / "run")
    assert {f.name for f in files} == {"results.json", "report.md", "recall_by_method.png"}
    data = json.loads((tmp_path / "run" / "results.json").read_text())
    assert data["kind"] == "conversations" and data["complete"] and data["dialogues"] == 7
    assert len(data["sha256"]) == 64 and data["conversations_file"] == str(SAMPLE)
    films = data["films"]
    assert films["mentions"] == sum(len(d.films) for d in sample) == sum(films["by_kind"].values())
    assert films["missing"] == films["by_kind"].get("not in catalog", 0) + films["by_kind"].get(
        "year differs", 0
    )
    assert [m["mode"] for m in data["modes"]] == list(ce.MODES)
    for mode in data["modes"]:
        assert 0 < mode["targets_in_catalog"] <= mode["targets"]
        assert len(mode["without_cards"]) == min(mode["no_cards"], ce.EXAMPLES) and mode["chat_turns"] > 0
        for method in ce.METHODS:
            values = [mode["recall"][method][f"recall@{k}"] for k in ce.KS]
            assert values == sorted(values) and values[-1] <= 1
            assert mode["recall_all_targets"][method]["recall@20"] <= mode["recall"][method]["recall@20"]
        labelled = sum(len(d.labels) for d in sample)
        assert (
            0
            < mode["reading"]["named by the seeker"]["films"]
            <= mode["reading"]["all labelled"]["films"]
            <= labelled
        )
    text = (tmp_path / "run" / "report.md").read_text()
    assert films["missing"] > 0 and next(iter(films["missing_titles"])) in text
    assert "0.267" in text and "published, not measured" in text and "not in the catalog" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{ce.README_MARKERS[0]}\nold\n{ce.README_MARKERS[1]}\nend\n")
    from fewrec.eval.report import update_readme

    update_readme(readme, ce.readme_section(report, tmp_path / "run", readme), ce.README_MARKERS)
    assert "old" not in readme.read_text() and "run/recall_by_method.png" in readme.read_text()


# --------------------------------------------------------------------------- bad input
def test_other_formats_get_one_clear_line(tmp_path):
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n")
    wrong_keys = tmp_path / "other.jsonl"
    wrong_keys.write_text(json.dumps({"dialog": [], "movies": {}}) + "\n")
    broken = tmp_path / "broken.jsonl"
    record = json.loads(SAMPLE.read_text().splitlines()[0])
    del record["messages"][3]["senderWorkerId"]
    broken.write_text(SAMPLE.read_text().splitlines()[1] + "\n" + json.dumps(record) + "\n")
    for path, says in (
        (ratings, "not JSON"),
        (wrong_keys, "found dialog, movies"),
        (broken, "line 2"),
        (tmp_path / "absent.jsonl", "no such file"),
    ):
        with pytest.raises(ConversationFormatError) as caught:
            read_dialogues(path)
        message = str(caught.value)
        assert says in message and "expected JSONL" in message and "\n" not in message


def test_a_dialogue_without_seeker_messages_is_counted_and_skipped(sample, cheap_recommender):
    silent = dialogue_from_turns(
        "silent", [{"role": "recommender", "text": "Heat (1995)?", "films": ["Heat (1995)"]}]
    )
    report = ce.evaluate_conversations(SAMPLE, cheap_recommender, dialogues=[silent, sample[1]], seed=0)
    assert report.dialogues == 1 and report.dialogues_in_file == 2
    assert report.skipped == {"no seeker message": 1} and any("no seeker message" in n for n in report.notes)


def test_cli_checks_the_file_before_loading_anything(clean_env):
    bad = clean_env / "ratings.csv"
    bad.write_text("userId,movieId\n1,2\n")
    result = CliRunner().invoke(app, ["eval", "--conversations", str(bad)])
    assert isinstance(result.exception, ConversationFormatError) and "expected JSONL" in str(result.exception)
    result = CliRunner().invoke(app, ["eval", "--dialogues", "5"])
    assert isinstance(result.exception, EvalError) and "--conversations" in str(result.exception)
    result = CliRunner().invoke(app, ["eval", "--conversations", str(SAMPLE), "--dialogues", "0"])
    assert isinstance(result.exception, EvalError) and "--dialogues" in str(result.exception)
