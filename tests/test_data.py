"""Tests of fewrec.data: the bundled split, the cache, every loader, and error messages."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fewrec.data
from fewrec.data import (
    BUNDLED_DIR,
    DatasetError,
    FewrecError,
    UnknownIdError,
    detect_format,
    load_dataset,
    load_raw,
)
from fewrec.data.loaders import (
    ML100K_GENRES,
    load_amazon,
    load_generic_csv,
    load_movielens_1m,
    load_movielens_100k,
    load_movielens_csv,
)

BUNDLED_STATS = {"users": 610, "items": 3650, "interactions": 90274}


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def write_gz(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode("utf-8")))
    return path


def json_lines(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def five_core(frame: pd.DataFrame, min_count: int = 5) -> pd.DataFrame:
    """An independent iterative k-core filter on raw MovieLens columns."""
    while True:
        item_n = frame.groupby("movieId")["userId"].transform("size")
        user_n = frame.groupby("userId")["movieId"].transform("size")
        keep = (item_n >= min_count) & (user_n >= min_count)
        if keep.all():
            return frame
        frame = frame[keep]


def interaction_rows(dataset) -> set[tuple]:
    f = dataset.interactions.frame
    return set(zip(f["user_id"], f["item_id"], f["rating"], f["timestamp"], strict=True))


# --------------------------------------------------------------------------- bundled split


def test_bundled_split_stats_without_cache(bundled_split):
    stats = bundled_split.stats()
    assert {k: stats[k] for k in BUNDLED_STATS} == BUNDLED_STATS
    assert stats["train"] == BUNDLED_STATS["interactions"] - 2 * BUNDLED_STATS["users"]
    assert bundled_split.name == "ml-latest-small"


def test_bundled_split_stats_with_cache(tmp_path):
    split = load_dataset(cache_dir=tmp_path)
    assert {k: split.stats()[k] for k in BUNDLED_STATS} == BUNDLED_STATS
    assert len(list((tmp_path / "splits").iterdir())) == 1


def test_bundled_stats_match_independent_five_core(bundled_ratings):
    core = five_core(bundled_ratings)
    assert core["userId"].nunique() == BUNDLED_STATS["users"]
    assert core["movieId"].nunique() == BUNDLED_STATS["items"]
    assert len(core) == BUNDLED_STATS["interactions"]


def test_split_targets_are_last_by_timestamp_then_item_id(bundled_split, bundled_ratings):
    ordered = five_core(bundled_ratings).sort_values(["userId", "timestamp", "movieId"])
    by_user = {u: g["movieId"].to_numpy() for u, g in ordered.groupby("userId")}
    raw_item = bundled_split.item_ids
    assert sorted(by_user) == bundled_split.user_ids.tolist()
    for u, user_id in enumerate(bundled_split.user_ids.tolist()):
        expected = by_user[user_id]
        assert raw_item[bundled_split.test_item[u]] == expected[-1], user_id
        assert raw_item[bundled_split.valid_item[u]] == expected[-2], user_id
        assert raw_item[bundled_split.train_sequence(u)].tolist() == expected[:-2].tolist()


def test_split_ties_in_timestamp_are_broken_by_item_id(bundled_split, bundled_ratings):
    core = five_core(bundled_ratings)
    last_time = core.groupby("userId")["timestamp"].transform("max")
    tied = core[core["timestamp"] == last_time].groupby("userId")["movieId"].agg(["size", "max"])
    tied = tied[tied["size"] > 1]
    assert not tied.empty, "the bundled data should hold users with tied last timestamps"
    for user_id, row in tied.head(20).iterrows():
        u = bundled_split.user_index(user_id)
        assert bundled_split.item_ids[bundled_split.test_item[u]] == row["max"]


@pytest.mark.parametrize("user_id", [1, 2, 100, 414, 610])
def test_histories_and_few_shot_views(bundled_split, user_id):
    u = bundled_split.user_index(user_id)
    train = bundled_split.train_sequence(u)
    test_history = bundled_split.history(u, "test")
    assert test_history[-1] == bundled_split.valid_item[u]
    assert test_history[:-1].tolist() == train.tolist()
    assert bundled_split.history(u, "valid").tolist() == train.tolist()
    few = bundled_split.history(u, "valid", last=3)
    assert 1 <= len(few) <= 3
    assert few.tolist() == train[-3:].tolist()
    # MovieLens has one rating per (user, movie): a target never appears in its history.
    assert bundled_split.test_item[u] not in test_history
    assert bundled_split.valid_item[u] not in train
    times = bundled_split.train_times(u)
    assert np.all(np.diff(times) >= 0)
    assert times[-1] <= bundled_split.valid_time[u] <= bundled_split.test_time[u]


def test_history_rejects_bad_arguments(bundled_split):
    with pytest.raises(ValueError, match="unknown split"):
        bundled_split.history(0, "train")
    with pytest.raises(ValueError, match="at least one"):
        bundled_split.history(0, "valid", last=0)


def test_string_user_id_is_accepted_for_integer_ids(bundled_split):
    assert bundled_split.user_index("414") == bundled_split.user_index(414)
    assert bundled_split.has_user(1) and not bundled_split.has_user(999999)


# --------------------------------------------------------------------------- cache


def test_second_load_is_served_from_cache(tmp_path, monkeypatch, bundled_split):
    first = load_dataset(cache_dir=tmp_path)

    def fail(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(fewrec.data, "leave_one_out", fail)
    monkeypatch.setattr(fewrec.data, "load_raw", fail)
    second = load_dataset(cache_dir=tmp_path)
    assert second.stats() == first.stats() == bundled_split.stats()
    pd.testing.assert_frame_equal(second.train, bundled_split.train, check_dtype=False)
    for name in ("user_ids", "valid_item", "test_item", "valid_time", "test_time"):
        np.testing.assert_array_equal(getattr(second, name), getattr(bundled_split, name))
    assert second.catalog.get(1) == bundled_split.catalog.get(1)
    assert second.catalog.get(1).tags  # list columns survive the parquet round trip
    u = second.user_index(1)
    assert second.history(u, "test").tolist() == bundled_split.history(u, "test").tolist()


def test_changed_source_file_invalidates_cache(tmp_path):
    data = tmp_path / "ml"
    shutil.copytree(BUNDLED_DIR, data)
    cache_dir = tmp_path / "cache"
    before = load_dataset(data, cache_dir=cache_dir)
    assert before.stats() == load_dataset(BUNDLED_DIR, cache_dir=None).stats()

    ratings = pd.read_csv(data / "ratings.csv")
    ratings[ratings["userId"] != 1].to_csv(data / "ratings.csv", index=False)
    after = load_dataset(data, cache_dir=cache_dir)
    assert after.stats()["users"] == before.stats()["users"] - 1
    assert after.stats()["interactions"] < before.stats()["interactions"]
    assert not after.has_user(1)
    assert len(list((cache_dir / "splits").iterdir())) == 2


def test_split_settings_are_part_of_cache_key(tmp_path):
    default = load_dataset(cache_dir=tmp_path)
    stricter = load_dataset(cache_dir=tmp_path, split=fewrec.data.SplitSettings(min_count=10))
    assert stricter.n_users < default.n_users
    assert stricter.n_items < default.n_items


@pytest.mark.parametrize("victim", ["catalog.parquet", "train.parquet", "arrays.npz", "meta.json"])
def test_corrupted_cache_entry_is_ignored_and_rebuilt(tmp_path, monkeypatch, victim):
    load_dataset(cache_dir=tmp_path)
    (entry,) = (tmp_path / "splits").iterdir()
    target = entry / victim
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])

    calls = []
    real_load_raw = fewrec.data.load_raw

    def counting_load_raw(*args, **kwargs):
        calls.append(args)
        return real_load_raw(*args, **kwargs)

    monkeypatch.setattr(fewrec.data, "load_raw", counting_load_raw)
    rebuilt = load_dataset(cache_dir=tmp_path)
    assert {k: rebuilt.stats()[k] for k in BUNDLED_STATS} == BUNDLED_STATS
    assert len(calls) == 1
    assert target.read_bytes() != data[: len(data) // 2]  # the entry was rewritten

    monkeypatch.setattr(fewrec.data, "load_raw", None)  # now it must come from the cache
    assert load_dataset(cache_dir=tmp_path).stats() == rebuilt.stats()


# --------------------------------------------------------------------------- loaders


@pytest.fixture
def movielens_dir(tmp_path) -> Path:
    root = tmp_path / "ml-tiny"
    write(
        root / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,10,4.0,100\n1,20,3.5,200\n2,10,5.0,150\n",
    )
    write(
        root / "movies.csv",
        "movieId,title,genres\n"
        "10,Heat (1995),Action|Crime|Thriller\n"
        '20,"American President, The (1995)",Comedy|Drama|Romance\n'
        "30,Untitled Thing,(no genres listed)\n",
    )
    write(
        root / "tags.csv",
        "userId,movieId,tag,timestamp\n1,10,Heist,1\n2,10,heist,2\n1,10,  Pacino ,3\n",
    )
    return root


def test_movielens_csv_loader(movielens_dir):
    ds = load_movielens_csv(movielens_dir)
    assert ds.name == "ml-tiny"
    assert len(ds.catalog) == 3
    heat = ds.catalog.get(10)
    assert (heat.title, heat.year, heat.genres) == (
        "Heat (1995)",
        1995,
        ["Action", "Crime", "Thriller"],
    )
    assert heat.tags == ["heist", "pacino"]  # lower-cased, stripped, most used first
    assert ds.catalog.get("20").title == "American President, The (1995)"
    untitled = ds.catalog.get(30)
    assert untitled.year is None and untitled.genres == [] and untitled.tags == []
    assert interaction_rows(ds) == {(1, 10, 4.0, 100), (1, 20, 3.5, 200), (2, 10, 5.0, 150)}
    assert ds.interactions.frame["user_id"].dtype == np.int64
    assert ds.stats()["users"] == 2 and ds.stats()["items_rated"] == 2


def test_movielens_csv_warns_about_tags_of_unknown_items(movielens_dir, caplog):
    with (movielens_dir / "tags.csv").open("a") as f:
        f.write("1,999,orphan,4\n2,999,orphan,5\n")
    ds = load_movielens_csv(movielens_dir)
    assert ds.catalog.get(10).tags == ["heist", "pacino"]  # the known items keep theirs
    assert "orphan" not in {t for item in (10, 20, 30) for t in ds.catalog.get(item).tags}
    messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("2 tag rows" in m and "999" in m and "tags.csv" in m for m in messages), messages


def test_movielens_csv_without_tags_file(movielens_dir):
    (movielens_dir / "tags.csv").unlink()
    assert load_movielens_csv(movielens_dir).catalog.get(10).tags == []


ML100K_FLAGS = {"242": ["Animation", "Children", "Comedy"], "302": ["unknown", "Crime", "Mystery"]}


def _ml100k_item_line(item: str, title: str, genres: list[str]) -> str:
    flags = "|".join("1" if g in genres else "0" for g in ML100K_GENRES)
    return f"{item}|{title}|01-Jan-1995||http://example.org/{item}|{flags}\n"


@pytest.fixture
def ml100k_dir(tmp_path) -> Path:
    root = tmp_path / "ml-100k"
    write(root / "u.data", "196\t242\t3\t881250949\n186\t302\t4\t891717742\n196\t302\t1\t881250950\n")
    write(
        root / "u.item",
        _ml100k_item_line("242", "Kolya (1996)", ML100K_FLAGS["242"])
        + _ml100k_item_line("302", "Café (1995)", ML100K_FLAGS["302"]),
        encoding="latin-1",
    )
    return root


def test_movielens_100k_loader(ml100k_dir):
    ds = load_movielens_100k(ml100k_dir)
    cafe = ds.catalog.get(302)
    assert cafe.title == "Café (1995)" and cafe.year == 1995
    assert cafe.genres == ["Crime", "Mystery"]  # 'unknown' is not a genre
    assert ds.catalog.get(242).genres == ["Animation", "Children", "Comedy"]
    assert interaction_rows(ds) == {
        (196, 242, 3.0, 881250949),
        (186, 302, 4.0, 891717742),
        (196, 302, 1.0, 881250950),
    }


def test_movielens_100k_latin1_read_as_utf8_names_the_line(ml100k_dir):
    with pytest.raises(DatasetError) as info:
        load_movielens_100k(ml100k_dir, encoding="utf-8")
    message = str(info.value)
    assert "u.item" in message and "line 2" in message and "0xe9" in message
    assert info.value.line == 2


@pytest.fixture
def ml1m_dir(tmp_path) -> Path:
    root = tmp_path / "ml-1m"
    write(root / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    write(
        root / "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)::Comedy|Romance\n",
        encoding="latin-1",
    )
    return root


def test_movielens_1m_loader(ml1m_dir):
    ds = load_movielens_1m(ml1m_dir)
    amelie = ds.catalog.get(661)
    assert amelie.title == "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)"
    assert (amelie.year, amelie.genres) == (2001, ["Comedy", "Romance"])
    assert ds.catalog.get(1193).title == "One Flew Over the Cuckoo's Nest (1975)"
    assert interaction_rows(ds) == {
        (1, 1193, 5.0, 978300760),
        (1, 661, 3.0, 978302109),
        (2, 1193, 4.0, 978298413),
    }


REVIEWS = [
    {"reviewerID": "A1", "asin": "B001", "overall": 5.0, "unixReviewTime": 1400000000},
    {"reviewerID": "A1", "asin": "B002", "overall": 3.0, "unixReviewTime": 1400000100},
    {"reviewerID": "A2", "asin": "B001", "overall": 4.0, "unixReviewTime": 1400000200},
    {"reviewerID": "A2", "asin": "B003", "overall": 2.0, "unixReviewTime": 1400000300},
]


@pytest.mark.parametrize("gz", [False, True])
def test_amazon_loader_with_2018_meta(tmp_path, gz):
    reviews = tmp_path / ("Books_5.json.gz" if gz else "Books_5.json")
    (write_gz if gz else write)(reviews, json_lines(REVIEWS))
    meta = write_gz(
        tmp_path / "meta_Books.json.gz",
        json_lines(
            [
                {"asin": "B001", "title": "A Good Book", "category": ["Books", "Fiction"],
                 "description": ["First part.", "Second part."]},
                {"asin": "B002", "title": "Another Book", "category": ["Books"]},
                {"asin": "B999", "title": "Never Reviewed"},
            ]
        ),
    )  # fmt: skip
    ds = load_amazon(reviews, meta)
    assert ds.name == "Books_5"
    assert len(ds.catalog) == 3  # only reviewed items
    first = ds.catalog.get("B001")
    assert (first.title, first.genres, first.year) == ("A Good Book", ["Books", "Fiction"], None)
    assert first.text == "First part. Second part."
    assert ds.catalog.get("B002").genres == ["Books"]
    assert ds.catalog.get("B003").title == "B003"  # no meta: the ASIN stands in
    assert "B999" not in ds.catalog
    assert interaction_rows(ds) == {
        (r["reviewerID"], r["asin"], r["overall"], r["unixReviewTime"]) for r in REVIEWS
    }


def test_amazon_loader_with_2014_meta_categories_and_python_literals(tmp_path):
    folder = tmp_path / "amazon"
    write(folder / "reviews_Books_5.json", json_lines(REVIEWS))
    write_gz(
        folder / "meta_Books.json.gz",
        "{'asin': 'B001', 'title': 'Old Book', 'categories': [['Books', 'Literature']]}\n"
        "{'asin': 'B003', 'categories': [['Books']]}\n",
    )
    assert detect_format(folder) == "amazon"
    ds = load_raw(folder)
    assert ds.name == "reviews_Books_5"
    old = ds.catalog.get("B001")
    assert old.title == "Old Book"
    assert old.genres == ["Books", "Literature"]
    assert ds.catalog.get("B003").genres == ["Books"]
    assert ds.catalog.get("B003").title == "B003"


def test_amazon_loader_without_meta(tmp_path):
    ds = load_amazon(write(tmp_path / "r.json", json_lines(REVIEWS)))
    assert sorted(ds.catalog.ids.tolist()) == ["B001", "B002", "B003"]
    assert ds.catalog.get("B002").title == "B002"


def test_generic_csv_loader_with_custom_columns(tmp_path):
    events = write(
        tmp_path / "events.csv",
        "who,what,stars,when\nu1,i1,4,10\nu1,i2,5,20\nu2,i1,3,15\n",
    )
    items = write(
        tmp_path / "things.csv",
        "what,name,kinds,blurb\ni1,Thing One (2001),Tools|Garden,A sturdy thing.\n"
        "i2,Thing Two,,\ni3,Thing Three,Toys,\n",
    )
    ds = load_generic_csv(
        events, items, user_col="who", item_col="what", rating_col="stars", timestamp_col="when",
        title_col="name", genres_col="kinds", text_col="blurb",
    )  # fmt: skip
    assert ds.name == "events"
    one = ds.catalog.get("i1")
    assert (one.title, one.year, one.genres, one.text) == (
        "Thing One (2001)",
        2001,
        ["Tools", "Garden"],
        "A sturdy thing.",
    )
    assert ds.catalog.get("i2").genres == [] and ds.catalog.get("i2").text == ""
    assert len(ds.catalog) == 3
    assert interaction_rows(ds) == {
        ("u1", "i1", 4.0, 10),
        ("u1", "i2", 5.0, 20),
        ("u2", "i1", 3.0, 15),
    }


def test_generic_csv_defaults_without_items_or_ratings(tmp_path):
    events = write(tmp_path / "log.csv", "user_id,item_id,timestamp\n7,3,1\n7,4,2\n8,3,3\n")
    assert detect_format(events) == "csv"
    ds = load_raw(events)
    assert ds.catalog.get(3).title == "3"
    assert set(ds.interactions.frame["rating"]) == {1.0}
    assert ds.interactions.frame["item_id"].dtype == np.int64


def test_generic_csv_through_load_raw_with_options(tmp_path):
    events = write(tmp_path / "ev.csv", "u;i;t\na;x;1\nb;x;2\n")
    ds = load_raw(events, user_col="u", item_col="i", timestamp_col="t", sep=";")
    assert interaction_rows(ds) == {("a", "x", 1.0, 1), ("b", "x", 1.0, 2)}


def test_detect_format_and_load_raw_for_each_layout(movielens_dir, ml100k_dir, ml1m_dir, tmp_path):
    amazon = write(tmp_path / "amz" / "Books_5.json", json_lines(REVIEWS))
    cases = {
        movielens_dir: ("movielens", "ml-tiny", 3),
        ml100k_dir: ("ml-100k", "ml-100k", 3),
        ml1m_dir: ("ml-1m", "ml-1m", 3),
        amazon.parent: ("amazon", "Books_5", 4),
        amazon: ("amazon", "Books_5", 4),
    }
    for path, (fmt, name, n) in cases.items():
        assert detect_format(path) == fmt, path
        ds = load_raw(path)
        assert (ds.name, len(ds.interactions)) == (name, n), path
        assert load_raw(str(path), format=fmt).name == name
    assert detect_format(BUNDLED_DIR) == "movielens"
    assert load_raw().name == load_raw("bundled").name == "ml-latest-small"


def test_detect_format_failures_name_the_path(tmp_path):
    (tmp_path / "README").write_text("hello")
    with pytest.raises(DatasetError, match="no known dataset layout") as info:
        detect_format(tmp_path)
    assert str(tmp_path) in str(info.value)
    odd = write(tmp_path / "data.parquet", "x")
    with pytest.raises(DatasetError, match="pass --format") as info:
        detect_format(odd)
    assert "data.parquet" in str(info.value)
    with pytest.raises(DatasetError, match="not found"):
        detect_format(tmp_path / "nope")


def test_load_dataset_on_tiny_data_too_sparse_for_split(movielens_dir):
    with pytest.raises(DatasetError, match="5-core"):
        load_dataset(movielens_dir)


# --------------------------------------------------------------------------- bad input


def _movielens_with_ratings(tmp_path: Path, ratings: str, encoding: str = "utf-8") -> Path:
    root = tmp_path / "ml-bad"
    write(root / "movies.csv", "movieId,title,genres\n10,Heat (1995),Action\n20,Up (2009),Comedy\n")
    write(root / "ratings.csv", ratings, encoding=encoding)
    return root


def _error(root: Path, **options) -> DatasetError:
    with pytest.raises(DatasetError) as info:
        load_raw(root, **options)
    assert isinstance(info.value, FewrecError)
    return info.value


def test_missing_file_is_named(tmp_path):
    root = _movielens_with_ratings(tmp_path, "userId,movieId,rating,timestamp\n1,10,4,1\n")
    (root / "movies.csv").unlink()
    error = _error(root, format="movielens")
    assert "movies.csv" in str(error) and "file not found" in str(error)


def test_empty_file(tmp_path):
    error = _error(_movielens_with_ratings(tmp_path, ""))
    assert "ratings.csv" in str(error) and "empty" in str(error)


def test_whitespace_only_file(tmp_path):
    error = _error(_movielens_with_ratings(tmp_path, "\n  \n"))
    assert "ratings.csv" in str(error) and "empty" in str(error)


def test_header_only_file(tmp_path):
    error = _error(_movielens_with_ratings(tmp_path, "userId,movieId,rating,timestamp\n"))
    assert "ratings.csv" in str(error) and "header but no rows" in str(error)


def test_missing_column(tmp_path):
    error = _error(_movielens_with_ratings(tmp_path, "userId,movieId,rating\n1,10,4\n"))
    message = str(error)
    assert "ratings.csv" in message and "'timestamp'" in message and "missing column" in message
    assert "found 'userId', 'movieId', 'rating'" in message
    assert "with no times, write each user's position" in message  # what to do about it


def test_a_missing_column_other_than_the_time_gives_no_advice_about_times(tmp_path):
    message = str(_error(_movielens_with_ratings(tmp_path, "userId,rating,timestamp\n1,4,10\n")))
    assert "'movieId'" in message and "position" not in message


def test_non_numeric_rating_reports_line_and_column(tmp_path):
    ratings = "userId,movieId,rating,timestamp\n1,10,4,1\n1,20,5,2\n2,10,abc,3\n2,20,oops,4\n"
    error = _error(_movielens_with_ratings(tmp_path, ratings))
    message = str(error)
    assert "ratings.csv" in message and "line 4" in message and "column 'rating'" in message
    assert "expected a number, got 'abc'" in message and "2 bad value(s)" in message
    assert (error.line, error.column) == (4, "rating")


def test_non_numeric_timestamp_reports_line_and_column(tmp_path):
    ratings = "userId,movieId,rating,timestamp\n1,10,4,1\n1,20,5,yesterday\n"
    error = _error(_movielens_with_ratings(tmp_path, ratings))
    message = str(error)
    assert "line 3" in message and "column 'timestamp'" in message
    assert "expected an integer, got 'yesterday'" in message


def test_fractional_timestamp_is_rejected(tmp_path):
    ratings = "userId,movieId,rating,timestamp\n1,10,4,1\n1,20,5,2.5\n"
    error = _error(_movielens_with_ratings(tmp_path, ratings))
    assert error.line == 3 and "expected an integer, got '2.5'" in str(error)


@pytest.mark.parametrize(
    ("ratings", "line"),
    [
        ("userId,movieId,rating,timestamp\n1,10,4,1\n\n1,20,five,2\n", 4),
        ("userId,movieId,rating,timestamp\n1,10,4,1\n   \n\n1,20,five,2\n\n", 5),
        ("\n\nuserId,movieId,rating,timestamp\n1,10,4,1\n1,20,five,2\n", 5),
    ],
    ids=["blank", "whitespace-and-trailing", "leading"],
)
def test_line_number_counts_blank_lines(tmp_path, ratings, line):
    error = _error(_movielens_with_ratings(tmp_path, ratings))
    assert error.line == line, str(error)
    assert f"line {line}" in str(error)


def test_blank_lines_are_skipped_not_loaded(tmp_path):
    ratings = "\nuserId,movieId,rating,timestamp\n1,10,4,1\n\n  \n1,20,5,2\n\n"
    ds = load_raw(_movielens_with_ratings(tmp_path, ratings))
    assert interaction_rows(ds) == {(1, 10, 4.0, 1), (1, 20, 5.0, 2)}


def test_blank_line_in_headerless_file(ml1m_dir):
    write(ml1m_dir / "ratings.dat", "1::1193::5::978300760\n\n1::661::x::978302109\n")
    error = _error(ml1m_dir)
    assert error.line == 3, str(error)


def test_headerless_format_line_numbers_start_at_one(ml1m_dir):
    write(ml1m_dir / "ratings.dat", "1::1193::5::978300760\n1::661::x::978302109\n")
    error = _error(ml1m_dir)
    assert "ratings.dat" in str(error) and "line 2" in str(error) and "column 'rating'" in str(error)


def test_empty_id_is_reported(tmp_path):
    error = _error(_movielens_with_ratings(tmp_path, "userId,movieId,rating,timestamp\n1,10,4,1\n,20,5,2\n"))
    assert "line 3" in str(error) and "column 'userId'" in str(error) and "expected an id" in str(error)


def test_duplicate_rows_error_by_default_and_drop_keeps_first(tmp_path):
    ratings = "userId,movieId,rating,timestamp\n1,10,4,1\n1,20,5,2\n2,10,3,3\n1,10,1,1\n"
    root = _movielens_with_ratings(tmp_path, ratings)
    error = _error(root)
    message = str(error)
    assert "ratings.csv" in message and "line 5" in message and "first seen at line 2" in message
    assert "duplicates='drop'" in message
    ds = load_raw(root, duplicates="drop")
    assert len(ds.interactions) == 3
    assert interaction_rows(ds) == {(1, 10, 4.0, 1), (1, 20, 5.0, 2), (2, 10, 3.0, 3)}


def test_duplicate_movie_ids_in_catalog(tmp_path):
    root = _movielens_with_ratings(tmp_path, "userId,movieId,rating,timestamp\n1,10,4,1\n")
    write(root / "movies.csv", "movieId,title,genres\n10,Heat (1995),Action\n10,Heat again,Action\n")
    error = _error(root)
    assert "movies.csv" in str(error) and "line 3" in str(error) and "duplicate movie id" in str(error)


def test_undecodable_byte_in_utf8_file_reports_line(tmp_path):
    root = tmp_path / "ml-bad"
    write(root / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4,1\n")
    (root / "movies.csv").write_bytes(
        b"movieId,title,genres\n10,Heat (1995),Action\n20,Caf\xe9 (1995),Comedy\n"
    )
    error = _error(root)
    message = str(error)
    assert "movies.csv" in message and "line 3" in message and "0xe9" in message
    assert "utf-8" in message


def test_bad_json_line_in_amazon_reviews(tmp_path):
    text = json_lines(REVIEWS[:2]) + "\n{not json\n"
    error = _error(write(tmp_path / "r.json", text))
    assert "r.json" in str(error) and "line 4" in str(error) and "JSON" in str(error)
    missing = json_lines([*REVIEWS[:1], {"reviewerID": "A9", "asin": "B9", "overall": 1.0}])
    error = _error(write(tmp_path / "m.json", missing))
    assert "line 2" in str(error) and "'unixReviewTime'" in str(error)


def test_non_numeric_rating_in_amazon_reports_json_line(tmp_path):
    bad = [*REVIEWS[:2], {**REVIEWS[2], "overall": "great"}]
    text = json_lines(bad[:1]) + "\n" + json_lines(bad[1:])
    error = _error(write(tmp_path / "r.json", text))
    assert "line 4" in str(error) and "column 'overall'" in str(error)


def test_invalid_gzip(tmp_path):
    error = _error(write(tmp_path / "r.json.gz", "plain text, not gzip"))
    assert "r.json.gz" in str(error) and "gzip" in str(error)


def test_unknown_format_name(movielens_dir):
    error = _error(movielens_dir, format="parquet")
    assert "unknown dataset format 'parquet'" in str(error)
    assert "movielens" in str(error) and "ml-100k" in str(error)


def test_an_unknown_format_name_is_refused_for_the_bundled_data_too(tmp_path):
    load_dataset(None, cache_dir=tmp_path)  # a cached split, which answers without a loader
    cached = lambda: load_dataset(None, "parquet", cache_dir=tmp_path)  # noqa: E731
    for call in (lambda: load_raw(None, "parquet"), cached):
        with pytest.raises(DatasetError, match="unknown dataset format 'parquet'; known: movielens"):
            call()


def test_missing_dataset_path(tmp_path):
    missing = tmp_path / "does-not-exist"
    for call in (lambda: load_raw(missing), lambda: load_dataset(missing, cache_dir=tmp_path)):
        with pytest.raises(DatasetError) as info:
            call()
        assert str(missing) in str(info.value) and "not found" in str(info.value)


def test_unknown_user_id(bundled_split):
    with pytest.raises(UnknownIdError) as info:
        bundled_split.user_index(999999)
    assert isinstance(info.value, KeyError) and isinstance(info.value, FewrecError)
    assert str(info.value).startswith("unknown user id 999999")
    assert "not in the dataset" in str(info.value)


def test_unknown_item_id(bundled_split):
    with pytest.raises(UnknownIdError, match="unknown item id 999999999"):
        bundled_split.catalog.get(999999999)
    with pytest.raises(UnknownIdError, match="unknown item id 'abc'"):
        bundled_split.catalog.get("abc")
    with pytest.raises(UnknownIdError, match="unknown item id"):
        bundled_split.item_index(999999999)
    assert bundled_split.catalog.get("1").title == "Toy Story (1995)"


# --------------------------------------------------------------------------- title matching


def test_match_title_plain_title(bundled_split):
    matches, suggestions = bundled_split.catalog.match_title("Toy Story")
    assert matches == [1] and suggestions == []
    assert bundled_split.catalog.match_title("toy story (1995)") == ([1], [])


def test_match_title_trailing_article(bundled_split):
    catalog = bundled_split.catalog
    for query in ("Matrix", "The Matrix", "matrix, the", "The Matrix (1999)"):
        matches, _ = catalog.match_title(query)
        assert [catalog.title(m) for m in matches] == ["Matrix, The (1999)"], query


def test_match_title_prefers_the_title_without_article(bundled_split):
    catalog = bundled_split.catalog
    assert [catalog.title(m) for m in catalog.match_title("Heat")[0]] == ["Heat (1995)"]
    assert [catalog.title(m) for m in catalog.match_title("The Heat")[0]] == ["Heat, The (2013)"]


def test_match_title_typo_gives_suggestions(bundled_split):
    matches, suggestions = bundled_split.catalog.match_title("Toy Stroy")
    assert matches == []
    assert "Toy Story (1995)" in suggestions
    assert bundled_split.catalog.match_title("zzzzqqqq xxyy") == ([], [])


@pytest.mark.parametrize("steps", [1, 2])
def test_shifted_split_moves_the_validation_target_back(bundled_split, steps):
    pseudo, users = bundled_split.shifted(steps)
    lengths = np.array([len(bundled_split.train_sequence(u)) for u in range(bundled_split.n_users)])
    np.testing.assert_array_equal(users, np.flatnonzero(lengths > steps))
    for u in users[:: max(1, len(users) // 40)]:
        full = bundled_split.train_sequence(u)
        assert pseudo.valid_item[u] == full[-steps]
        assert pseudo.valid_time[u] == bundled_split.train_times(u)[-steps]
        np.testing.assert_array_equal(pseudo.history(u, "valid"), full[:-steps])
    # What a source fits on never holds a pseudo-target, a later item, or a real held-out item.
    fit_pairs = set(zip(pseudo.train["user"], pseudo.train["item"], strict=True))
    assert not any((u, pseudo.valid_item[u]) in fit_pairs for u in users)
    assert not any((u, bundled_split.valid_item[u]) in fit_pairs for u in range(bundled_split.n_users))
    assert len(pseudo.train) == len(bundled_split.train) - steps * len(users)


def test_shifted_split_keeps_short_users_out_and_rejects_zero_steps(bundled_split):
    shortest = min(len(bundled_split.train_sequence(u)) for u in range(bundled_split.n_users))
    pseudo, users = bundled_split.shifted(shortest)
    assert len(users) < bundled_split.n_users  # users with exactly `shortest` items stay out
    short = [u for u in range(bundled_split.n_users) if u not in set(users.tolist())]
    for u in short:  # their training data is left as it was
        np.testing.assert_array_equal(pseudo.train_sequence(u), bundled_split.train_sequence(u))
    with pytest.raises(ValueError, match="at least one"):
        bundled_split.shifted(0)
