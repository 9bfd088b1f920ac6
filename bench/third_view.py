"""(j) Would fusion beat Trees+embeddings if the heads saw the trees' features too? (issue 15)

`Trees+embeddings` (gradient-boosted trees on the hand-made features plus both views' embeddings) is the best
non-fusion model of every run we measured, and fusion does not beat it. Its extra input is the hand-made features:
raw columns and per-account history (`tabular_features`) and graph-pattern counts (`pattern_features`). This script
gives the same features to a fusion head, each beside the view it belongs to, and compares in one run, on one split,
with the same seeds:

- `Gated`: the run's head on (graph embedding, sequence embedding);
- `Gated+features`: the same head on ([graph embedding | pattern features], [sequence embedding | raw and history
  features]);
- `Gated[features only]`: the same head on (pattern features, raw and history features): what the features give a
  neural head without the embeddings;
- `Trees+embeddings`: the run's tree baseline (deterministic, one fit).

The features enter the heads through a quantile transform to a normal distribution fitted on training rows only
(counts and amounts are heavy-tailed), missing values as 0 with a missing-indicator column, columns no training row
has dropped (as the trees do). Heads train with the run's TrainConfig (ExperimentConfig defaults), --seeds seeds, in
worker processes (07c_workers). The table: validation and test AP (mean and spread over seeds), and each head's paired
bootstrap test-AP difference against Trees+embeddings (95% interval, 2,000 resamples, the verdict's method). Which
head would be the run's best fusion model is chosen on validation AP, never on test.

    python bench/third_view.py                                                    # the default run's simulator data
    python bench/third_view.py --dataset amlsim --data-path ../shared/data/aml_dev  # third-party AMLSim (aml_dev)
"""
from __future__ import annotations
import os, statistics, time
from pathlib import Path
import common


def add_args(ap):
    g = ap.add_argument_group('(j) tabular features as part of the views')
    g.add_argument('--dataset', default='synthetic', help="ExperimentConfig.dataset (synthetic, amlsim, ibm_aml, paysim, ...)")
    g.add_argument('--data-path', default=None, help='ExperimentConfig.data_path for a real dataset')
    g.add_argument('--nrows', type=int, default=None, help='read at most this many rows')
    g.add_argument('--seeds', type=int, default=3, help='head seeds (ExperimentConfig default 3)')
    g.add_argument('--cache-dir', default=None, help='embedding-store cache (default outputs/cache, as a run)')
    g.add_argument('--workers', type=int, default=0, help='head worker processes (0: one per core)')


def _features(tx, store, config):
    "(raw + history features, pattern features) of the store's rows, joined by tx_id, float32."
    import pandas as pd
    from fusion_nb.baselines import tabular_features
    from fusion_nb.patterns import pattern_features
    from fusion_nb.sequence_view import build_histories
    tab, _ = tabular_features(tx, build_histories(tx, k=config.history_k), k=config.history_k)
    pat, _ = pattern_features(tx)
    rows = pd.Index(tx.frame['tx_id'].to_numpy()).get_indexer(store.ids)
    assert (rows >= 0).all(), 'store ids missing from the transactions table'
    return tab[rows], pat[rows]


def _neural_input(X, train):
    "X for a head: quantile-normal transform fitted on `train` rows, NaN -> 0 plus missing indicators, empty columns dropped."
    import numpy as np
    from sklearn.preprocessing import QuantileTransformer
    X = X[:, ~np.isnan(X[train]).all(0)]
    qt = QuantileTransformer(n_quantiles=1000, output_distribution='normal', subsample=200_000, random_state=0)
    qt.fit(X[train])
    Z = qt.transform(X).astype(np.float32)
    missing = np.isnan(X[train]).any(0)
    return np.hstack([np.nan_to_num(Z, nan=0.0), np.isnan(X[:, missing]).astype(np.float32)])


