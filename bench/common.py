"""Shared plumbing of the benchmarks: output folders, thread settings, timing, tables, CSV and PNG files.

Benchmarks are scripts, not tests: nbdev-test never runs them and nothing here asserts a speed.
Import this module before fusion_nb or torch (it turns tqdm bars off and pins BLAS threads).
"""
from __future__ import annotations
import argparse, csv, io, json, os, platform, statistics, sys, time
from pathlib import Path

os.environ.setdefault('TQDM_DISABLE', '1')          # progress bars would interleave with the tables

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO_ROOT / 'outputs' / 'bench'


def pin_threads(threads: int) -> int:
    "Use `threads` CPU threads in torch and (for child processes) in OpenMP/BLAS; returns it."
    for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'): os.environ[var] = str(threads)
    import torch
    torch.set_num_threads(threads)
    return threads


def add_common_args(ap):
    "Arguments every benchmark takes."
    ap.add_argument('--quick', action='store_true', help='small sizes only (the whole suite in about 3 minutes)')
    ap.add_argument('--threads', type=int, default=1,
                    help='torch/BLAS CPU threads (default 1: on a shared machine a second thread that is not scheduled stalls every op)')
    ap.add_argument('--out', default=None, help='output folder (new or empty); default outputs/bench/<timestamp>_<name>/')
    ap.add_argument('--device', default='cpu', help="device of the torch work in (a) and (c): 'cpu' (default), 'cuda', 'auto'")


def out_dir(path, name: str) -> Path:
    "A new output folder: `path` if it is new or empty, else a fresh `outputs/bench/<timestamp>_<name>`."
    if path is None:
        from fusion_nb.env import new_run_dir
        return new_run_dir(DEFAULT_ROOT, name)
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f'--out {path} exists and is not an empty folder; benchmarks never overwrite earlier '
                              f'figures. Pass a new folder, or leave --out out to get outputs/bench/<timestamp>_{name}/.')
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_average() -> str:
    "The 1/5/15-minute load averages as text (how busy the shared machine was)."
    return '/'.join(f'{x:.2f}' for x in os.getloadavg())


def machine() -> dict:
    "What the figures were measured on."
    import torch
    info = dict(python=platform.python_version(), torch=torch.__version__, cpu_count=os.cpu_count(),
                torch_threads=torch.get_num_threads(), platform=platform.platform(), processor=platform.processor())
    if torch.cuda.is_available(): info['cuda_device'] = torch.cuda.get_device_name(0)
    return info


def sync(device):
    "Wait for queued work on `device` (so that timings include it)."
    import torch
    if str(device).startswith('cuda'): torch.cuda.synchronize()


def timed(fn, repeat=1, warmup=0, device='cpu'):
    "(seconds of each of `repeat` calls of `fn`, last result); `warmup` untimed calls first."
    for _ in range(warmup): fn()
    times, result = [], None
    for _ in range(repeat):
        result = None                   # free the last result first: every call starts from the same memory state
        sync(device); start = time.perf_counter()
        result = fn()
        sync(device); times.append(time.perf_counter() - start)
    return times, result


def median(xs): return statistics.median(xs)


def _fmt(v):
    if isinstance(v, bool) or v is None: return str(v)
    if isinstance(v, int): return f'{v:,}'
    if isinstance(v, float):
        if v != v: return 'nan'
        if abs(v) >= 1000: return f'{v:,.0f}'
        if abs(v) >= 10: return f'{v:.1f}'
        return f'{v:.3g}'
    return str(v)


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    "A fixed-width text table of `rows` (only `columns`, default all keys of the first row)."
    columns = columns or list(rows[0])
    cells = [[_fmt(r.get(c, '')) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: '  '.join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(vals, widths)))
    return '\n'.join([line(columns), line(['-' * w for w in widths])] + [line(r) for r in cells])


def report(title: str, rows: list[dict], columns: list[str], notes: list[str], out: Path, stem: str) -> str:
    "Print the table with its title, load average and notes; write `<stem>.csv` and `<stem>.txt` into `out`."
    from fusion_nb.env import atomic_write_text
    text = '\n'.join([f'== {title} ==', f'load average (1/5/15 min): {load_average()}', table(rows, columns), *notes])
    print('\n' + text + '\n', flush=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO(); w = csv.DictWriter(buf, fieldnames=keys); w.writeheader(); w.writerows(rows)
    atomic_write_text(out / f'{stem}.csv', buf.getvalue())
    atomic_write_text(out / f'{stem}.txt', text + '\n')
    return text


def save_png(fig, path: Path) -> Path:
    "Save a matplotlib figure atomically and close it."
    import matplotlib.pyplot as plt
    from fusion_nb.env import atomic_write_bytes
    buf = io.BytesIO(); fig.savefig(buf, format='png', dpi=110, bbox_inches='tight'); plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def pyplot():
    "matplotlib.pyplot on the Agg backend (no display needed)."
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def write_meta(out: Path, name: str, args, extra: dict | None = None):
    "meta-<name>.json: the command line, arguments, machine and load average of a benchmark run."
    from fusion_nb.env import atomic_write_text
    meta = dict(benchmark=name, command=' '.join([Path(sys.executable).name] + sys.argv), args=vars(args),
                machine=machine(), load_average=load_average(), finished=time.strftime('%Y-%m-%d %H:%M:%S'), **(extra or {}))
    atomic_write_text(out / f'meta-{name}.json', json.dumps(meta, indent=1, default=str) + '\n')


def script_main(doc: str, name: str, add_args, run, argv=None):
    "The command line of one benchmark script: common and own options, pinned threads, a new output folder, run, metadata."
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap); add_args(ap)
    args = ap.parse_args(argv)
    pin_threads(args.threads)
    out = out_dir(args.out, name)
    run(args, out); write_meta(out, name, args)
    print(f'figures written to {out}')
