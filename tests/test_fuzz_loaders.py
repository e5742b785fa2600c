"""Property tests of the dataset loaders: malformed files (bad rows mixed with good ones) either
load into a consistent Dataset or raise a DatasetError that names the file, never another
exception; well-formed files always load, with exactly the rows that were written."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fewrec.data import Dataset, DatasetError, load_raw
from fewrec.data.loaders import ML100K_GENRES

pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FORMATS = ["movielens", "ml-100k", "ml-1m", "amazon", "csv"]

# Field values that have broken parsers before: numbers out of range, non-numbers, quotes,
# separators, line breaks, NUL, a BOM, non-ASCII digits, JSON-looking text.
NASTY = [
    "", " ", "abc", "1.5", "-7", "0", "007", "nan", "NaN", "inf", "-inf", "1e400", "1e30", "1e18",
    "99999999999999999999999", "-9223372036854775809", "9223372036854775807", "0x1F", "+5",
    '"', '""', '"quoted"', '"unterminated', 'a"b', '"a,b"', "\x00", "a\x00b", "x\ny", "\r", "é",
    "１２", "٣", "\u2028", "\u0085", "\ufeff", "::", ":", "|", "\t", ",", ";", "None", "null",
    "True", "{}", "[1]", "(no genres listed)", "\U0001f600",
]  # fmt: skip
nasty = st.one_of(st.sampled_from(NASTY), st.text(max_size=8))
BAD_BYTES = [b"\xff", b"\xfe\xff", b"\xc3", b"\x80", b"\xed\xa0\x80", b"\x00", b"\xc0\xaf"]

users = st.integers(1, 6).map(str)
ratings = st.sampled_from(["0.5", "1", "2.5", "4", "5.0"])
timestamps = st.integers(-2_000_000_000, 2_000_000_000).map(str)  # negative: before 1970
ITEMS = ["1", "2", "3", "5", "8"]
UNKNOWN_ITEM = "99"


# Characters that str.splitlines() takes for line ends, though JSON and CSV do not.
ODD_BREAKS = ["\u2028", "\u2029", "\x85", "\x1c", "\x1e", "\x0b", "\x0c"]


def titles(exclude: str = "", max_codepoint: int | None = None) -> st.SearchStrategy[str]:
    alphabet = st.characters(
        exclude_categories=("Cs",), exclude_characters="\x00\r" + exclude, max_codepoint=max_codepoint
    )
    odd = [f"a{c}b" for c in ODD_BREAKS if ord(c) <= (max_codepoint or 0x10FFFF)]
    return st.one_of(st.text(alphabet=alphabet, max_size=20), st.sampled_from(odd))


def genre_lists() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(["Action", "Drama", "Sci-Fi", "Film-Noir"]), max_size=3).map("|".join)


def csv_line(fields: list[str], sep: str = ",") -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=sep, lineterminator="\n").writerow(fields)  # quotes fields with a \n
    return out.getvalue()[:-1]


def typed(values: list[str]) -> list[int] | list[str]:
    """Ids as the loaders type them: integers when every id is an ASCII integer, else text."""
    stripped = [v.strip() for v in values]
    if all(re.fullmatch(r"-?(?:0|[1-9][0-9]{0,17})", v) for v in stripped):  # as readers.ids
        return [int(v) for v in stripped]
    return stripped


@dataclass
class Case:
    """Files to write under a temporary folder, how to load them, and (when every row is
    well formed) what must come out."""

    files: dict[str, bytes]
    target: str  # path to pass to load_raw, relative to the folder
    format: str
    options: dict = field(default_factory=dict)
    expected: set[tuple] | None = None  # (user, item, rating, timestamp) rows
    titles: dict | None = None  # item id -> title


# --------------------------------------------------------------------------- damaged rows


@st.composite
def bad_line(draw, base: list[str], sep: str) -> str | bytes:
    """One malformed line made from a well-formed row, or junk."""
    kind = draw(
        st.sampled_from(["field", "field", "drop", "extra", "dup", "bytes", "text", "blank", "badutf8"])
    )
    row = list(base)
    if kind == "field":
        row[draw(st.integers(0, len(row) - 1))] = draw(nasty)
    elif kind == "drop":
        del row[draw(st.integers(0, len(row) - 1))]
    elif kind == "extra":
        row.insert(draw(st.integers(0, len(row))), draw(nasty))
    elif kind == "bytes":
        return draw(st.binary(max_size=16))
    elif kind == "text":
        return draw(st.text(max_size=30))
    elif kind == "blank":
        return draw(st.sampled_from(["", " ", "\t", "\r", sep]))
    elif kind == "badutf8":
        line = sep.join(row).encode()
        cut = draw(st.integers(0, len(line)))
        return line[:cut] + draw(st.sampled_from(BAD_BYTES)) + line[cut:]
    return sep.join(row)  # "dup" repeats the row itself


@st.composite
def table(
    draw,
    rows: list[list[str]],
    base: st.SearchStrategy[list[str]],
    sep: str,
    header: list[str] | None,
    bad: bool,
    quote: bool = False,
    encoding: str = "utf-8",
) -> bytes:
    """A delimited file: the rows, plus (when `bad`) up to three damaged lines and perhaps a
    damaged header, a truncated end or Windows line ends."""
    encode = (lambda r: csv_line(r, sep)) if quote else sep.join
    lines: list[str | bytes] = [encode(r) for r in rows]
    if bad:
        for _ in range(draw(st.integers(0, 3))):
            line = draw(bad_line(draw(base), sep))
            lines.insert(draw(st.integers(0, len(lines))), line)
        if header is not None and draw(st.integers(0, 5)) == 0:
            header = None if draw(st.booleans()) else draw(bad_line(header, sep))  # type: ignore[assignment]
    if header is not None:
        lines.insert(0, header if isinstance(header, (str, bytes)) else sep.join(header))
    newline = b"\r\n" if draw(st.integers(0, 4)) == 0 else b"\n"
    data = newline.join(x if isinstance(x, bytes) else x.encode(encoding, "replace") for x in lines) + newline
    if bad and draw(st.integers(0, 5)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


def rating_rows(items: list[str], user: st.SearchStrategy[str] = users):
    row = st.tuples(user, st.sampled_from(items), ratings, timestamps).map(list)
    return st.lists(row, min_size=1, max_size=8, unique_by=lambda r: (r[0].strip(), r[1], r[3]))


def rows_of(rows: list[list[str]], catalog: list[str] = ()) -> set[tuple]:
    """The rows as loaded; item ids are typed together with the catalog file's (`catalog`)."""
    u = typed([r[0] for r in rows])
    i = typed([r[1] for r in rows] + list(catalog))
    return {(u[k], i[k], float(r[2]), int(r[3])) for k, r in enumerate(rows)}


