"""Foundations for reproducing the paper's findings with several seeds and error bars.

An experiment trains its variants as ordinary runs, measures one row per run, compares the
variants seed by seed and writes OUT/result.json, OUT/table.md and its plots. The modules
(imported one by one; nothing is imported here, so `import alexnet.experiments` is cheap):

`stats` -- one value per seed in, an `Estimate(estimate, ci95 | None, n, method)` out:
    mean_ci(values)                  mean, Student t 95% interval
    paired_diff_ci(a, b)             mean(a_i - b_i), t interval of the per-seed differences
    welch_diff_ci(a, b)              mean(a) - mean(b), Welch interval
    ratio_ci(a, b)                   mean(a) / mean(b), independent percentile bootstrap
    paired_ratio_ci(a, b)            mean(a) / mean(b), paired bootstrap (seeds keep their pairs)
    reproduced(ci, direction, null)  True / False / None (no interval: n = 1)
    Bootstraps: RESAMPLES = 10,000 draws of numpy.random.default_rng(SEED = 0).
`claims` -- CLAIMS: the paper's findings as `Claim(key, experiment, section, words, quantity,
    a, b, kind, direction, numbers, paper_data)`; claim(key), claims_for(experiment).
`result` -- run_row(variant, seed, run_dir, out, **quantities) -> one `runs` row;
    compare(runs, quantity, a, b, paired=, kind=, direction=, paper=, claim=, note=) and
    compare_claim(runs, claim, quantity=, note=) -> one `comparisons` row;
    summarize(runs) -> `summary` (recomputable from the file);
    build_result(experiment, claim, dataset, budget, runs, comparisons, wall_s) -> dict;
    write_result(out, result) -> (OUT/result.json, OUT/table.md); load_result(path).
`runner` -- run_all([(run_name, TrainConfig[, label]), ...], out, fit=, rundir=) ->
    [RunOutcome(name, run_dir, action "reused" | "resumed" | "new", result)]: trains into
    OUT/runs/<run_name>/, reusing finished runs and resuming checkpointed ones; RunStopped when
    a training was stopped by a signal.
`analyses` -- steps_to_threshold(steps_records, threshold) -> Crossing(step, seconds, images,
    epoch) | None (Fig. 1, §3.1); label_agreement(s)(query_feats, query_labels, base_feats,
    base_labels, k) and pixel_features(images) (Fig. 4, §6.1); colour_specificity(conv1 weight
    (O, 3, kh, kw)) -> (O,), tower_scores(scores, 2), compare_towers(a, b) -> TowerTest
    (Fig. 3, §6.1).
`plots` (matplotlib) -- curves_plot(out, [Curve(variant, seed, x, y)]) (Fig. 1 style),
    delta_bars(out, comparisons), scores_plot(out, {name: scores}).
"""
