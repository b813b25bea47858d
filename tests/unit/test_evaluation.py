"""Word top-k accuracy, per-client sums and the evaluation-set baselines against brute-force
NumPy counts."""

import json

import numpy as np
import pytest
import tensorflow as tf

from fl_sim.config import DataConfig, ModelConfig
from fl_sim.data import EOS_ID, OOV_ID, PAD_ID, Vocab, load_corpus
from fl_sim.data.baselines import eval_baselines, flat_baselines
from fl_sim.data.server_corpus import load_server_corpus
from fl_sim.data.targets import is_word, word_mask
from fl_sim.data.vocab import NUM_SPECIAL
from fl_sim.evaluation import Evaluator, masked_mean_loss, token_stats
from fl_sim.models import build_model
from fl_sim.stats import clustered_ratio_se

WORDS = [",", ".", "the", "and", "?", "i", "don't", "2nd", "to", "!", "o'er", "be"]
VOCAB = Vocab(WORDS)
V = VOCAB.size


def brute_force(logits, targets, mask, k):
    """Per position: is the target a word, and is it among the k best non-special ids?"""
    words = hits = 0
    for lg, t in zip(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)):
        if t == PAD_ID or not mask[t]:
            continue
        words += 1
        ranked = [i for i in np.argsort(-lg, kind="stable") if i >= NUM_SPECIAL]
        hits += int(t in ranked[:k])
    return words, hits


def test_word_mask_drops_specials_and_punctuation():
    mask = word_mask(VOCAB)
    assert [VOCAB.words[i] for i in np.flatnonzero(mask)] == ["the", "and", "i", "don't", "2nd",
                                                               "to", "o'er", "be"]
    assert not is_word(",") and not is_word("?!") and is_word("2nd")


def test_word_top1_top3_match_a_brute_force_count():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 9, V)).astype(np.float32)
    # Specials get the largest logits somewhere, so excluding them from the candidates matters.
    logits[:, ::2, EOS_ID] += 5.0
    logits[:, 1::3, OOV_ID] += 5.0
    targets = rng.integers(0, V, size=(6, 9)).astype(np.int32)
    targets[:, -2:] = PAD_ID
    mask = word_mask(VOCAB)

    got = {k: float(v) for k, v in token_stats(tf.constant(logits), tf.constant(targets),
                                               tf.constant(mask)).items()}

    n1, h1 = brute_force(logits, targets, mask, 1)
    n3, h3 = brute_force(logits, targets, mask, 3)
    # Counts of at most 54 ones summed in float32 are exact integers.
    assert (got["word_tokens"], got["word_hits1"], got["word_hits3"]) == (n1, h1, h3)
    assert n1 == n3 > 0 and 0 < h1 < h3
    valid = targets != PAD_ID
    strict = valid & (targets != OOV_ID) & (targets != EOS_ID)
    hit = logits.argmax(-1) == targets
    assert got["tokens"] == valid.sum() and got["correct"] == (hit & valid).sum()
    assert got["tokens_strict"] == strict.sum() and got["correct_strict"] == (hit & strict).sum()


def test_masked_mean_loss_is_mean_cross_entropy_over_non_pad():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 5, V)).astype(np.float32)
    targets = rng.integers(1, V, size=(3, 5)).astype(np.int32)
    targets[0, 3:] = PAD_ID
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    ref = ce[targets != PAD_ID].mean()
    # float32 softmax over 16 logits vs float64 NumPy: ~1e-6 relative.
    assert float(masked_mean_loss(tf.constant(logits), tf.constant(targets))) == pytest.approx(ref, rel=1e-5)