def run(args, out) -> list[str]:
    import numpy as np
    from fusion_nb.experiment import ExperimentConfig, load_store, tree_records
    from fusion_nb.fusion import build_head
    from fusion_nb.engine import seed_everything
    from fusion_nb.stats import paired_bootstrap_ap_diff
    from fusion_nb.train import predict_proba
    from fusion_nb.workers import fit_in_workers, worker_context
    from sklearn.metrics import average_precision_score
    config = ExperimentConfig(dataset=args.dataset, data_path=args.data_path, nrows=args.nrows)
    t0 = time.perf_counter()
    store, tx = load_store(config, cache_dir=Path(args.cache_dir) if args.cache_dir else common.REPO_ROOT / 'outputs' / 'cache')
    t_views = time.perf_counter() - t0
    tab, pat = _features(tx, store, config)
    train = store.split == 'train'
    tab_z, pat_z = _neural_input(tab, train), _neural_input(pat, train)
    inputs = {'Gated': (store.gnn, store.seq), 'Gated+features': (np.hstack([store.gnn, pat_z]), np.hstack([store.seq, tab_z])),
              'Gated[features only]': (pat_z, tab_z)}
    seeds = range(config.seed, config.seed + args.seeds)
    heads = {}
    for name, (g, q) in inputs.items():
        for seed in seeds:
            seed_everything(seed)
            heads[f'{name} seed {seed}'] = build_head(config.model, g.shape[1], q.shape[1], hidden_dim=config.hidden_dim,
                                                      dropout=config.dropout)
    by = {s: store.split == s for s in ('train', 'val', 'test')}
    scores = {}
    t1 = time.perf_counter()
    for name, (g, q) in inputs.items():                   # one fit_in_workers call per input (its own train/val arrays)
        names = [f'{name} seed {seed}' for seed in seeds]
        split = lambda s: (g[by[s]], q[by[s]], store.label[by[s]])
        group = {n: heads[n] for n in names}
        configs = {n: config.train_config(seed, 'cpu') for n, seed in zip(names, seeds)}
        if worker_context() is not None and args.workers != 1:
            fit_in_workers(group, split('train'), split('val'), configs, workers=args.workers or os.cpu_count() or 1)
        else:
            from fusion_nb.train import fit
            for n in names: fit(group[n], split('train'), split('val'), configs[n], desc=n)
        scores[name] = {s: np.stack([predict_proba(heads[n], g[by[s]], q[by[s]]) for n in names]) for s in ('val', 'test')}
    t_heads = time.perf_counter() - t1
    t2 = time.perf_counter()
    trees = tree_records(store, tx, config)
    tree_record, tree_out = trees[('Trees+embeddings', config.seed)]
    tree_val = tree_record['val']['average_precision']
    t_trees = time.perf_counter() - t2
    y_val, y_test = store.label[by['val']], store.label[by['test']]
    base = tree_out['p_test'][None]
    rows = []
    for name, s in scores.items():
        vals = [average_precision_score(y_val, p) for p in s['val']]
        tests = [average_precision_score(y_test, p) for p in s['test']]
        diff = paired_bootstrap_ap_diff(y_test, s['test'], base, seed=config.seed)
        rows.append(dict(model=name, seeds=len(tests), val_ap=round(statistics.mean(vals), 4),
                         test_ap=round(statistics.mean(tests), 4), test_ap_sd=round(statistics.stdev(tests), 4) if len(tests) > 1 else 0.0,
                         vs_trees_emb=round(diff['diff'], 4), ci_low=round(diff['low'], 4), ci_high=round(diff['high'], 4)))
    rows.append(dict(model='Trees+embeddings', seeds=1, val_ap=round(tree_val, 4),
                     test_ap=round(average_precision_score(y_test, tree_out['p_test']), 4), test_ap_sd=0.0,
                     vs_trees_emb=0.0, ci_low=None, ci_high=None))
    fusion = [r for r in rows if r['model'] != 'Trees+embeddings' and 'features only' not in r['model']]
    best = max(fusion, key=lambda r: r['val_ap'])
    return [common.report('(j) fusion heads with the trees\' features vs Trees+embeddings', rows, list(rows[0]),
                          [f'{store.n:,} transactions ({args.dataset}{", " + args.data_path if args.data_path else ""}), '
                           f'{int(train.sum()):,} training rows, {int(store.label[by["test"]].sum())} test frauds; head '
                           f'{config.model} with ExperimentConfig defaults, seeds {list(seeds)}; features: {tab_z.shape[1]} '
                           f'raw + history (beside the sequence view), {pat_z.shape[1]} pattern (beside the graph view), '
                           f'after the quantile transform and missing indicators.',
                           'vs_trees_emb: paired bootstrap test-AP difference against Trees+embeddings (mean of per-seed APs; '
                           '2,000 resamples, 95% interval ci_low..ci_high).',
                           f'best fusion model on validation: {best["model"]} (val AP {best["val_ap"]}); test AP difference '
                           f'{best["vs_trees_emb"]:+.4f}, 95% CI [{best["ci_low"]:+.4f}, {best["ci_high"]:+.4f}].',
                           f'seconds: views {t_views:.0f} (cached when 0), heads {t_heads:.0f}, trees {t_trees:.0f}.'],
                          out, 'j_third_view')]


def main(argv=None):
    common.script_main(__doc__, 'third_view', add_args, run, argv)


if __name__ == '__main__':
    main()
