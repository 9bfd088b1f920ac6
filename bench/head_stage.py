"""(a4) The default run's head stage on the CPU: its heads one at a time (today's loop) vs spread over worker processes.

A run with `-p model Gated` trains 9 heads (Gated x both / gnn only / seq only x 3 seeds) on one embedding store, each
with early stopping. This script trains exactly those 9 on the default run's store (the simulator's 100,000
transactions, built once and cached, or --store PATH), with the run's parameters (ExperimentConfig defaults), in
each of these loops:

- `fit, one at a time, T thread(s)` for each T of --loop-threads: what a run did before 07c_workers (T = the run's
  torch threads, by default the idle cores);
- `fit_in_workers, N workers` for each N of --workers: what a run does now on a Linux CPU (head_workers=0: one
  worker per torch thread), each worker on one thread.

Prints wall seconds (best and median of --repeat rounds, run interleaved), each loop's time against the first loop,
the epochs trained, and the mean test AP per view variant over the seeds (the models must be as good as before: a
worker trains exactly the model `fit` trains on one thread).

    python bench/head_stage.py                                   # (2-core machine) 2 and 1 threads vs 2 workers, 2 rounds
    python bench/head_stage.py --store outputs/cache/views-synthetic-XXXX.npz --repeat 3
    python bench/head_stage.py --loop-threads 1 8 --workers 4 8  # a bigger machine
"""
from __future__ import annotations
import os, statistics, time
import common


def add_args(ap):
    g = ap.add_argument_group('(a4) head stage')
    g.add_argument('--store', default=None, help="an embedding store (.npz); default: the default run's, built and cached under outputs/cache")
    g.add_argument('--model', default='Gated', help='the run\'s model parameter (Gated: 9 heads; all: 36)')
    g.add_argument('--loop-threads', type=int, nargs='+', default=None,
                   help='torch threads of the one-at-a-time loop, one row each; the first is the reference row (default: the cores, then 1)')
    g.add_argument('--workers', type=int, nargs='+', default=None, help='worker counts, one row each (default: the cores)')
    g.add_argument('--repeat', type=int, default=None, help='rounds over all loops, interleaved (default 2; --quick 1)')


def _store(args):
    from fusion_nb.embeddings import load_embeddings
    from fusion_nb.experiment import ExperimentConfig, load_store
    if args.store: return load_embeddings(args.store), args.store
    store, _ = load_store(ExperimentConfig(), cache_dir=common.REPO_ROOT / 'outputs' / 'cache', progress=True)
    return store, 'the default run (ExperimentConfig(), cached under outputs/cache)'


def _trained(plan, config, data, views_of, threads=None, workers=None):
    "Every model of `plan` trained one at a time on `threads` threads, or by fit_in_workers; {item: head}, and the results."
    import torch
    from fusion_nb.experiment import _new_head
    from fusion_nb.train import fit
    from fusion_nb.workers import fit_in_workers
    heads = {item: _new_head(config, item[0], views_of[item[1]], item[2]) for item in plan}
    triple = lambda item, s: (*views_of[item[1]][s], data[s][2])
    if workers:
        named = {f'{item}': head for item, head in heads.items()}
        results = fit_in_workers(named, data['train'], data['val'], {f'{i}': config.train_config(i[2], 'cpu') for i in plan},
                                 views={f'{i}': i[1] for i in plan}, workers=workers, progress=False)
        return heads, {item: results[f'{item}'] for item in plan}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return heads, {item: fit(heads[item], triple(item, 'train'), triple(item, 'val'), config.train_config(item[2], 'cpu'),
                                 progress=False) for item in plan}
    finally:
        torch.set_num_threads(before)


def _test_ap(heads, data, views_of) -> dict:
    "Mean test AP over the seeds, per view variant."
    from sklearn.metrics import average_precision_score
    from fusion_nb.train import predict_proba
    by_views = {}
    for (head, views, seed), model in heads.items():
        p = predict_proba(model, *views_of[views]['test'])
        by_views.setdefault(views, []).append(average_precision_score(data['test'][2], p))
    return {views: round(statistics.mean(aps), 4) for views, aps in by_views.items()}


def run(args, out) -> list[str]:
    from fusion_nb.experiment import ExperimentConfig, _run_plan, _store_splits, _views_of
    from fusion_nb.fusion import resolve_models
    from fusion_nb.workers import worker_context
    cores = os.cpu_count() or 1
    loop_threads, workers = args.loop_threads or list(dict.fromkeys([cores, 1])), args.workers or [cores]
    if worker_context() is None: workers = []                     # fork: Linux only (07c_workers)
    store, source = _store(args)
    config = ExperimentConfig(model=args.model)
    plan = _run_plan(resolve_models(config.model), config)
    data = _store_splits(store)
    views_of = {views: _views_of(data, views) for views in dict.fromkeys(v for _, v, _ in plan)}
    loops = [(f'fit, one at a time, {t} thread(s)', dict(threads=t)) for t in loop_threads]
    loops += [(f'fit_in_workers, {n} workers', dict(workers=n)) for n in workers]
    _trained(plan[:1], config, data, views_of, threads=1)         # first calls (lazy initialisation) not timed
    times, epochs, aps = {}, {}, {}
    for _ in range(args.repeat or (1 if args.quick else 2)):      # interleaved: a busy spell hits every loop
        for name, how in loops:
            t0 = time.perf_counter()
            heads, results = _trained(plan, config, data, views_of, **how)
            times.setdefault(name, []).append(time.perf_counter() - t0)
            epochs[name] = sum(r.epochs_run for r in results.values())
            aps[name] = _test_ap(heads, data, views_of)
            print(f'  {name}: {times[name][-1]:.1f} s, {epochs[name]} epochs, test AP {aps[name]}', flush=True)
    base = min(times[loops[0][0]])
    rows = [dict(loop=name, models=len(plan), best_s=round(min(times[name]), 1), median_s=round(statistics.median(times[name]), 1),
                 time_vs_first=round(min(times[name]) / base, 3), epochs=epochs[name],
                 **{f'test_ap_{v}': ap for v, ap in aps[name].items()}) for name, _ in loops]
    return [common.report('(a4) the head stage: one at a time vs worker processes', rows,
                          list(rows[0]),
                          [f'{len(plan)} heads of -p model {args.model} on {store.n:,} transactions ({source}), '
                           f'{len(data["train"][2]):,} training rows, ExperimentConfig defaults (early stopping), '
                           f'{cores} cores, rounds interleaved.',
                           'time_vs_first: best seconds relative to the first loop, by default one at a time on all cores: '
                           'what a run did before (issue 13 asks <= 1/3 of it).',
                           'test_ap_*: mean test AP over the seeds per view variant; a worker trains bit for bit the model '
                           'fit trains on one thread, so the workers rows equal the 1-thread row.'],
                          out, 'a4_head_stage')]


def main(argv=None):
    common.script_main(__doc__, 'head_stage', add_args, run, argv)


if __name__ == '__main__':
    main()
