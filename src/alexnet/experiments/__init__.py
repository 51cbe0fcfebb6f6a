"""Foundations for reproducing the paper's findings with several seeds and error bars.

An experiment plans its variants as ordinary training runs, measures one row per run,
compares the variants seed by seed and writes OUT/result.json, OUT/table.md and its plots. The
modules (imported one by one; nothing is imported here, so `import alexnet.experiments` is
cheap):

`catalog` (torch-free) -- NAMES, BUDGETS, FAMILIES, DEFAULT_SEEDS, FAMILIES_OF, default_output;
    `registry` -- get(name): the experiment's module (`relu_tanh`, `ablations`, `depth`,
    `retrieval`, `paper_net`, `towers`), each with NAME, plan(ctx) -> Plan(runs, pending) and
    gather(ctx, outcomes) -> result.
`common` -- Context (one `alexnet reproduce` call; finish() writes the result), Plan, the
    experiments' recipe per family (family_config), with_options, final_errors, the words
    notes use for a config (training_words, data_words).
`runner` -- RunSpec(name, cfg, variant, seed, label); run_all(specs, out, fit=, rundir=) ->
    [RunOutcome(spec, run_dir, action "reused" | "resumed" | "new", result)]: trains into
    OUT/runs/<name>/, reusing finished runs and resuming checkpointed ones (a run of another
    config is refused); RunStopped when a training was stopped by a signal.
`fanout` -- reproduce(ctx, module[, train]): trains what is missing stage by stage, then
    gathers from the run directories; train_one (`--run I`), jobs_trainer (`--jobs N`),
    plan_records (`--plan`). `plan` -- train_argv(cfg): a config as `alexnet train` flags.
`stats` -- one value per seed in, an `Estimate(estimate, ci95 | None, n, method)` out:
    mean_ci, paired_diff_ci, welch_diff_ci, ratio_ci, paired_ratio_ci (bootstraps: RESAMPLES =
    10,000 draws of numpy.random.default_rng(SEED = 0)); paired_sign_test and
    censored_interval for right-censored values; reproduced(ci, direction, null).
`claims` -- CLAIMS: the paper's findings as `Claim(key, experiment, section, words, quantity,
    a, b, kind, direction, numbers, paper_data)`; claim(key), claims_for(experiment).
`result` -- run_row(variant, seed, run_dir, out, censored=, **quantities); compare(runs,
    quantity, a, b, ...) and compare_claim(runs, claim, ...) -> one `comparisons` row;
    compare_per_item (over test images or kernels); summarize(runs); build_result;
    write_result(out, result) -> (OUT/result.json, OUT/table.md); PER_INVOCATION.
    `table` -- table_markdown(result): table.md.
`analyses` -- steps_to_threshold (Fig. 1, §3.1); label_agreement(s), pixel_features (Fig. 4,
    §6.1); colour_specificity, tower_scores, compare_towers (Fig. 3, §6.1);
    per_image_top1_errors (§4.1). `timing` -- step_times: each variant's SGD step timed
    interleaved in one process on the same batches (relu-tanh's time to a threshold).
`plots` (matplotlib) -- curves_plot (Fig. 1 style), delta_bars, scores_plot.
"""
