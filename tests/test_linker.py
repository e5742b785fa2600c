# ruff: noqa: E501  (tables of messages read better one per line)
"""Finding titles in messages written in shapes nobody planned for: the title index
(fewrec/data/titles.py) and the message reader's choice of spans, sentiment and query
(fewrec/agent/understand.py). Reader-only, on the bundled catalog: no models needed."""

from __future__ import annotations

import pytest

from fewrec.agent.understand import MessageReader
from fewrec.data.titles import TitleIndex, fold, name_key, title_names


def linked(reader: MessageReader, text: str) -> dict[str, list[str]]:
    """sentiment -> the titles linked (unresolved ambiguity shows every candidate)."""
    out: dict[str, list[str]] = {}
    for mention in reader.read(text).titles:
        out.setdefault(mention.sentiment, []).extend(reader.catalog.title(m) for m in mention.matches)
    return out


LIST = ["Toy Story 2 (1999)", "Being John Malkovich (1999)", "L.A. Confidential (1997)", "Magnolia (1999)"]


@pytest.mark.parametrize(
    "message",
    [
        "Toy Story 2, Being John Malkovich, L.A. Confidential, and Magnolia are movies I liked. "
        "Can you suggest something I might like?",
        "I watched the films Toy Story 2, Being John Malkovich, L.A. Confidential and Magnolia and loved them",
        "my favourites: Toy Story 2; Being John Malkovich; L.A. Confidential; Magnolia",
        "i loved toy story 2 being john malkovich la confidential and magnolia what should i watch next",
        "Toy Story 2 (1999), Being John Malkovich (1999), L.A. Confidential (1997) and Magnolia (1999)",
        "Films I enjoyed:\n- Toy Story 2\n- Being John Malkovich\n- L.A. Confidential\n- Magnolia\nWhat else?",
        'I really liked "Toy Story 2", "Being John Malkovich", "L.A. Confidential" and "Magnolia"',
        "TOY STORY 2, BEING JOHN MALKOVICH, L.A. CONFIDENTIAL AND MAGNOLIA. what now?",
        "I loved Toy Story 2 and Being John Malcovich and L.A. Confidental and Magnolia",  # two typos
    ],
)
def test_a_list_of_titles_is_found_whatever_the_sentence_shape(reader, message):
    assert linked(reader, message) == {"like": LIST}
    assert reader.read(message).query == ""  # nothing of it is a meaning query


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Matrix, The (1999); Heat (1995)", {"like": ["Matrix, The (1999)", "Heat (1995)"]}),
        ("i liked the matrix and amelie", {"like": ["Matrix, The (1999)", "Amelie (Fabuleux destin d'Amélie Poulain, Le) (2001)"]}),
        ("I loved Se7en", {"like": ["Seven (a.k.a. Se7en) (1995)"]}),
        ("Beauty and the Beast (1946) was wonderful", {"like": ["Beauty and the Beast (La belle et la bête) (1946)"]}),
        ("I loved Terminator 2", {"like": ["Terminator 2: Judgment Day (1991)"]}),
        ("I loved Schindlers List", {"like": ["Schindler's List (1993)"]}),
        ("I loved Alien and hated Titanic", {"like": ["Alien (1979)"], "dislike": ["Titanic (1997)", "Titanic (1953)"]}),
        ("Not a fan of Fargo, but I loved Heat", {"dislike": ["Fargo (1996)"], "like": ["Heat (1995)"]}),
        ("Alien and Heat were great but Fargo bored me", {"like": ["Alien (1979)", "Heat (1995)"], "dislike": ["Fargo (1996)"]}),
        ("I've seen Alien and loved it", {"like": ["Alien (1979)"]}),
        ("anything but Titanic", {"avoid": ["Titanic (1997)", "Titanic (1953)"]}),
    ],
)  # fmt: skip
def test_names_forms_and_feelings(reader, message, expected):
    assert linked(reader, message) == expected


@pytest.mark.parametrize(
    ("message", "title"),
    [
        ("Jaws still holds up", "Jaws (1975)"),
        ("Grease just annoyed me", "Grease (1978)"),
        ("Up had me in tears, in a good way", "Up (2009)"),
        ("Men in Black was forgettable", "Men in Black (a.k.a. MIB) (1997)"),
        ("We saw it last week. Heat dragged on forever", "Heat (1995)"),
    ],
)
def test_an_everyday_word_title_opening_a_sentence_as_its_subject_is_a_title(reader, message, title):
    assert [t for titles in linked(reader, message).values() for t in titles] == [title]