# --------------------------------------------------------------------------- formats


@st.composite
def movielens_case(draw, bad: bool) -> Case:
    items = ITEMS + ([UNKNOWN_ITEM] if bad else [])
    ratings_rows = draw(rating_rows(items))
    movies = [[i, draw(titles()), draw(genre_lists())] for i in draw(st.permutations(ITEMS))]
    files = {
        "ratings.csv": draw(
            table(ratings_rows, rating_rows(items).map(lambda r: r[0]), ",",
                  ["userId", "movieId", "rating", "timestamp"], bad, quote=True)
        ),
        "movies.csv": draw(
            table(movies, st.just(movies[0]), ",", ["movieId", "title", "genres"], bad, quote=True)
        ),
    }  # fmt: skip
    if draw(st.booleans()):
        tag_row = st.tuples(users, st.sampled_from(ITEMS), titles(), timestamps).map(list)
        tags = draw(st.lists(tag_row, min_size=1, max_size=4))
        files["tags.csv"] = draw(
            table(tags, tag_row, ",", ["userId", "movieId", "tag", "timestamp"], bad, quote=True)
        )
    return Case(
        {f"ml-fuzz/{k}": v for k, v in files.items()},
        "ml-fuzz",
        "movielens",
        expected=rows_of(ratings_rows),
        titles={int(m[0]): m[1].strip() for m in movies},
    )


