"""Tests for fl_sim.data: vocabulary, sequences, splits, cache and every source."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from fl_sim.config import DataConfig
from fl_sim.data import (BOS_ID, EOS_ID, OOV_ID, PAD_ID, DataError, FederatedCorpus, Vocab,
                         build_sequences, load_corpus, tokenize)
from fl_sim.data.shakespeare import parse_play
from fl_sim.data.splits import kept_sequences, select_clients
from fl_sim.data.tokenizer import split_sentences, text_units
from fl_sim.data.vocab import build_vocab



def _cfg(tmp_path: Path, **kw) -> DataConfig:
    return dataclasses.replace(DataConfig(), cache_dir=str(tmp_path / "cache"), **kw)


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


# --------------------------------------------------------------------------- vocabulary


def test_vocab_specials_and_frequency_order_with_alphabetical_ties():
    # Prepare
    counts = {"b": 3, "a": 3, "c": 5, "d": 1, "zero": 0}

    # Execute
    vocab = build_vocab(counts, vocab_size=3)

    # Assert
    assert (PAD_ID, OOV_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert vocab.words == ["<pad>", "<oov>", "<bos>", "<eos>", "c", "a", "b"]
    assert vocab.size == 7
    assert vocab.id("a") == 5 and vocab.id("d") == OOV_ID and vocab.id("<eos>") == EOS_ID
    assert vocab.encode(["c", "nope", "b"]) == [4, OOV_ID, 6]
    assert build_vocab(counts, vocab_size=100).size == 4 + 4  # zero counts never enter


def test_vocab_save_load_round_trip(tmp_path):
    vocab = build_vocab({"x": 2, "y": 1}, 10)
    vocab.save(tmp_path / "vocab.txt")
    assert Vocab.load(tmp_path / "vocab.txt") == vocab


# --------------------------------------------------------------------------- tokens, sequences


def test_tokenize_keeps_inner_apostrophes_and_splits_punctuation():
    text = "O'er the hill, don't 'Tis step-dame -- \"Hello\"! Aye; 2nd: what?"
    assert tokenize(text) == ["o'er", "the", "hill", ",", "don't", "tis", "step-dame", "hello", "!",
                              "aye", ";", "2nd", ":", "what", "?"]


def test_text_units_split_on_lines_and_sentence_ends():
    units = text_units("Hi there. How are you?\n\nFine!  ok\n...")
    assert units == [["hi", "there", "."], ["how", "are", "you", "?"], ["fine", "!"], ["ok"],
                     ["."], ["."], ["."]]
    assert split_sentences(["a", "b"]) == [["a", "b"]]


def test_text_units_equals_split_sentences_of_each_line():
    # text_units splits the text for speed; it must agree with the token-level rule.
    rng = np.random.default_rng(0)
    alphabet = list("ab c'-.!?,;\n\u2019X") + ["...", "Mr. ", "don't"]
    for _ in range(300):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 40))))
        expected = [u for line in text.splitlines() for u in split_sentences(tokenize(line))]
        assert text_units(text) == expected, text


def test_build_sequences_bos_eos_padding_and_truncation():
    # Prepare: seq_len 4 -> rows of 5
    units = [[10, 11], [10, 11, 12], [10, 11, 12, 13], [10, 11, 12, 13, 14, 15], []]

    # Execute
    out = build_sequences(units, seq_len=4)

    # Assert: EOS only when it fits, like TFF's build_to_ids_fn
    expected = np.array([
        [BOS_ID, 10, 11, EOS_ID, PAD_ID],
        [BOS_ID, 10, 11, 12, EOS_ID],
        [BOS_ID, 10, 11, 12, 13],
        [BOS_ID, 10, 11, 12, 13],
        [BOS_ID, EOS_ID, PAD_ID, PAD_ID, PAD_ID],
    ], dtype=np.int32)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, expected)
    assert build_sequences([], seq_len=4).shape == (0, 5)


# --------------------------------------------------------------------------- splits


def test_select_clients_disjoint_capped_and_at_most_half():
    sizes = {f"c{i}": i for i in range(10)}  # c0, c1 below min 2
    train, ev, dropped = select_clients(sizes, eval_clients=100, min_sequences=2, max_clients=0,
                                        seed=3, where="t")
    assert dropped == 2
    assert len(ev) == 4 and len(train) == 4  # 8 usable clients, at most half held out
    assert not set(train) & set(ev)
    assert train == sorted(train) and ev == sorted(ev)
    train2, ev2, _ = select_clients(sizes, eval_clients=1, min_sequences=2, max_clients=3, seed=3, where="t")
    assert len(ev2) == 1 and len(train2) == 3 and not set(train2) & set(ev2)
    with pytest.raises(DataError, match="expected at least 2"):
        select_clients({"a": 5, "b": 1}, eval_clients=1, min_sequences=2, max_clients=0, seed=0, where="t")


def test_kept_sequences_cap_and_determinism():
    assert kept_sequences("alice", 100, seed=1, max_sequences=0).tolist() == list(range(100))
    capped = kept_sequences("alice", 100, seed=1, max_sequences=10)
    assert len(capped) == 10 and np.all(np.diff(capped) > 0) and capped.max() < 100
    np.testing.assert_array_equal(capped, kept_sequences("alice", 100, seed=1, max_sequences=10))
    assert not np.array_equal(capped, kept_sequences("bob", 100, seed=1, max_sequences=10))
    assert not np.array_equal(capped, kept_sequences("alice", 100, seed=2, max_sequences=10))


# --------------------------------------------------------------------------- shakespeare


PLAY_MD = """# A Test Play