@pytest.mark.parametrize(
    "message",
    ["It was great", "Heat the oven first", "Nothing was on", "Up next: comedies", "Love stories, please"],
)
def test_an_opening_everyday_word_without_a_predicate_after_it_is_no_title(reader, message):
    """The rule's cost: "Home is where I watch films" reads *Home*. On the 5,600 seeker messages
    of ReDial's train and valid files it linked no word that was not a film."""
    assert linked(reader, message) == {}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("I loved Up and Heat", {"like": ["Up (2009)", "Heat (1995)"]}),
        ("i loved up, heat and alien", {"like": ["Up (2009)", "Heat (1995)", "Alien (1979)"]}),
        ("I watched It with my sister and Her with my wife", {"watched": ["It (2017)", "Her (2013)"]}),
        ('My favourite is "Up"', {"like": ["Up (2009)"]}),
        ("Up (2009) is great", {"like": ["Up (2009)"]}),
        ("It was great. Up next, something with heat?", {}),
        ("I want to wind up with something that makes my heart race, it should be fun", {}),
        ("i loved it and her too", {}),
        ("I want an alien invasion film", {}),
        ("Can you suggest something to watch? I might like a big adventure", {}),
    ],
)
def test_titles_that_are_everyday_words_need_evidence(reader, message, expected):
    assert linked(reader, message) == expected


@pytest.mark.parametrize(
    "message",
    [
        "Can you suggest something to watch?",
        "what should I watch next?",
        "hi! any recommendations please? something I might like",
        "Please recommend me a good movie to see tonight, thanks!",
        "What else would I like?",
        "?!?! ... !!!",
        "hello",
    ],
)
def test_request_boilerplate_is_never_a_meaning_query(reader, message):
    understood = reader.read(message)
    assert understood.query == "" and not understood.titles


def test_content_words_remain_a_query(reader):
    assert reader.read("I loved Alien, something dark and atmospheric please").query == "dark atmospheric"
    assert reader.read("any film about time travel?").query == "time travel"
    assert (
        reader.read("I loved Heat. In the mood for something time travel, mafia.").query
        == "time travel mafia"
    )


def test_titles_in_another_script_give_no_query_and_are_flagged(reader):
    understood = reader.read("Я люблю Матрицу и Титаник")
    assert understood.other_script and understood.query == "" and not understood.titles
    assert reader.read("千と千尋の神隠し").other_script


def test_an_unknown_title_in_a_list_is_reported_not_searched(reader):
    understood = reader.read("Heat, The Barbarian Invasionz, and Fargo are movies I liked")
    missing = [m for m in understood.titles if not m.matches]
    assert [m.phrase for m in missing] == ["The Barbarian Invasionz"] and understood.query == ""


def test_fifty_titles_in_one_message(reader, bundled_split):
    frame = bundled_split.catalog.frame
    # distinctive titles (three words or more, unique name) so each is one item
    picked = [t for t in frame["title"] if len(name_key(t).split()) >= 4][:50]
    message = "I liked " + ", ".join(picked) + ". What next?"
    understood = reader.read(message)
    found = {reader.catalog.title(m) for mention in understood.titles for m in mention.matches}
    assert set(picked) <= found, sorted(set(picked) - found)[:5]
    assert understood.query == ""


def test_a_long_message_is_read_whole_without_blowing_up(reader):
    message = ("I loved Alien. " + "blah " * 2000)[:10_000]
    understood = reader.read(message)
    assert [reader.catalog.title(m) for t in understood.titles for m in t.matches] == ["Alien (1979)"]


def test_title_keys():
    assert fold("Amélie's & Co") == "amelies  and  co"
    assert name_key("Matrix, The") == "the matrix"
    _, other, _ = title_names("Léon: The Professional (a.k.a. The Professional) (Léon) (1994)")
    assert "the professional" in other and "leon" in other
    index = TitleIndex(["Heat (1995)", "Heat, The (2013)", "Alien: Resurrection (1997)"], [1995, 2013, 1997])
    assert index.lookup("heat") == [0] and index.lookup("The Heat") == [1]
    assert index.lookup("Heat (2013)") == [1]  # a year reaches weaker names too
    assert index.lookup("alien") == [2]  # the part before a colon, when nothing else has the name
    assert index.fuzzy("Alien Resurection") is not None and index.fuzzy("Heet") is None