@st.composite
def ml100k_case(draw, bad: bool) -> Case:
    items = ITEMS + ([UNKNOWN_ITEM] if bad else [])
    data = draw(rating_rows(items))
    encoding = draw(st.sampled_from(["latin-1", "utf-8"]))
    flags = st.lists(st.sampled_from("01"), min_size=len(ML100K_GENRES), max_size=len(ML100K_GENRES))
    movies = [
        [
            i,
            draw(titles('|\n"', 255 if encoding == "latin-1" else None)),
            "01-Jan-1995",
            "",
            f"http://example.org/{i}",
            *draw(flags),
        ]
        for i in draw(st.permutations(ITEMS))
    ]
    return Case(
        {
            "ml-100k/u.data": draw(table(data, rating_rows(items).map(lambda r: r[0]), "\t", None, bad)),
            "ml-100k/u.item": draw(table(movies, st.just(movies[0]), "|", None, bad, encoding=encoding)),
        },
        "ml-100k",
        "ml-100k",
        options={"encoding": encoding},
        expected=rows_of(data),
        titles={int(m[0]): m[1].strip() for m in movies},
    )


@st.composite
def ml1m_case(draw, bad: bool) -> Case:
    items = ITEMS + ([UNKNOWN_ITEM] if bad else [])
    data = draw(rating_rows(items))
    movies = [[i, draw(titles(":\n")), draw(genre_lists())] for i in draw(st.permutations(ITEMS))]
    return Case(
        {
            "ml-1m/ratings.dat": draw(table(data, rating_rows(items).map(lambda r: r[0]), "::", None, bad)),
            "ml-1m/movies.dat": draw(table(movies, st.just(movies[0]), "::", None, bad)),
        },
        "ml-1m",
        "ml-1m",
        options={"encoding": "utf-8"},
        expected=rows_of(data),
        titles={int(m[0]): m[1].strip() for m in movies},
    )


@st.composite
def generic_case(draw, bad: bool) -> Case:
    pool = draw(st.sampled_from([["i1", "i2", "42"], ["10", "20", "30"], ["a b", "Ü", "x,y"]]))
    items = pool + ([UNKNOWN_ITEM] if bad else [])
    user = st.one_of(
        users,
        st.text(min_size=1, max_size=5).filter(lambda s: s.strip() and "\x00" not in s and "\r" not in s),
    )
    rows = draw(rating_rows(items, user))
    catalog = [[i, draw(titles()), draw(genre_lists())] for i in pool]
    header = ["user_id", "item_id", "rating", "timestamp"]
    files = {
        "events.csv": draw(table(rows, rating_rows(items, user).map(lambda r: r[0]), ",", header, bad, True))
    }
    options: dict = {"rating_col": "rating", "duplicates": draw(st.sampled_from(["error", "drop"]))}
    with_items = draw(st.booleans())
    if with_items:
        header = ["item_id", "title", "genres"]
        files["things.csv"] = draw(table(catalog, st.just(catalog[0]), ",", header, bad, quote=True))
        options.update(items="things.csv", genres_col="genres")
    item_ids = typed(pool)
    return Case(
        files,
        "events.csv",
        "csv",
        options=options,
        expected=rows_of(rows, pool if with_items else []),
        titles={item_ids[k]: c[1].strip() for k, c in enumerate(catalog)} if with_items else None,
    )


