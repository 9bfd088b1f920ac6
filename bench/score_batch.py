"""Batch scoring of new transactions (issue 14): `FraudModel.score` end to end (both views for the new rows from the
run's state, then the heads) in transactions/s against file size, and the heads alone on ready embeddings.

A run is needed: `--run RUN_DIR`, or a tiny one is trained into the output folder first (the smoke configuration on
the built-in simulator, about 20 s). New transactions come after the run's data: `fusion_nb.serve.later_transactions`
simulates a further log with the run's population (the same account names), times after the run's last time and ids
after its last id.
Each size is scored `--repeat` times from the same starting state (`update_state=False`), after one warm-up call;
the table gives the best and the median.

Targets (issue 14, 2-core CPU): >= 20,000 transactions/s end to end, >= 500,000/s for the heads alone.
"""
from __future__ import annotations
import json, os, statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import script_main, report, timed


def tiny_run(folder: Path, n_transactions: int = 3000, smoke: bool = True) -> Path:
    "Train a run with a model bundle on the simulator: the smoke configuration, or the default encoders, few epochs."
    from fusion_nb.experiment import run_experiment
    settings = dict(smoke=True) if smoke else dict(seeds=1, epochs=3, gnn_epochs=5, seq_epochs=1)
    results = run_experiment(n_transactions=n_transactions, baselines=False, trees=False, output_dir=str(folder),
                             progress=False, **settings)
    return Path(results['run']['dir'])


def later_rows(run_dir: Path, n: int) -> list[dict]:
    "`n` new transactions after a synthetic run's data (`fusion_nb.serve.later_transactions`) as plain records."
    from fusion_nb.serve import later_transactions
    return later_transactions(run_dir, n).to_dict('records')


def add_args(ap):
    ap.add_argument('--run', default=None, help='a run folder with a model bundle (default: train one into the output folder)')
    ap.add_argument('--train-rows', type=int, default=20_000,
                    help='without --run: train the default encoders on this many simulated rows (--quick: the smoke run)')
    ap.add_argument('--sizes', type=int, nargs='+', default=[1_000, 10_000, 100_000], help='new transactions per file')
    ap.add_argument('--repeat', type=int, default=3, help='timed calls per size (after one warm-up)')
    ap.add_argument('--head-rows', type=int, default=1_000_000, help='rows of the heads-alone measurement')
    ap.add_argument('--head-chunks', type=int, nargs='+', default=[2048],
                    help='rows per step of the heads-alone measurement (fusion_nb.bundle.HEAD_CHUNK_ROWS is the default); '
                         'with --unfolded, each also with the heads as trained (batch norm and dropout kept)')
    ap.add_argument('--unfolded', action='store_true', help='also time the heads as trained, not in inference form')
    ap.add_argument('--head-workers', type=int, nargs='+', default=[1, 0],
                    help="CPU threads scoring chunks side by side in the heads-alone measurement (mean_scores' workers; "
                         "0: its default, torch's thread count; 1: one chunk at a time, each operator on torch's threads)")


def head_alone(model, frame, rows: int, repeat: int, chunks=(None,), unfolded=False, workers=(0,)) -> list[dict]:
    """The heads alone on ready embeddings (`fusion_nb.bundle.mean_scores`), the new rows' embeddings tiled to `rows`:
    one row per chunk size and worker count, in inference form (as a bundle loads them) and, with `unfolded`, as trained."""
    import numpy as np
    from fusion_nb.bundle import mean_scores, load_heads, HEAD_CHUNK_ROWS
    gnn, seq, _ = model.embed(frame)
    reps = -(-rows // len(gnn))
    gnn, seq = np.tile(gnn, (reps, 1))[:rows], np.tile(seq, (reps, 1))[:rows]
    forms = [('inference form', model.heads)]
    if unfolded: forms.append(('as trained', load_heads(model.bundle.path, model.bundle.meta, inference=False)))
    out = []
    for form, heads in forms:
        for chunk, n in ((chunk or HEAD_CHUNK_ROWS, n or None) for chunk in chunks for n in workers):
            score = lambda: mean_scores(heads, gnn, seq, chunk, workers=n)
            (times, _), share = cpu_share(lambda: timed(score, repeat=repeat, warmup=1))
            threads = 'workers: torch threads' if n is None else f'workers: {n}'
            out.append(dict(what=f'heads alone: mean_scores, {len(heads)} head(s), {form}, chunks of {chunk}, {threads}',
                            rows=rows, best_s=min(times), median_s=statistics.median(times), tx_per_s=rows / min(times),
                            median_tx_per_s=rows / statistics.median(times), cpu_share=share))
            print(out[-1], flush=True)
    return out


def cpu_share(fn):
    "(fn(), this process's CPU seconds / wall seconds while it ran): below 1 thread's worth, other work took the CPU."
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, (time.process_time() - cpu) / (time.perf_counter() - wall)


def run(args, out: Path):
    import pandas as pd
    from fusion_nb.scoring import load_model
    sizes = [s for s in args.sizes if s <= 10_000] if args.quick else args.sizes
    run_dir = Path(args.run) if args.run else tiny_run(out / 'run', *((3000, True) if args.quick else (args.train_rows, False)))
    model = load_model(run_dir)
    rows = later_rows(run_dir, max(sizes))
    table = []
    for size in sizes:
        frame = pd.DataFrame.from_records(rows[:size])
        (times, scores), share = cpu_share(lambda: timed(lambda: model.score(frame), repeat=args.repeat, warmup=1))
        assert len(scores) == size
        table.append(dict(what='end to end: model.score', rows=size, best_s=min(times), median_s=statistics.median(times),
                          tx_per_s=size / min(times), median_tx_per_s=size / statistics.median(times), cpu_share=share))
        print(table[-1], flush=True)
    table += head_alone(model, pd.DataFrame.from_records(rows[:10_000]), 100_000 if args.quick else args.head_rows, args.repeat,
                        args.head_chunks, args.unfolded, args.head_workers)
    report('batch scoring of new transactions', table,
           ['what', 'rows', 'best_s', 'median_s', 'tx_per_s', 'median_tx_per_s', 'cpu_share'],
           [f'run: {run_dir}; torch threads {args.threads}; {os.cpu_count()} cores shared with other work',
            'cpu_share: CPU seconds of this process per wall second (1.0 = one whole core; lower: the machine was busy)',
            'targets: >= 20,000 tx/s end to end; >= 500,000 tx/s heads alone'], out, 'score_batch')


if __name__ == '__main__':
    script_main(__doc__, 'score_batch', add_args, run)
