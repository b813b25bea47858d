"""What a DP run releases, and what its (epsilon, delta) covers: the parts of the privacy
statement beyond the accounting (fl_sim/privacy/accountant.py).

"Released" means everything in the run directory except ``checkpoints/`` (the server's
private state, written owner-only), plus every export. The DP-FedAvg guarantee covers the
sequence of released models; anything else in the release is either a function of those
models and of data that is not the training clients' (post-processing), independent of
client data, or listed as not covered.
"""

from __future__ import annotations


def noise_paragraph(reproducible: bool) -> str:
    """Which randomness the run used, and what that means for whoever holds the seed."""
    if reproducible:
        return (
            "**Noise: reproducible (privacy.reproducible_noise = true).** Every noise draw "
            "and every cohort was derived from the run seed (fl_sim.seeding: (seed, "
            "'dp-noise', round), (seed, 'dp-count-noise', round), (seed, 'cohort', round)), "
            "and the seed is written in manifest.json and config.resolved.toml. Anyone who "
            "holds the seed can recompute the noise and subtract it from the released "
            "models, and knows who was sampled in every round: against such a party this "
            "run has no differential privacy at all. The (ε, δ) above holds only against "
            "parties who do not know the seed; this mode is for simulation (exact resume, "
            "worker-count independence), not for a deployment whose run directory is shared.")
    return (
        "**Noise: secret (privacy.reproducible_noise = false).** Every DP noise draw and "
        "every cohort came from generators seeded from OS entropy (numpy.random."
        "default_rng() with a fresh SeedSequence), which were never written anywhere: the "
        "seed in manifest.json does not determine them. A resumed run draws fresh noise "
        "for the rounds it recomputes, so it matches an uninterrupted run in distribution, "
        "not bit for bit.")


def node_sums_paragraph() -> str:
    """Where the clipping happened with ``deployment.node_sums`` (docs/deployment.md)."""
    return ("**Clipping on the nodes (deployment.node_sums = true).** Each node clipped its "
            "clients' updates to the round's clip norm, which the server sent with the round's "
            "train message, and returned their sum with each accepted client's norm before "
            "clipping; the server saw no single client's update, added the noise once to the "
            "sum of the nodes' sums and took the same fixed-denominator mean. The mechanism and "
            "its accounting are unchanged; each node is trusted with the updates of the "
            "clients it trained, as without node sums.")


def tree_noise_paragraph(reproducible: bool) -> str:
    """DP-FTRL's version of :func:`noise_paragraph`: its node noise and cohorts are keyed
    per tree (fl_sim/privacy/tree.py), and the tree's key must outlive a restart."""
    if reproducible:
        return (
            "**Noise: reproducible (privacy.reproducible_noise = true).** Every tree node's "
            "noise and every tree's order of clients were derived from the run seed "
            "(fl_sim.seeding: (seed, 'dp-ftrl-noise', tree, level, node), (seed, "
            "'dp-ftrl-cohort', tree)), and the seed is written in manifest.json and "
            "config.resolved.toml. Anyone who holds the seed can recompute the noise and "
            "subtract it from the released models, and knows who was sampled in every round: "
            "against such a party this run has no differential privacy at all. The (ε, δ) "
            "above holds only against parties who do not know the seed; this mode is for "
            "simulation, not for a deployment whose run directory is shared.")
    return (
        "**Noise: secret (privacy.reproducible_noise = false).** Each tree's node noise and "
        "order of clients came from a 128-bit key drawn from OS entropy when the tree "
        "started (numpy.random.SeedSequence()), not from the seed in manifest.json. The key "
        "is kept in memory and in checkpoints/ only (the server's private state, owner-only, "
        "never released), because the noise of a node already released must not be drawn "
        "again after a resume: a resumed run continues the same tree with the same noise.")