WEIRD_JSON = [None, [], {}, "", " ", "x", 1e308, 10**30, -1, True, [1, 2], {"a": 1}, float("nan"), "5"]
JSON_JUNK = [
    "[1, 2]", "3", '"text"', "null", "true", "{", "{'a': }", "{[1]: 2}", "{{}}", "{'a': {1, [2]}}",
    "{1: 2} if 1 else 2", "{'a': 1}.keys()", "[" * 2000, "{'a': " * 500, "\x00{}",
    '{"reviewerID": "A", "asin": "B001", "overall": 5, "unixReviewTime": ' + "1" * 5000 + "}",
    '{"reviewerID": "A", "asin": "B001", "overall": 1' + "0" * 400 + ', "unixReviewTime": 1}',
]  # fmt: skip


def json_line(record: dict, style: str) -> str:
    if style == "python":
        return repr(record)  # Amazon's older dumps are Python dict literals
    return json.dumps(record, ensure_ascii=style == "ascii")


@st.composite
def bad_json_line(draw, record: dict) -> str | bytes:
    kind = draw(st.sampled_from(["field", "missing", "truncated", "junk", "bytes", "text"]))
    record = dict(record)
    if kind == "field":
        record[draw(st.sampled_from(sorted(record)))] = draw(st.sampled_from(WEIRD_JSON))
    elif kind == "missing":
        del record[draw(st.sampled_from(sorted(record)))]
    elif kind == "truncated":
        line = json_line(record, draw(st.sampled_from(["ascii", "utf8", "python"])))
        return line[: draw(st.integers(0, len(line) - 1))]
    elif kind == "junk":
        return draw(st.sampled_from(JSON_JUNK))
    elif kind == "bytes":
        line = json.dumps(record).encode()
        cut = draw(st.integers(0, len(line)))
        return line[:cut] + draw(st.sampled_from(BAD_BYTES)) + line[cut:]
    else:
        return draw(st.text(max_size=30))
    return json_line(record, draw(st.sampled_from(["ascii", "utf8", "python"])))


