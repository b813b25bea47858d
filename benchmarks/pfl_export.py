"""fl_sim's side of benchmarks/bench_pfl.py: the job, exported to one .npz pfl's runner reads.

The file holds everything the pfl run needs to do exactly fl_sim's job, and nothing that
would need fl_sim to read it (benchmarks/pfl_run.py runs in ``.venv-pfl``, without fl_sim):

``client_ids`` [n] (str), ``offsets`` [n + 1], ``sequences`` [N, seq_len + 1] int32
    Every training client's token sequences as ``FederatedCorpus.client_train`` returns
    them: client i's are ``sequences[offsets[i]:offsets[i + 1]]``.
``cohorts`` [rounds, cohort] int
    Index into ``client_ids`` of the clients fl_sim samples in rounds 1..R
    (``fl_sim.sampling.sample_clients`` with the experiment's seed).
``weight_<i>`` and ``weight_names``
    fl_sim's initial trainable weights, in ``model.trainable_variables`` order.
``ref_tokens`` [4, seq_len], ``ref_logits`` [4, seq_len, V]
    fl_sim's logits at those weights on four training sequences, to check that the pfl
    model computes the same function.
``meta``
    JSON: model sizes and kind, batch size, local epochs and steps, learning rates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def export_job(cfg, rounds: int, path: Path) -> dict:
    """Write the job of ``cfg`` over ``rounds`` rounds to ``path``; return its meta."""
    from fl_sim.data import load_corpus
    from fl_sim.models import build_model
    from fl_sim.sampling import sample_clients

    corpus = load_corpus(cfg.data, cfg.experiment.seed)
    ids = list(corpus.train_client_ids)
    seqs = [corpus.client_train(cid) for cid in ids]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
    index = {cid: i for i, cid in enumerate(ids)}
    cohorts = np.array([[index[c] for c in sample_clients(ids, cfg.server.clients_per_round,
                                                          cfg.experiment.seed, rnd)]
                        for rnd in range(1, rounds + 1)], dtype=np.int64)
    model = build_model(cfg.model, corpus.vocab.size, corpus.seq_len, seed=cfg.experiment.seed)
    weights = [v.numpy() for v in model.trainable_variables]
    ref_tokens = np.concatenate(seqs)[:4, :-1]
    ref_logits = model(ref_tokens, training=False).numpy()
    m, c = cfg.model, cfg.client
    meta = {"kind": m.kind, "vocab_size": int(corpus.vocab.size), "seq_len": int(corpus.seq_len),
            "embedding_dim": m.embedding_dim, "hidden_dim": m.hidden_dim,
            "projection_dim": m.projection_dim, "batch_size": c.batch_size,
            "local_epochs": c.local_epochs, "max_steps": c.max_steps, "client_lr": c.lr,
            "client_optimizer": c.optimizer, "server_optimizer": cfg.server.optimizer,
            "server_lr": cfg.server.lr, "cohort": cfg.server.clients_per_round, "rounds": rounds,
            "seed": cfg.experiment.seed, "parameters": int(model.count_params())}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, client_ids=np.array(ids), offsets=offsets,
             sequences=np.concatenate(seqs).astype(np.int32), cohorts=cohorts,
             weight_names=np.array([v.path for v in model.trainable_variables]),
             ref_tokens=ref_tokens.astype(np.int32), ref_logits=ref_logits.astype(np.float32),
             meta=np.array(json.dumps(meta)), **{f"weight_{i}": w for i, w in enumerate(weights)})
    tmp.replace(path)
    return meta


def load_job(path: Path) -> dict:
    """The exported job as plain NumPy (what pfl_run.py reads; also used by the test)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        offsets = z["offsets"]
        seqs = z["sequences"]
        ids = [str(x) for x in z["client_ids"]]
        n_weights = sum(1 for k in z.files if k.startswith("weight_") and k != "weight_names")
        return {"meta": meta, "client_ids": ids,
                "clients": {cid: seqs[offsets[i]:offsets[i + 1]] for i, cid in enumerate(ids)},
                "cohorts": [[ids[j] for j in row] for row in z["cohorts"]],
                "weights": [z[f"weight_{i}"] for i in range(n_weights)],
                "weight_names": [str(x) for x in z["weight_names"]],
                "ref_tokens": z["ref_tokens"], "ref_logits": z["ref_logits"]}