## ACT I

### SCENE I. A room.

_Enter ALPHA, and
BETA_

**ALPHA**  
Good morrow, friend: 'tis cold.  
__\\[Aside]_  
O'er the hill.

_Exit BETA_

I speak on after an exit.

*Sound a horn,
loudly.*

**Beta**  
*[Drawing]* Draw! [Within] now.

**ALPHA & BETA**  
Together.

### SCENE II. Elsewhere.

Nobody speaks this.
"""


def test_parse_play_skips_directions_and_headings():
    roles = parse_play(PLAY_MD)
    assert roles == {
        "ALPHA": [["good", "morrow", ",", "friend", ":", "tis", "cold", "."],
                  ["o'er", "the", "hill", "."],
                  ["i", "speak", "on", "after", "an", "exit", "."]],
        "BETA": [["draw", "!", "now", "."]],
        "ALPHA_&_BETA": [["together", "."]],
    }


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory):
    cache = tmp_path_factory.mktemp("shakespeare-cache")
    cfg = dataclasses.replace(DataConfig(), cache_dir=str(cache))
    return cfg, load_corpus(cfg, seed=0)


def test_shakespeare_many_clients_and_disjoint_eval(shakespeare):
    cfg, corpus = shakespeare
    d = corpus.describe()
    assert d["source"] == "shakespeare"
    plays = {cid.split(":")[0] for cid in corpus.train_client_ids + corpus.eval_client_ids}
    assert len(plays) >= 35
    assert len(corpus.train_client_ids) > 1000
    assert len(corpus.eval_client_ids) == cfg.eval_clients
    assert not set(corpus.train_client_ids) & set(corpus.eval_client_ids)
    assert corpus.train_client_ids == sorted(corpus.train_client_ids)
    assert "hamlet:HAMLET" in corpus.train_client_ids + corpus.eval_client_ids
    assert d["train_sequences"] > 50_000 and d["train_tokens"] > 500_000
    assert corpus.vocab.size == cfg.vocab_size + 4
    assert corpus.vocab.words[4:7] == [",", ".", "the"]


def test_shakespeare_client_arrays(shakespeare):
    cfg, corpus = shakespeare
    cid = "hamlet:HAMLET" if "hamlet:HAMLET" in corpus.train_client_ids else corpus.train_client_ids[0]
    train = corpus.client_train(cid)
    assert train.dtype == np.int32 and train.shape[1] == cfg.seq_len + 1
    assert corpus.num_train_sequences(cid) == len(train)
    assert np.all(train[:, 0] == BOS_ID)
    assert train.max() < corpus.vocab.size and train.min() >= 0
    ev = corpus.eval_sequences()
    assert len(ev) == corpus.describe()["eval_sequences"]
    assert len(corpus.eval_sequences(max_sequences=100)) == 100
    with pytest.raises(KeyError):
        corpus.client_train(corpus.eval_client_ids[0])


def test_shakespeare_second_load_hits_cache_and_is_identical(shakespeare):
    cfg, corpus = shakespeare
    again = load_corpus(cfg, seed=0)
    assert again.describe()["cache_hit"] is True and corpus.cache_path == again.cache_path
    assert again.train_client_ids == corpus.train_client_ids
    cid = corpus.train_client_ids[5]
    np.testing.assert_array_equal(again.client_train(cid), corpus.client_train(cid))


def test_shakespeare_determinism_across_rebuilds_and_seeds(shakespeare, tmp_path):
    cfg, corpus = shakespeare
    # Same seed, fresh cache folder: a full rebuild gives the same bytes.
    rebuilt = load_corpus(dataclasses.replace(cfg, cache_dir=str(tmp_path / "c2")), seed=0)
    assert rebuilt.describe()["cache_hit"] is False
    assert rebuilt.eval_client_ids == corpus.eval_client_ids
    assert rebuilt.vocab == corpus.vocab
    a = np.load(corpus.cache_path / "sequences.npy")
    b = np.load(rebuilt.cache_path / "sequences.npy")
    np.testing.assert_array_equal(a, b)
    # Another seed: another held-out set.
    other = load_corpus(dataclasses.replace(cfg, cache_dir=str(tmp_path / "c2")), seed=1)
    assert other.eval_client_ids != corpus.eval_client_ids
    assert not set(other.train_client_ids) & set(other.eval_client_ids)


# --------------------------------------------------------------------------- cache


def test_cache_hit_and_invalidation(tmp_path):
    cfg = _cfg(tmp_path, source="synthetic", synthetic_clients=8, synthetic_sentences=10)
    first = load_corpus(cfg, seed=0)
    assert first.describe()["cache_hit"] is False
    second = load_corpus(cfg, seed=0)
    assert second.describe()["cache_hit"] is True
    assert second.cache_path == first.cache_path
    # Every field that changes the arrays changes the key.
    for change in ({"seq_len": 7}, {"vocab_size": 11}, {"eval_clients": 1},
                   {"min_client_sequences": 3}, {"max_clients": 2}, {"max_sequences_per_client": 4},
                   {"synthetic_sentences": 11}):
        c = load_corpus(dataclasses.replace(cfg, **change), seed=0)
        assert c.describe()["cache_hit"] is False, change
        assert c.cache_path != first.cache_path
    assert load_corpus(cfg, seed=1).describe()["cache_hit"] is False
    # cache_dir itself is not part of the key's material: only the location moves.
    assert load_corpus(cfg, seed=0).describe()["cache_hit"] is True


def test_cache_invalidated_when_input_file_changes(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"client_id": c, "text": "a b. c d."} for c in "abcd"])
    cfg = _cfg(tmp_path, source="jsonl", path=str(path), eval_clients=1)
    assert load_corpus(cfg, 0).describe()["cache_hit"] is False
    assert load_corpus(cfg, 0).describe()["cache_hit"] is True
    _write_jsonl(path, [{"client_id": c, "text": "a b. c d. e f."} for c in "abcd"])
    os.utime(path, ns=(1, 1))  # different mtime even on coarse-clock file systems
    c = load_corpus(cfg, 0)
    assert c.describe()["cache_hit"] is False and c.describe()["train_sequences"] == 9


def test_broken_cache_is_rebuilt(tmp_path):
    cfg = _cfg(tmp_path, source="synthetic", synthetic_clients=4, synthetic_sentences=3)
    first = load_corpus(cfg, seed=0)
    (first.cache_path / "sequences.npy").write_bytes(b"garbage")
    again = load_corpus(cfg, seed=0)
    assert again.describe()["cache_hit"] is False
    assert again.client_train(again.train_client_ids[0]).shape[1] == cfg.seq_len + 1


def test_no_leftover_temporary_files(tmp_path):
    cfg = _cfg(tmp_path, source="synthetic", synthetic_clients=4, synthetic_sentences=3)
    corpus = load_corpus(cfg, seed=0)
    assert sorted(p.name for p in corpus.cache_path.iterdir()) == ["index.npz", "meta.json", "sequences.npy"]


def test_pickle_reopens_memory_map(tmp_path):
    corpus = load_corpus(_cfg(tmp_path, source="synthetic"), seed=0)
    blob = pickle.dumps(corpus)
    assert len(blob) < 2000  # only the path travels
    clone = pickle.loads(blob)
    cid = corpus.train_client_ids[0]
    np.testing.assert_array_equal(clone.client_train(cid), corpus.client_train(cid))


# --------------------------------------------------------------------------- jsonl


def test_jsonl_clients_and_sentence_units(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [
        {"client_id": "a", "text": "One two. Three!\nfour"},
        {"client_id": 7, "text": "x y z.", "extra": True},
        "",
        {"client_id": "a", "text": "five six?"},
        {"client_id": "b", "text": "b b b. b."},
    ])
    cfg = _cfg(tmp_path, source="jsonl", path=str(path), eval_clients=1,
               min_client_sequences=1)
    corpus = load_corpus(cfg, seed=0)
    ids = set(corpus.train_client_ids) | set(corpus.eval_client_ids)
    assert ids == {"a", "7", "b"}
    if "a" in corpus.train_client_ids:
        rows = corpus.client_train("a")
        assert [corpus.vocab.decode(r[1:r.tolist().index(EOS_ID)]) for r in rows] == [
            ["one", "two", "."], ["three", "!"], ["four"], ["five", "six", "?"]]


@pytest.mark.parametrize("line, expect", [
    ("{not json", "line 2: invalid JSON"),
    ('["a", "b"]', "line 2: expected a JSON object"),
    ('{"text": "hi"}', "line 2: missing key 'client_id'"),
    ('{"client_id": "a"}', "line 2: missing key 'text'"),
    ('{"client_id": [1], "text": "hi"}', "line 2: client_id = [1]: expected a string or an integer"),
    ('{"client_id": true, "text": "hi"}', "line 2: client_id = True"),
    ('{"client_id": "a", "text": 5}', "line 2: text = 5: expected a string"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, line, expect):
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"client_id": "ok", "text": "fine."}, line])
    with pytest.raises(DataError) as info:
        load_corpus(_cfg(tmp_path, source="jsonl", path=str(path)), seed=0)
    assert str(path) in str(info.value)
    assert expect in str(info.value)


def test_jsonl_undecodable_and_missing_and_empty(tmp_path):
    path = tmp_path / "bin.jsonl"
    path.write_bytes(b'{"client_id": "a", "text": "x"}\n{"client_id": "b", "text": "\xff"}\n')
    with pytest.raises(DataError, match=r"bin\.jsonl: line 2: not UTF-8"):
        load_corpus(_cfg(tmp_path, source="jsonl", path=str(path)), seed=0)
    with pytest.raises(DataError, match="no such file"):
        load_corpus(_cfg(tmp_path, source="jsonl", path=str(tmp_path / "missing.jsonl")), seed=0)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="no rows"):
        load_corpus(_cfg(tmp_path, source="jsonl", path=str(empty)), seed=0)


# --------------------------------------------------------------------------- folder


def test_folder_source(tmp_path):
    root = tmp_path / "users"
    root.mkdir()
    (root / "alice.txt").write_text("Hello world. Bye!\nagain", encoding="utf-8")
    (root / "bob.txt").write_text("one line\nsecond line\n", encoding="utf-8")
    (root / "carol.TXT").write_text("c1\nc2\n", encoding="utf-8")
    (root / ".hidden.txt").write_text("secret\nsecret\n")
    (root / "README.md").write_text("not a client\nreally\n")
    (root / "sub").mkdir()
    cfg = _cfg(tmp_path, source="folder", path=str(root), eval_clients=1)
    corpus = load_corpus(cfg, seed=0)
    assert set(corpus.train_client_ids) | set(corpus.eval_client_ids) == {"alice", "bob", "carol"}
    assert len(corpus.eval_client_ids) == 1
    sizes = {c: len(corpus.client_train(c)) for c in corpus.train_client_ids}
    sizes.update({c: len(corpus.client_eval(c)) for c in corpus.eval_client_ids})
    assert sizes == {"alice": 3, "bob": 2, "carol": 2}


def test_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no text files"):
        load_corpus(_cfg(tmp_path, source="folder", path=str(empty)), seed=0)
    (empty / "notes.md").write_text("x")
    with pytest.raises(DataError, match="no text files"):
        load_corpus(_cfg(tmp_path, source="folder", path=str(empty)), seed=0)
    with pytest.raises(DataError, match="no such folder"):
        load_corpus(_cfg(tmp_path, source="folder", path=str(tmp_path / "nope")), seed=0)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.txt").write_text("fine\nfine\n")
    (bad / "b.txt").write_bytes(b"ok\nok\n\xc3\x28 broken\n")
    with pytest.raises(DataError) as info:
        load_corpus(_cfg(tmp_path, source="folder", path=str(bad)), seed=0)
    assert str(bad / "b.txt") in str(info.value) and "line 3" in str(info.value)


# --------------------------------------------------------------------------- stack overflow


def _so_example(tokens: str | None) -> bytes:
    import tensorflow as tf

    feats = {"title": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"a title"])),
             "score": tf.train.Feature(int64_list=tf.train.Int64List(value=[3]))}
    if tokens is not None:
        feats["tokens"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[tokens.encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def _make_so_db(path: Path, data: dict[tuple[str, str], list[str | None]]) -> Path:
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE examples (split_name TEXT NOT NULL, client_id TEXT NOT NULL, "
                    "serialized_example_proto BLOB NOT NULL);")
        con.execute("CREATE INDEX idx_examples_client_id_split ON examples (split_name, client_id);")
        con.execute("CREATE TABLE client_metadata (client_id TEXT NOT NULL, split_name TEXT NOT NULL, "
                    "num_examples INTEGER NOT NULL);")
        for (split, cid), texts in data.items():
            for t in texts:
                con.execute("INSERT INTO examples VALUES (?, ?, ?)", (split, cid, _so_example(t)))
            con.execute("INSERT INTO client_metadata VALUES (?, ?, ?)", (cid, split, len(texts)))
    con.close()
    return path


def test_stackoverflow_sqlite_round_trip(tmp_path):
    db = _make_so_db(tmp_path / "stackoverflow.sqlite", {
        ("train", "00001"): ["how do i sort a list ?", "use sorted ( ) .", "thanks <URL> ."],
        ("train", "00002"): ["my code is slow .", "it uses a loop ."],
        ("train", "00003"): ["what is a list ?", ""],  # the empty example is skipped
        ("test", "00001"): ["later post ."],           # other splits are not read
        ("heldout", "00010"): ["held out user ."],
    })
    cfg = _cfg(tmp_path, source="stackoverflow_sqlite", path=str(db), eval_clients=1,
               min_client_sequences=1, seq_len=6)
    corpus = load_corpus(cfg, seed=0)
    assert set(corpus.train_client_ids) | set(corpus.eval_client_ids) == {"00001", "00002", "00003"}
    texts = {}
    for cid in corpus.train_client_ids:
        texts[cid] = [" ".join(corpus.vocab.decode(r)) for r in corpus.client_train(cid)]
    for cid in corpus.eval_client_ids:
        texts[cid] = [" ".join(corpus.vocab.decode(r)) for r in corpus.client_eval(cid)]
    expected = {
        "00001": ["<bos> how do i sort a list", "<bos> use sorted ( ) . <eos>",
                  "<bos> thanks <URL> . <eos> <pad> <pad>"],
        "00002": ["<bos> my code is slow . <eos>", "<bos> it uses a loop . <eos>"],
        "00003": ["<bos> what is a list ? <eos>"],
    }
    for cid in corpus.eval_client_ids:  # eval-only words are out of vocabulary
        expected[cid] = [" ".join(corpus.vocab.decode(corpus.vocab.encode(s.split())))
                         for s in expected[cid]]
    assert texts == expected
    assert load_corpus(cfg, seed=0).describe()["cache_hit"] is True


def test_stackoverflow_sqlite_errors(tmp_path):
    db = _make_so_db(tmp_path / "so.sqlite", {("train", "a"): ["ok ."], ("train", "b"): ["fine .", None]})
    cfg = _cfg(tmp_path, source="stackoverflow_sqlite", path=str(db), eval_clients=1, min_client_sequences=1)
    with pytest.raises(DataError, match=r"so\.sqlite: table examples, rowid 3 .*expected a bytes feature 'tokens'"):
        load_corpus(cfg, seed=0)
    wrong = tmp_path / "wrong.sqlite"
    with sqlite3.connect(wrong) as con:
        con.execute("CREATE TABLE examples (client_id TEXT)")
    con.close()
    with pytest.raises(DataError, match="wrong.sqlite: table 'examples' lacks columns"):
        load_corpus(dataclasses.replace(cfg, path=str(wrong)), seed=0)
    notdb = tmp_path / "text.sqlite"
    notdb.write_text("hello, I am not a database " * 100)
    with pytest.raises(DataError, match="not a readable SQLite database"):
        load_corpus(dataclasses.replace(cfg, path=str(notdb)), seed=0)


# --------------------------------------------------------------------------- synthetic


def test_synthetic_small_and_learnable(tmp_path):
    cfg = _cfg(tmp_path, source="synthetic", synthetic_clients=64, synthetic_sentences=20)
    corpus = load_corpus(cfg, seed=0)
    d = corpus.describe()
    assert d["num_train_clients"] + d["num_eval_clients"] == 64
    # The build time is recorded (speed itself is for benchmarks/, not a wall-clock assert
    # that a loaded CI machine can fail).
    assert d["build_seconds"] >= 0.0
    assert d["train_sequences"] + d["eval_sequences"] == 64 * 20
    # Structure a model can learn: after "he" always a verb ending in "s".
    seqs = np.concatenate([corpus.client_train(c) for c in corpus.train_client_ids])
    he = corpus.vocab.id("he")
    nxt = seqs[:, 2][seqs[:, 1] == he]
    assert len(nxt) > 0 and all(corpus.vocab.words[i].endswith("s") for i in nxt)
    # Same seed same data; another seed other data.
    again = load_corpus(dataclasses.replace(cfg, cache_dir=str(tmp_path / "other")), seed=0)
    np.testing.assert_array_equal(again.eval_sequences(), corpus.eval_sequences())
    other = load_corpus(cfg, seed=1)
    assert not np.array_equal(other.eval_sequences(), corpus.eval_sequences())


def test_max_clients_and_max_sequences_caps(tmp_path):
    cfg = _cfg(tmp_path, source="synthetic", synthetic_clients=20, synthetic_sentences=10,
               eval_clients=4, max_clients=5, max_sequences_per_client=6)
    corpus = load_corpus(cfg, seed=0)
    assert len(corpus.train_client_ids) == 5 and len(corpus.eval_client_ids) == 4
    for cid in corpus.train_client_ids:
        assert len(corpus.client_train(cid)) == 6
    assert len(corpus.eval_sequences()) == 4 * 6


# --------------------------------------------------------------------------- baseline


def test_most_frequent_baseline_known_answer(tmp_path):
    # Prepare: two symmetric clients; whichever is held out, the other trains.
    # Train counts: the=2, .=2, <verb>=2, two nouns=1 -> "." wins the tie alphabetically.
    # Eval targets per client: "the N V . <eos>" twice = 10 targets, 2 of them ".".
    # Without OOV/EOS: N and V are out of vocabulary, leaving the, ., the, . -> 2/4.
    path = _write_jsonl(tmp_path / "tiny.jsonl", [
        {"client_id": "a", "text": "the cat sat . the dog sat ."},
        {"client_id": "b", "text": "the cow ran . the pig ran ."},
    ])
    cfg = _cfg(tmp_path, source="jsonl", path=str(path), eval_clients=1, vocab_size=10)

    # Execute
    corpus = load_corpus(cfg, seed=0)
    base = corpus.most_frequent_baseline()

    # Assert
    assert corpus.vocab.words[4] == "." and corpus.vocab.words[6] == "the"
    assert base["word"] == "."
    assert base["accuracy"] == pytest.approx(2 / 10)
    assert base["accuracy_no_oov_eos"] == pytest.approx(2 / 4)
    assert base["targets"] == 10


def test_most_frequent_baseline_uses_train_counts_only(tmp_path):
    # "zebra" dominates the eval client but is never predicted: it is not a training word.
    path = _write_jsonl(tmp_path / "t.jsonl", [
        {"client_id": "train", "text": "x x x y ."},
        {"client_id": "zzz", "text": "zebra zebra zebra x ."},
    ])
    cfg = _cfg(tmp_path, source="jsonl", path=str(path), eval_clients=1,
               min_client_sequences=1)
    for seed in range(20):
        corpus = load_corpus(cfg, seed=seed)
        if corpus.eval_client_ids == ["zzz"]:
            break
    else:
        pytest.fail("no seed held out client zzz")
    base = corpus.most_frequent_baseline()
    assert base["word"] == "x"
    # eval targets: zebra zebra zebra x . <eos> -> x once out of 6; without oov/eos: x . -> 1/2
    assert base["accuracy"] == pytest.approx(1 / 6)
    assert base["accuracy_no_oov_eos"] == pytest.approx(1 / 2)
    assert corpus.vocab.id("zebra") == OOV_ID
    assert isinstance(corpus, FederatedCorpus)


def test_vocab_counts_only_the_train_clients(tmp_path):
    # Prepare: every word but "." belongs to one sequence of one client.
    rows = [{"client_id": c, "text": f"{c}1 . {c}2 ."} for c in ("p", "q", "r")]
    path = _write_jsonl(tmp_path / "v.jsonl", rows)
    cfg = _cfg(tmp_path, source="jsonl", path=str(path), eval_clients=1)

    # Execute
    corpus = load_corpus(cfg, seed=0)

    # Assert: "." plus both words of each of the two train clients; the eval client's are OOV.
    assert corpus.vocab.size == 4 + 1 + 2 * 2
    for cid in corpus.train_client_ids:
        train = corpus.client_train(cid)
        assert len(train) == 2 and np.all(train[:, 1] != OOV_ID)
    assert np.all(corpus.eval_sequences()[:, 1] == OOV_ID)