@st.composite
def json_file(draw, records: list[dict], base: st.SearchStrategy[dict], bad: bool, gz: bool) -> bytes:
    lines: list[str | bytes] = [
        json_line(r, draw(st.sampled_from(["ascii", "utf8", "python"]))) for r in records
    ]
    if bad:
        for _ in range(draw(st.integers(0, 3))):
            lines.insert(draw(st.integers(0, len(lines))), draw(bad_json_line(draw(base))))
    data = b"\n".join(x if isinstance(x, bytes) else x.encode("utf-8") for x in lines) + b"\n"
    if gz:
        data = gzip.compress(data)
    if bad and draw(st.integers(0, 5)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


@st.composite
def amazon_case(draw, bad: bool) -> Case:
    pool = draw(st.sampled_from([["B001", "B002", "0003"], ["0001", "12", "7"]]))
    reviewer = st.one_of(
        st.sampled_from(["A1", "A2", "A3"]),
        titles().map(lambda t: "A" + t),  # any unicode, U+2028 and friends included
    )
    review = st.fixed_dictionaries(
        {
            "reviewerID": reviewer,
            "asin": st.sampled_from(pool),
            "overall": st.sampled_from([1.0, 2.0, 4.5, 5.0]),
            "unixReviewTime": st.integers(-2_000_000_000, 2_000_000_000),
        }
    )
    reviews = draw(
        st.lists(
            review,
            min_size=1,
            max_size=8,
            unique_by=lambda r: (r["reviewerID"].strip(), r["asin"], r["unixReviewTime"]),
        )
    )
    gz = draw(st.booleans())
    files = {f"amazon/Books_5.json{'.gz' if gz else ''}": draw(json_file(reviews, review, bad, gz))}
    meta_title: dict[str, str] = {}
    metas: list[dict] = []
    with_meta = draw(st.booleans())
    if with_meta:
        meta_record = st.fixed_dictionaries(
            {"asin": st.sampled_from([*pool, "B999"])},
            optional={
                "title": titles(),
                "category": st.lists(titles(), max_size=2),
                "categories": st.lists(st.lists(titles(), max_size=2), min_size=1, max_size=2),
                "description": st.one_of(titles(), st.lists(titles(), max_size=2)),
            },
        )
        metas = draw(st.lists(meta_record, min_size=1, max_size=5, unique_by=lambda m: m["asin"]))
        meta_title = {m["asin"]: m["title"].strip() for m in metas if "title" in m}
        files[f"amazon/meta_Books.json{'.gz' if gz else ''}"] = draw(json_file(metas, meta_record, bad, gz))
    # ASINs are typed over the reviews and meta files together ('0003' is 3 if all are digits).
    reviewed = [r["asin"] for r in reviews]
    asins = reviewed + [m["asin"] for m in metas] if with_meta else reviewed
    asin_ids = dict(zip(asins, typed(asins), strict=True))
    rows = [[r["reviewerID"], asin_ids[r["asin"]], r["overall"], r["unixReviewTime"]] for r in reviews]
    return Case(
        files,
        "amazon",
        "amazon",
        options={"duplicates": draw(st.sampled_from(["error", "drop"]))},
        expected={(r[0].strip(), *r[1:]) for r in rows},
        # Without a meta title the id stands in, as loaded ('0003' is the integer id 3).
        titles={asin_ids[a]: meta_title.get(a, str(asin_ids[a])) for a in reviewed},
    )


CASES = {
    "movielens": movielens_case,
    "ml-100k": ml100k_case,
    "ml-1m": ml1m_case,
    "amazon": amazon_case,
    "csv": generic_case,
}


# --------------------------------------------------------------------------- checks


def load(case: Case, folder: Path) -> Dataset:
    for name, data in case.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    options = dict(case.options)
    if "items" in options:
        options["items"] = folder / options["items"]
    return load_raw(folder / case.target, case.format, **options)


def check_consistent(ds: Dataset) -> None:
    inter = ds.interactions.frame
    catalog = ds.catalog.frame
    assert len(inter) > 0
    assert catalog["item_id"].is_unique
    item_ids = inter["item_id"].tolist()
    user_ids = inter["user_id"].tolist()
    # One id type throughout, the same in the catalog as in the interactions.
    assert len({type(v) for v in user_ids}) == 1, user_ids
    assert len({type(v) for v in item_ids + catalog["item_id"].tolist()}) == 1
    assert all(isinstance(v, (int, np.integer, str)) for v in user_ids + item_ids)
    assert all(str(v).strip() != "" for v in user_ids + item_ids)
    for item in set(item_ids):
        assert item in ds.catalog, item
        assert ds.catalog.get(item).item_id == item
    assert inter["rating"].dtype == np.float64 and np.isfinite(inter["rating"]).all()
    assert inter["timestamp"].dtype == np.int64
    assert not inter.duplicated(["user_id", "item_id", "timestamp"]).any()
    stats = ds.stats()
    assert stats["users"] == ds.interactions.n_users == len(set(user_ids))
    assert stats["items_rated"] == ds.interactions.n_items == len(set(item_ids)) <= len(ds.catalog)
    assert stats["catalog_items"] == len(catalog)
    assert stats["interactions"] == len(inter) >= max(stats["users"], stats["items_rated"])


def check_error(error: DatasetError, case: Case, folder: Path) -> None:
    message = str(error)
    names = {Path(n).name for n in case.files} | {Path(n).parts[0] for n in case.files}
    assert error.path is not None, message
    assert error.path.name in names, message
    assert error.path.name in message, message
    if error.line is not None:
        data = case.files[str(error.path.relative_to(folder))]
        if error.path.suffix == ".gz":
            data = gzip.decompress(data)
        # a lone carriage return ends a line for the CSV parser too
        assert 1 <= error.line <= len(data.splitlines()) + 1, message


@FUZZ
@pytest.mark.parametrize("fmt", FORMATS)
@given(data=st.data())
def test_malformed_rows_load_consistently_or_raise_dataset_error(fmt, data):
    case = data.draw(CASES[fmt](bad=True), label="case")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        try:
            ds = load(case, folder)
        except DatasetError as error:
            check_error(error, case, folder)
        else:
            check_consistent(ds)


@FUZZ
@pytest.mark.parametrize("fmt", FORMATS)
@given(data=st.data())
def test_well_formed_files_load_exactly(fmt, data):
    case = data.draw(CASES[fmt](bad=False), label="case")
    with tempfile.TemporaryDirectory() as tmp:
        ds = load(case, Path(tmp))
    check_consistent(ds)
    f = ds.interactions.frame
    got = set(zip(f["user_id"], f["item_id"], f["rating"], f["timestamp"], strict=True))
    assert got == case.expected
    if case.titles is not None:
        assert {i: ds.catalog.title(i) for i in case.titles} == case.titles


# --------------------------------------------------------------------------- what fuzzing found

ML1M_MOVIES = "1::One (1995)::Drama\n2::Two (1996)::Comedy\n"
ML100K_ITEM = "1|One (1995)|01-Jan-1995||http://example.org/1" + "|0" * len(ML100K_GENRES)
REVIEW = '{"reviewerID": "A1", "asin": "0001", "overall": 5.0, "unixReviewTime": 1400000000}\n'
FOUND = [  # (format, files, None if it must load, else a part of the DatasetError's message)
    ("ml-1m", {"ratings.dat": "99999999999999999999999::1::5::1\n", "movies.dat": ML1M_MOVIES}, None),
    ("ml-1m", {"ratings.dat": "1::1::5::1e30\n", "movies.dat": ML1M_MOVIES}, "expected an integer"),
    ("ml-1m", {"ratings.dat": "1::1::5::1000000000000000000\n", "movies.dat": ML1M_MOVIES}, None),
    ("ml-1m", {"ratings.dat": "1::1::5::1\n", "movies.dat": "abc::Junk::\n" + ML1M_MOVIES}, None),
    ("ml-1m", {"ratings.dat": "1::3::5::1\n", "movies.dat": ML1M_MOVIES}, "item id '3' is not in movies.dat"),
    ("ml-1m", {"ratings.dat": "1::1::5::1\n", "movies.dat": ML1M_MOVIES + "1::Again::\n"},
     "duplicate item id"),
    ("ml-100k", {"u.data": "1\t1\t5\t1\n", "u.item": ML100K_ITEM + "|extra\n2|Two|x|y|z\n"}, "more fields"),
    ("movielens", {"ratings.csv": "userId,movieId,rating,timestamp\n1,3,5,1\n",
                   "movies.csv": "movieId,title,genres\n1,One,\n"}, "movie id '3' is not in movies.csv"),
    ("amazon", {"r.json.gz": gzip.compress(REVIEW.encode())[:-6]}, "not a valid gzip file"),
    ("amazon", {"r.json": REVIEW + '{"asin": "0001", "overall": ' + "1" * 5000 + "}\n"}, "line 2"),
    ("amazon", {"r.json": REVIEW + "[" * 100_000 + "\n"}, "line 2"),
    ("amazon", {"r.json": REVIEW + "{[1]: 2}\n"}, "line 2"),
    ("amazon", {"r.json": REVIEW.replace('"A1"', "null")}, "expected an id"),
    ("amazon", {"r.json": REVIEW.replace('"A1"', '"A\u2028\u0085B"')}, None),
    ("amazon", {"r.json": REVIEW, "meta_r.json": '{"asin": "B9"}\n{"asin": "1", "description": [1, 2]}\n'},
     None),
]  # fmt: skip


@pytest.mark.parametrize(("fmt", "files", "error"), FOUND)
def test_inputs_found_by_fuzzing(tmp_path, fmt, files, error):
    for name, text in files.items():
        (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    options = {"encoding": "utf-8"} if fmt in ("ml-100k", "ml-1m") else {}
    if error is None:
        check_consistent(load_raw(tmp_path, fmt, **options))
    else:
        with pytest.raises(DatasetError, match=re.escape(error)) as info:
            load_raw(tmp_path, fmt, **options)
        assert info.value.path is not None and info.value.path.name in str(info.value)
