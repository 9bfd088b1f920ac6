"""Run the four benchmarks of issue 6 and print their tables: (a) fusion training step and scoring, (b) sequence
building, (c) graph build and GNN epochs, (d) the whole pipeline vs size.

    python bench/run_all.py --quick                          # about 3 minutes
    python bench/run_all.py                                  # full: (d) at 100k, 1M and 6.36M transactions
    python bench/run_all.py --sizes 100000 1000000 6360000 --pipeline-timeout 1500
    python bench/run_all.py --only a b                       # a subset

Figures (CSV, TXT, PNG, the pipeline's per-stage logs and meta-*.json) go to a new folder,
outputs/bench/<timestamp>_all/ (or --out, which must be new or empty). Benchmarks are not tests: nothing
here asserts a speed, and nbdev-test never runs them.
"""
from __future__ import annotations
import argparse, time, traceback
import common
import fusion_step, histories, graph, pipeline

BENCHMARKS = {'a': ('fusion_step', fusion_step), 'b': ('histories', histories), 'c': ('graph', graph), 'd': ('pipeline', pipeline)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(ap)
    ap.add_argument('--only', nargs='+', choices=list(BENCHMARKS), default=list(BENCHMARKS), help='run only these benchmarks')
    for _, module in BENCHMARKS.values(): module.add_args(ap)
    args = ap.parse_args(argv)
    common.pin_threads(args.threads)
    out = common.out_dir(args.out, 'all')
    print(f'benchmarks {" ".join(args.only)} -> {out}  (threads={args.threads}, device={args.device}, quick={args.quick}, '
          f'load {common.load_average()})', flush=True)
    started, texts, failed = time.perf_counter(), {}, []
    for key in args.only:
        name, module = BENCHMARKS[key]
        t0 = time.perf_counter()
        try: texts[key] = module.run(args, out)
        except Exception as e:
            failed.append(key)
            texts[key] = [f'== ({key}) {name} FAILED: {type(e).__name__}: {e} ==']
            print(traceback.format_exc(), flush=True)
        print(f'[{key}] {name}: {time.perf_counter() - t0:.0f} s', flush=True)
    total = time.perf_counter() - started
    summary = '\n\n'.join(t for key in args.only for t in texts[key])
    summary += f'\n\ntotal wall time {total:.0f} s; load average at the end {common.load_average()}; figures in {out}\n'
    from fusion_nb.env import atomic_write_text
    atomic_write_text(out / 'summary.txt', summary)
    common.write_meta(out, 'all', args, dict(total_s=round(total, 1), failed=failed))
    print('\n' + '#' * 100 + '\nALL TABLES\n' + '#' * 100 + '\n\n' + summary, flush=True)
    if failed: raise SystemExit(f'benchmarks failed: {failed}')


if __name__ == '__main__':
    main()
