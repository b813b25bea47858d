"""What a DP run releases: the vocabulary default, the row split and the artifact rules."""

import numpy as np

from fl_sim.config import from_dict
from fl_sim.privacy.release import artifact_rules, classify, split_row
from strategies.registry import make_strategy


def test_vocab_source_defaults_to_public_under_dp_only():
    assert from_dict({}).data.vocab_source == "train"
    assert from_dict({"privacy": {"enabled": True}}).data.vocab_source == "public"
    forced = from_dict({"privacy": {"enabled": True}, "data": {"vocab_source": "train"}})
    assert forced.data.vocab_source == "train"


def test_private_raw_counts_vocabulary_is_said_loudly():
    def statement(**data):
        cfg = from_dict({"server": {"clients_per_round": 3}, "data": data,
                         "privacy": {"enabled": True}})
        return make_strategy("fedavg", cfg, [f"c{i}" for i in range(30)], "").final_report()["privacy_statement"]

    assert "VOCABULARY NOT COVERED" in statement(vocab_source="train")
    text = statement()
    assert "VOCABULARY NOT COVERED" not in text and "Vocabulary: public" in text


def test_split_row_is_an_allowlist():
    row = {"type": "round", "round": 3, "model": "cifg", "train_loss": 2.0, "num_clipped": 4,
           "epsilon_rdp": 1.5, "eval_accuracy": 0.2, "clip_norm": 0.1, "some_new_metric": 7.0}
    released, diag = split_row(row)
    assert released == {"type": "round", "round": 3, "model": "cifg", "epsilon_rdp": 1.5,
                        "eval_accuracy": 0.2, "clip_norm": 0.1}
    assert diag == {"type": "round", "round": 3, "model": "cifg", "train_loss": 2.0,
                    "num_clipped": 4, "some_new_metric": 7.0, "non_private": True}


def test_artifact_rules_follow_the_settings():
    secret = artifact_rules(reproducible=False, vocab_public=True, calibration_public=True)
    seeded = artifact_rules(reproducible=True, vocab_public=False, calibration_public=False)
    assert classify("manifest.json", secret)[0] and not classify("manifest.json", seeded)[0]
    assert classify("cifg/export/vocab.txt", secret)[0] and not classify("export/vocab.txt", seeded)[0]
    assert not classify("export/model_int8.tflite", seeded)[0]
    assert classify("export/model_float16.tflite", seeded)[0]  # a conversion of the model
    assert not classify("checkpoints/round-00001.npz", secret)[0]
    assert not classify("cifg/checkpoints/latest.json", secret)[0]
    assert classify("notes.txt", secret) is None  # unknown files are never silently covered
    assert np.all([classify("tensorboard/events.out.tfevents.1.v2", r)[0] for r in (secret, seeded)])