def test_evaluator_per_client_sums_and_clustered_se():
    rng = np.random.default_rng(2)
    model = build_model(ModelConfig(kind="cifg", embedding_dim=8, hidden_dim=8, projection_dim=4), V, 7, seed=0)
    seqs = rng.integers(NUM_SPECIAL, V, size=(70, 8)).astype(np.int32)
    seqs[:, 0] = 2
    seqs[::5, 6:] = PAD_ID
    owner = np.sort(rng.integers(0, 6, size=70))
    mask = word_mask(VOCAB)

    ev = Evaluator(model, batch_size=16, word_mask=mask).evaluate(seqs, owner)

    logits = np.asarray(model(seqs[:, :-1], training=False))
    per_n = np.zeros(6)
    per_h = np.zeros(6)
    for i in range(len(seqs)):
        n, h = brute_force(logits[i:i + 1], seqs[i:i + 1, 1:], mask, 1)
        per_n[owner[i]] += n
        per_h[owner[i]] += h
    assert ev["word_tokens"] == per_n.sum()
    assert ev["word_top1"] == pytest.approx(per_h.sum() / per_n.sum(), rel=1e-12)
    assert ev["word_top1_se"] == pytest.approx(clustered_ratio_se(per_h, per_n), rel=1e-12)
    assert ev["clients"] == 6
    # Without a word mask (the clients' own evaluation) only the classic metrics appear.
    plain = Evaluator(model, batch_size=16).evaluate(seqs)
    assert "word_top1" not in plain and plain["accuracy"] == pytest.approx(ev["accuracy"])


def test_eval_baselines_match_brute_force():
    rng = np.random.default_rng(3)
    # Skewed token frequencies, so each "best" is a clear winner and ties do not decide.
    p = rng.dirichlet(np.full(V, 0.5))
    seqs = rng.choice(V, size=(40, 10), p=p).astype(np.int32)
    seqs[:, 0] = 2
    seqs[::3, -3:] = PAD_ID
    tgt = seqs[:, 1:].ravel()
    mask = word_mask(VOCAB)

    b = eval_baselines(seqs, VOCAB)

    valid = tgt != PAD_ID
    in_vocab = valid & (tgt >= NUM_SPECIAL)
    words = valid & mask[tgt]

    def best(where, candidates):
        return max((((tgt == c) & where).sum() / where.sum(), -c) for c in candidates)

    assert b["constant_all"]["accuracy"] == pytest.approx(best(valid, range(V))[0])
    assert b["constant_in_vocab"]["accuracy_no_oov_eos"] == pytest.approx(best(in_vocab, range(4, V))[0])
    assert b["constant_word"]["word_top1"] == pytest.approx(best(words, range(4, V))[0])
    counts = sorted((((tgt == c) & words).sum() for c in range(4, V)), reverse=True)
    assert b["constant_word"]["word_top3"] == pytest.approx(sum(counts[:3]) / words.sum())
    # Unigram: the three most frequent training tokens are ids 4, 5, 6 (",", ".", "the").
    assert b["unigram"]["tokens"] == [",", ".", "the"]
    assert b["unigram"]["word_top1"] == 0.0  # "," is never a word target
    assert b["unigram"]["word_top3"] == pytest.approx(((tgt == 6) & words).sum() / words.sum())
    assert b["unigram"]["accuracy_no_oov_eos"] == pytest.approx(((tgt == 4) & in_vocab).sum() / in_vocab.sum())
    flat = flat_baselines(b)
    assert flat["baseline_constant_word_top1"] == b["constant_word"]["word_top1"]
    assert flat["baseline_unigram_word_top3"] == b["unigram"]["word_top3"]
    assert flat["baseline_constant_in_vocab_accuracy_no_oov_eos"] == b["constant_in_vocab"]["accuracy_no_oov_eos"]


def test_eval_row_clients_name_the_owner_of_every_eval_row(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"client_id": f"u{c}", "text": f"w{c} x y . " * (c + 2)}) + "\n"
                            for c in range(8)))
    cfg = DataConfig(source="jsonl", path=str(path), eval_clients=3,
                     cache_dir=str(tmp_path / "cache"))
    corpus = load_corpus(cfg, seed=0)
    server = load_server_corpus(cfg, seed=0)
    for cap in (0, 7):
        seqs, owner = server.eval_sequences(cap), server.eval_row_clients(cap)
        assert len(seqs) == len(owner)
        for row, o in zip(seqs, owner):
            client = corpus.client_eval(corpus.eval_client_ids[o])
            assert (client == row).all(axis=1).any()