def data_paragraph(vocab_source: str) -> str:
    """Where the vocabulary and the export's calibration text came from, and whose data the
    evaluation uses: loudly when the vocabulary is the training clients' raw counts."""
    held_out = ("The held-out evaluation clients (data.eval_clients) are designated public: "
                "they never train, so the guarantee is not about them; the evaluation metrics, "
                "the most-frequent-word baseline" + (", the vocabulary" if vocab_source == "public"
                                                     else "")
                + " and the full-int8 export calibration are computed from their text exactly.")
    if vocab_source == "train":
        return ("**VOCABULARY NOT COVERED: built from the training clients' raw word counts "
                "(data.vocab_source = 'train').** The vocabulary (vocab.txt in every export, and "
                "which word each model row stands for) is an exact, non-private function of the "
                "private training data: a word used by a single client can reveal that client. "
                "The (ε, δ) holds only for the models given the vocabulary, and vocab.txt is not "
                "covered. Use data.vocab_source = 'public' (the default under DP) to avoid this. "
                + held_out)
    return ("**Vocabulary: public (data.vocab_source = 'public').** The vocabulary is the most "
            "frequent words of the held-out clients, not of the training clients, so it reveals "
            "nothing about them. " + held_out)


# --------------------------------------------------------------------------- metrics rows

#: Round-row keys a DP run releases in metrics.jsonl / TensorBoard: the mechanism's public
#: parameters, what the accountant says, the noisy (accounted) adaptive-clipping outputs,
#: and evaluation of the released model on the held-out clients (post-processing).
RELEASE_KEYS = frozenset({
    "type", "round", "model", "skipped", "noise_multiplier", "update_noise_multiplier",
    "noise_std", "mean_noise_std", "clip_norm", "next_clip_norm", "noisy_unclipped_fraction",
    "delta", "accountant",
    # DP-FTRL's public mechanism parameters (strategies/dp_ftrl.py) and what epsilon is about
    "mechanism", "neighboring_relation", "tree", "tree_step", "tree_restart_rounds",
    "prefix_noise_std",
    # final row
    "rounds", "rounds_completed", "parameters", "baseline_accuracy",
    "baseline_accuracy_no_oov_eos", "baseline_word", "stopped_reason", "noise_source",
    "privacy", "privacy_statement",
    # The round a run aborted in, released as the final row's stopped_reason is (it says
    # that the round's clients failed, not what any of them sent); rounds_completed needs it.
    "abort_reason",
    # [audit]: the canary count (epsilon_emp* is under the "epsilon" prefix)
    "audit_canaries", "audit_inserted_by",
})
#: Key prefixes released likewise (evaluation and its smoothed means and baselines on the
#: held-out clients, epsilons, the run's own epsilon in deployment mode, pruning sparsity:
#: a function of the released weights).
RELEASE_PREFIXES = ("eval_", "smoothed_", "baseline_", "epsilon", "run_", "pruning_")

#: What the diagnostics hold, for the statement (anything not released goes there).
DIAGNOSTIC_EXAMPLES = ("train_loss", "train_examples", "num_clipped", "fraction_clipped",
                       "clients_sampled", "clients_completed", "clients_failed",
                       "clients_rejected", "clients_raised", "nodes_failed", "round_time_s",
                       "wall_time_s")


def is_released(key: str) -> bool:
    return key in RELEASE_KEYS or key.startswith(RELEASE_PREFIXES)


def split_row(row: dict) -> tuple[dict, dict]:
    """``(released, diagnostics)`` of one metrics row of a DP run.

    An allowlist: a key nobody classified (a new metric) lands in the diagnostics, never
    in the release. Both halves keep ``type`` / ``round`` / ``model`` so they can be joined;
    every diagnostics row says ``"non_private": true``.
    """
    released = {k: v for k, v in row.items() if is_released(k)}
    diag = {k: v for k, v in row.items() if not is_released(k)}
    for k in ("type", "round", "model"):
        if k in row:
            diag[k] = row[k]
    diag["non_private"] = True
    return released, diag


# --------------------------------------------------------------------------- artifacts

#: (glob relative to the run directory, covered?, why). The first match decides; a file
#: that matches none is a bug (tests/integration/test_dp_release.py walks every file).
#: ``{seeded}`` rules depend on privacy.reproducible_noise, ``{vocab}``/``{calib}`` on where
#: the vocabulary and the int8 calibration text came from.
def artifact_rules(*, reproducible: bool, vocab_public: bool, calibration_public: bool
                   ) -> list[tuple[str, bool, str]]:
    seed_rule = (False, "holds the run seed, from which the DP noise and the cohorts were "
                        "drawn (privacy.reproducible_noise = true): whoever has it can subtract "
                        "the noise") if reproducible else (
                 True, "the configuration and environment, no client data; the seed does not "
                       "determine the noise or the cohorts (OS entropy)")
    vocab_rule = (True, "the vocabulary, built from public data (data.vocab_source), not from "
                        "the training clients") if vocab_public else (
                  False, "the vocabulary, built from the training clients' raw word counts "
                         "(data.vocab_source = 'train'): exact, not private")
    calib_rule = (True, "full-integer model calibrated on public text") if calibration_public else (
                  False, "full-integer model whose activation ranges were calibrated on "
                         "training-client text (not private)")
    model = (True, "a conversion of the released model (post-processing)")
    # W&B's offline run holds the resolved config (the seed with it), the released rows and
    # the names and hashes of the files it logged, so it is covered as config.resolved.toml is.
    wandb_rule = (seed_rule[0], "W&B's offline run (tracking.backend = 'wandb'): the resolved "
                                "config, the metrics.jsonl rows, names and hashes of the files "
                                "it logged, W&B's logs and the installed packages; as for "
                                "config.resolved.toml: " + seed_rule[1])
    return [
        ("**/wandb/**", *wandb_rule),
        ("wandb/**", *wandb_rule),
        ("checkpoints/**", False, "not released: the server's private state (owner-only, 0600)"),
        ("**/checkpoints/**", False, "not released: the server's private state (owner-only, 0600)"),
        ("**privacy_statement.md", True, "this statement: the configuration and the accountant"),
        ("**config.resolved.toml", *seed_rule),
        ("**manifest.json", *seed_rule),
        ("**metrics.jsonl", True, "per-round release: mechanism parameters, epsilon, the noisy "
                                  "adaptive clip, and evaluation of the released models on the "
                                  "held-out clients"),
        ("**diagnostics.jsonl", False, "exact per-round diagnostics marked non_private: "
                                       + ", ".join(DIAGNOSTIC_EXAMPLES)),
        ("**tensorboard/**", True, "the released columns of metrics.jsonl only"),
        ("**plots/*.png", True, "drawn from metrics.jsonl (released columns)"),
        ("**summary.json", True, "the final rows of metrics.jsonl and the statement"),
        ("**summary.md", True, "the final rows of metrics.jsonl and the statement"),
        ("**final_weights.npz", True, "the last released model"),
        ("**audit.json", True, "the empirical privacy audit ([audit]): cosines of the synthetic "
                               "canaries' directions with the released model's change from the "
                               "seeded initial model, and epsilon_emp from them "
                               "(post-processing of the released model; no client data)"),
        ("**tracking.json", True, "where the run is mirrored ([tracking]: the MLflow store's URI "
                                  "or the W&B server and offline run directory, and the run "
                                  "id, no data); the MLflow or W&B run holds copies of "
                                  "config.resolved.toml (also as params), manifest.json, "
                                  "metrics.jsonl, the plots, final_weights.npz and this "
                                  "statement, each covered as its file here"),
        ("**vocab.txt", *vocab_rule),
        ("**model_int8.tflite", *calib_rule),
        ("**model_sparse_int8.tflite", *calib_rule),
        ("**model_*.tflite", *model),
        ("**metadata.json", vocab_public and calibration_public,
         "the bundle's description: model config, file hashes, where the vocabulary and the "
         "calibration text came from" + ("" if vocab_public and calibration_public else
                                          " (hashes of and details from files not covered)")),
        ("**report.json", calibration_public, _REPORT_WHY[calibration_public]),
        ("**report.md", calibration_public, _REPORT_WHY[calibration_public]),
    ]


_REPORT_WHY = {
    True: "accuracy, parity and latency of each conversion on the held-out clients",
    False: "also measures the conversions on training-client calibration text (not private)",
}


def _match(rel: str, pattern: str) -> bool:
    from fnmatch import fnmatchcase

    # "**" spans directories; a leading "**" also matches nothing (a file at the top).
    if pattern.startswith("**") and not pattern.startswith("**/"):
        return fnmatchcase(rel, "*" + pattern[2:]) or fnmatchcase(rel, pattern[2:])
    if pattern.startswith("**/"):
        return fnmatchcase(rel, pattern[3:]) or fnmatchcase(rel, "*/" + pattern[3:])
    return fnmatchcase(rel, pattern)


def classify(rel: str, rules: list[tuple[str, bool, str]]) -> tuple[bool, str] | None:
    """``(covered, why)`` of the file at ``rel`` (posix, relative), or None if no rule fits."""
    for pattern, covered, why in rules:
        if _match(rel, pattern):
            return covered, why
    return None


def artifact_listing(root, rules: list[tuple[str, bool, str]], extra: list[str] = ()) -> str:
    """A markdown list of every file under ``root`` (and the ``extra`` relative paths that do
    not exist yet), each marked covered or not covered, with the reason."""
    from pathlib import Path

    root = Path(root)
    rels = sorted({p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
                   and not p.name.endswith(".tmp")} | set(extra))
    lines = []
    for rel in rels:
        got = classify(rel, rules)
        if got is None:
            lines.append(f"- `{rel}`: **not covered** (unclassified file: treat as private)")
            continue
        covered, why = got
        lines.append(f"- `{rel}`: {'covered' if covered else '**not covered**'}: {why}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the statement file

STATEMENT = "privacy_statement.md"
LISTING_HEADER = "## What the (ε, δ) covers, file by file"


def rules_for(cfg, *, calibration_public: bool | None = None) -> list[tuple[str, bool, str]]:
    """The artifact rules of a run with config ``cfg`` (calibration: the export's choice;
    by default, the same source as the vocabulary)."""
    vocab_public = getattr(cfg.data, "vocab_source", "train") != "train"
    return artifact_rules(
        reproducible=cfg.privacy.reproducible_noise != "false", vocab_public=vocab_public,
        calibration_public=vocab_public if calibration_public is None else calibration_public)


def covers_section(run_dir, rules, export_dirs=()) -> str:
    from pathlib import Path

    run_dir = Path(run_dir)
    parts = [LISTING_HEADER, "",
             "Released means everything in the run directory except `checkpoints/`, plus "
             "every export. The (ε, δ) above covers the sequence of released models and what "
             "is computed from them alone or from data that is not the training clients' "
             "(post-processing: evaluation on the held-out clients, TFLite conversion). It "
             "does not cover anything marked **not covered** below. Every file of the run "
             "directory" + (" and of the export" if export_dirs else "") + " is listed.", "",
             f"Run directory `{run_dir}`:", "",
             artifact_listing(run_dir, rules, extra=[] if (run_dir / STATEMENT).exists()
                              else [STATEMENT])]
    for d in export_dirs:
        d = Path(d)
        try:
            d.resolve().relative_to(run_dir.resolve())
            continue  # inside the run directory: already listed
        except ValueError:
            pass
        parts += ["", f"Export `{d}`:", "", artifact_listing(d, rules)]
    return "\n".join(parts) + "\n"


def write_statement(run_dir, statements: dict[str, str], rules, export_dirs=()) -> None:
    """``privacy_statement.md`` in ``run_dir``: each model's statement (one model: just
    its text) and the file-by-file listing of the release."""
    from pathlib import Path

    from fl_sim.results import atomic_write_text

    run_dir = Path(run_dir)
    if len(statements) == 1:
        body = next(iter(statements.values()))
    else:
        body = "\n\n".join(f"## {name}\n\n{text}" for name, text in statements.items())
    head = f"# Privacy statement\n\n{body}\n\n"
    if not (run_dir / STATEMENT).exists():
        atomic_write_text(run_dir / STATEMENT, head)  # so the listing lists itself
    atomic_write_text(run_dir / STATEMENT, head + covers_section(run_dir, rules, export_dirs))


def refresh_listing(run_dir, rules, export_dirs=()) -> None:
    """Rewrite the listing of an existing statement (after an export added files)."""
    from pathlib import Path

    from fl_sim.results import atomic_write_text

    path = Path(run_dir) / STATEMENT
    text = path.read_text(encoding="utf-8")
    head = text.split(LISTING_HEADER, 1)[0]
    atomic_write_text(path, head + covers_section(run_dir, rules, export_dirs))
