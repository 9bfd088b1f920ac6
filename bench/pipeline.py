"""(d) The whole pipeline vs size: simulate -> split -> views -> fusion head -> scoring, wall time per stage and peak RSS.

Each size runs in its own child process (so peak memory does not mix between sizes), which builds the two
views with `fusion_nb.views.build_views` (uncached, `ViewsConfig` defaults but few encoder epochs) and reports
its own per-stage times (`store.meta['timings']`: histories, sequence encoder, graph encoder; the join of the
two views is the rest), then fits a Gated fusion head and scores the test split. The child logs each stage as it
finishes, so a size that runs out of time or memory still reports the stages it completed and the one it was
in; stages it did not reach are extrapolated linearly from the largest completed size (marked `~`).
Peak RSS is the child's VmHWM (Linux /proc: the high-water mark of its resident memory since exec; ru_maxrss
would include the parent's size at fork), sampled by the parent every 0.5 s and logged by the child after every
stage; the parent also stops a child whose RSS passes --mem-limit-gb (the machine is shared).

    python bench/pipeline.py                       # 100k, 1M and 6.36M transactions (the PaySim size)
    python bench/pipeline.py --quick               # 100k only
    python bench/pipeline.py --sizes 1000000 --pipeline-timeout 900
Target (issue 6): the 6.36M pipeline within 30 minutes and 12 GiB.
"""
from __future__ import annotations
import argparse, json, os, signal, subprocess, sys, time
from pathlib import Path
import common

TARGET_S, TARGET_GIB = 30 * 60, 12.0
STAGES = ('simulate', 'split', 'views', 'head_fit', 'score')
# build_views' own timings (store.meta['timings']), shown under `views`; the join is the rest of its time
VIEW_PARTS = {'histories_s': 'histories', 'sequence_s': 'sequence encoder', 'graph_s': 'graph encoder'}


def add_args(ap):
    g = ap.add_argument_group('(d) whole pipeline')
    g.add_argument('--sizes', type=int, nargs='+', default=None, help='transactions per run (default 100000 1000000 6360000; --quick 100000)')
    g.add_argument('--pipeline-timeout', type=float, default=TARGET_S, help='seconds allowed per size (default 1800 = the target)')
    g.add_argument('--mem-limit-gb', type=float, default=TARGET_GIB, help='stop a size whose RSS passes this many GiB (default 12 = the target)')
    g.add_argument('--seq-epochs', type=int, default=1, help='sequence encoder epochs (default 1)')
    g.add_argument('--gnn-epochs', type=int, default=5, help='GNN encoder epochs (default 5)')
    g.add_argument('--head-epochs', type=int, default=3, help='fusion head epochs (default 3)')


# ---------------- child: one size, one process ----------------
def _rss_mb() -> float:
    "Current resident set size of this process in MiB (Linux /proc; psutil elsewhere)."
    try:
        with open('/proc/self/statm') as f: return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20
    except OSError:
        import psutil
        return psutil.Process().memory_info().rss / 2**20


def _proc_status_kib(pid='self', field='VmHWM') -> int | None:
    "A memory field of /proc/<pid>/status in KiB (Linux), None where there is no /proc."
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith(field + ':'): return int(line.split()[1])
    except OSError: return None
    return None


def _peak_mb() -> float:
    """Peak RSS of this process since it started, in MiB.

    On Linux this is VmHWM: getrusage's ru_maxrss would also count the parent's memory at fork time
    (the kernel carries the pre-exec high-water mark over exec), so a child started by a big process
    would report the parent's size."""
    hwm = _proc_status_kib('self', 'VmHWM')
    if hwm is not None: return hwm / 2**10
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == 'darwin' else peak / 2**10       # bytes on macOS, KiB elsewhere


def child(args):
    "Run every stage for `args.child` transactions, appending one JSON line per stage start and end to `args.events`."
    common.pin_threads(args.threads)
    from sklearn.metrics import average_precision_score
    from fusion_nb.env import resolve_device
    from fusion_nb.simulator import simulate_transactions
    from fusion_nb.views import ViewsConfig, build_views, default_split
    from fusion_nb.fusion import build_head
    from fusion_nb.train import TrainConfig, fit, predict_proba
    n, device = args.child, str(resolve_device(args.device))
    events = open(args.events, 'a', buffering=1)
    def log(**kw): events.write(json.dumps(dict(size=n, **kw)) + '\n'); events.flush()
    state = {}
    def stage(name, fn):
        log(stage=name, event='start', rss_mb=round(_rss_mb()))
        t0 = time.perf_counter()
        extra = fn() or {}
        common.sync(device)
        log(stage=name, event='end', seconds=round(time.perf_counter() - t0, 3), rss_mb=round(_rss_mb()), peak_rss_mb=round(_peak_mb()), **extra)

    def simulate():
        state['tx'] = simulate_transactions(n_transactions=n, seed=0)
        return dict(accounts=int(state['tx'].n_accounts), fraud_rate=round(float(state['tx'].fraud_rate), 4))
    def split(): state['split'] = default_split(state['tx'])
    def views():                                     # the library's one path from transactions to the aligned store
        config = ViewsConfig(gnn_epochs=args.gnn_epochs, seq_epochs=args.seq_epochs, device=device)
        state['store'] = store = build_views(state['tx'], state['split'], config, cache_dir=None, progress=False)
        seq_ap = store.meta['encoder_train'].get('seq_best_val_ap')
        return dict(timings=store.meta['timings'], seq_val_ap=None if seq_ap is None else round(float(seq_ap), 4),
                    config={k: v for k, v in config.key().items() if k != 'seed'})
    def head_fit():
        store = state['store']
        train, val = store.split_arrays('train'), store.split_arrays('val')
        head = build_head('Gated', train[0].shape[1], train[1].shape[1], hidden_dim=64, dropout=0.3)
        result = fit(head, train, val, TrainConfig(epochs=args.head_epochs, batch_size=1024, patience=args.head_epochs + 1, device=device))
        state['head'] = head
        return dict(train_rows=int(len(train[2])), samples_per_s=round(len(train[2]) * result.epochs_run / result.train_time_s),
                    val_ap=round(result.best_val_ap, 4) if result.best_val_ap is not None else None)
    def score():
        gnn, seq, label = state['store'].split_arrays('test')
        t0 = time.perf_counter(); p = predict_proba(state['head'], gnn, seq, device=device); secs = time.perf_counter() - t0
        return dict(test_rows=int(len(label)), tx_per_s=round(len(label) / secs), test_ap=round(float(average_precision_score(label, p)), 4))

    for name, fn in zip(STAGES, (simulate, split, views, head_fit, score)):
        stage(name, fn)
    log(event='done')


# ---------------- parent: one child per size ----------------
def run_size(n, args, out) -> dict:
    "Run one size in a child process; returns its stage events, status, wall time and peak RSS."
    events_path, log_path = out / f'd_pipeline_{n}.jsonl', out / f'd_pipeline_{n}.log'
    cmd = [sys.executable, str(Path(__file__).resolve()), '--child', str(n), '--events', str(events_path), '--threads', str(args.threads),
           '--device', args.device, '--seq-epochs', str(args.seq_epochs), '--gnn-epochs', str(args.gnn_epochs), '--head-epochs', str(args.head_epochs)]
    print(f'[pipeline] {n:,} transactions: child process started (limit {args.pipeline_timeout:.0f} s, {args.mem_limit_gb:g} GiB; '
          f'log {log_path.name}) load {common.load_average()}', flush=True)
    t0, status, sampled_peak = time.perf_counter(), 'ok', 0.0
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED='1'))
        while True:
            pid, code, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid: break
            rss = (_proc_status_kib(proc.pid, 'VmRSS') or 0) / 2**20
            sampled_peak = max(sampled_peak, rss, (_proc_status_kib(proc.pid, 'VmHWM') or 0) / 2**20)
            elapsed = time.perf_counter() - t0
            if elapsed > args.pipeline_timeout: status = f'timeout after {elapsed:.0f} s'
            elif rss > args.mem_limit_gb: status = f'stopped at {rss:.1f} GiB RSS (limit {args.mem_limit_gb:g})'
            if status != 'ok':
                os.kill(proc.pid, signal.SIGKILL)
                pid, code, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.5)
        proc.returncode = os.waitstatus_to_exitcode(code)
    wall = time.perf_counter() - t0
    events = [json.loads(line) for line in open(events_path)] if events_path.exists() else []
    done = {e['stage']: e for e in events if e.get('event') == 'end'}
    started = [e['stage'] for e in events if e.get('event') == 'start']
    running = started[-1] if started and started[-1] not in done else None
    if status == 'ok' and not any(e.get('event') == 'done' for e in events):
        tail = log_path.read_text().strip().splitlines()[-3:]
        status = f'failed (exit {proc.returncode}) in {running}: {" | ".join(tail)[-300:]}'
    elif status != 'ok' and running: status += f' in stage {running}'
    reported = max([e['peak_rss_mb'] / 2**10 for e in done.values()] + [sampled_peak])
    # without /proc (macOS) only wait4's ru_maxrss is left; it includes this process's size at fork time
    peak_gib = reported if sampled_peak else max(reported, usage.ru_maxrss / (2**30 if sys.platform == 'darwin' else 2**20))
    print(f'[pipeline] {n:,}: {status}, {wall:.0f} s, peak RSS {peak_gib:.2f} GiB', flush=True)
    return dict(size=n, stages=done, running=running, status=status, wall_s=wall, peak_gib=peak_gib)


def run(args, out) -> list[str]:
    sizes = args.sizes or ([100_000] if args.quick else [100_000, 1_000_000, 6_360_000])
    runs = [run_size(n, args, out) for n in sorted(sizes)]
    # linear extrapolation of stages a size did not finish, from the largest size that finished them
    for r in runs:
        r['projected'] = {}
        for stage in STAGES:
            if stage in r['stages']: continue
            ref = [q for q in runs if stage in q['stages'] and q['size'] < r['size']]
            if ref: r['projected'][stage] = ref[-1]['stages'][stage]['seconds'] * r['size'] / ref[-1]['size']
    long_rows, pivot = [], []
    for r in runs:
        for stage in STAGES:
            e = r['stages'].get(stage)
            if e: long_rows.append(dict(size=r['size'], stage=stage, seconds=e['seconds'], rss_mb=e['rss_mb'], peak_rss_mb=e['peak_rss_mb'],
                                        measured=True, extra={k: v for k, v in e.items() if k not in ('size', 'stage', 'event', 'seconds', 'rss_mb', 'peak_rss_mb')}))
            elif stage in r['projected']:
                long_rows.append(dict(size=r['size'], stage=stage, seconds=round(r['projected'][stage], 1), measured=False,
                                      extra='linear extrapolation' + (' (running when stopped)' if stage == r['running'] else '')))
    cols = [f'{r["size"]:,}' for r in runs]
    for stage in STAGES:
        row = dict(stage=stage)
        for c, r in zip(cols, runs):
            e = r['stages'].get(stage)
            row[c] = (f'{e["seconds"]:.1f}' if e else f'~{r["projected"][stage]:.0f}' if stage in r['projected'] else '-') + \
                     ('*' if stage == r['running'] else '')
        pivot.append(row)
        if stage == 'views': pivot += view_parts(runs, cols)
    def total(r):
        measured = sum(e['seconds'] for e in r['stages'].values())
        return f'{measured:.0f}' + (f' (~{measured + sum(r["projected"].values()):.0f} all)' if r['projected'] else '')
    pivot += [dict(stage='total s', **{c: total(r) for c, r in zip(cols, runs)}),
              dict(stage='wall s (process)', **{c: f'{r["wall_s"]:.0f}' for c, r in zip(cols, runs)}),
              dict(stage='peak RSS GiB', **{c: f'{r["peak_gib"]:.2f}' for c, r in zip(cols, runs)}),
              dict(stage='status', **{c: r['status'] for c, r in zip(cols, runs)})]
    for r in runs:
        stg = r['stages']
        if 'score' in stg: print(f"[pipeline] {r['size']:,}: head fit {stg['head_fit'].get('samples_per_s', 0):,} samples/s, "
                                 f"scoring {stg['score']['tx_per_s']:,} tx/s, test AP {stg['score']['test_ap']}, "
                                 f"seq val AP {stg['views'].get('seq_val_ap')}")
    from fusion_nb.env import atomic_write_text
    import csv, io
    buf = io.StringIO(); w = csv.DictWriter(buf, fieldnames=['size', 'stage', 'seconds', 'rss_mb', 'peak_rss_mb', 'measured', 'extra'])
    w.writeheader(); w.writerows(long_rows); atomic_write_text(out / 'd_pipeline_long.csv', buf.getvalue())
    plot(runs, out / 'd_pipeline.png')
    notes = [f'seconds per stage; * = the stage running when the size was stopped; ~ = not reached, extrapolated linearly from the largest '
             f'size that finished it. The indented rows are build_views\' own timings (store.meta[\'timings\']); join = the rest of '
             f'views. Settings: ViewsConfig defaults with {args.seq_epochs} sequence and {args.gnn_epochs} GNN epoch(s) '
             f'({views_settings(runs)}); Gated head hidden 64, {args.head_epochs} epochs, batch 1024; '
             f'device {args.device}, threads={args.threads}; each size in its own process.',
             f'Target: the 6,360,000-row pipeline within {TARGET_S // 60} min and {TARGET_GIB:g} GiB '
             f'(limits of this run: {args.pipeline_timeout:.0f} s, {args.mem_limit_gb:g} GiB per size).']
    for r in runs:
        if r['size'] >= 6_000_000:
            ok = r['status'] == 'ok' and r['wall_s'] <= TARGET_S and r['peak_gib'] <= TARGET_GIB
            notes.append(f'{r["size"]:,} rows: {"target met" if ok else "target MISSED"} ({r["status"]}, {r["wall_s"]:.0f} s, {r["peak_gib"]:.2f} GiB peak).')
    return [common.report('(d) whole pipeline: seconds per stage and peak RSS vs size', pivot, ['stage'] + cols, notes, out, 'd_pipeline')]


def view_parts(runs, cols) -> list[dict]:
    "Rows of the pivot under `views`: build_views' own stage timings, and the join as the rest of its time."
    rows = []
    for key, label in [*VIEW_PARTS.items(), ('join', 'join')]:
        row = dict(stage=f'  {label}')
        for c, r in zip(cols, runs):
            e = r['stages'].get('views')
            if e is None: row[c] = '-'; continue
            t = e.get('timings', {})
            row[c] = f"{t[key]:.1f}" if key in t else f"{e['seconds'] - sum(t.get(k, 0) for k in VIEW_PARTS):.1f}"
        rows.append(row)
    return rows


def views_settings(runs) -> str:
    "The ViewsConfig a finished size used (from its views stage), as `name=value` pairs."
    config = next((r['stages']['views'].get('config') for r in runs if 'views' in r['stages']), None)
    return ', '.join(f'{k}={v}' for k, v in config.items()) if config else 'no size finished the views'


def plot(runs, path):
    plt = common.pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    sizes = [r['size'] for r in runs]
    for i, stage in enumerate(STAGES):
        pts = [(r['size'], r['stages'][stage]['seconds'], True) if stage in r['stages'] else
               (r['size'], r['projected'][stage], False) if stage in r['projected'] else None for r in runs]
        pts = [p for p in pts if p]
        if not pts or max(p[1] for p in pts) < 0.5: continue                  # negligible stages clutter the plot
        color = f'C{i % 10}'
        ax.plot([p[0] for p in pts], [p[1] for p in pts], '-', color=color, alpha=0.6, label=stage)
        ax.plot([p[0] for p in pts if p[2]], [p[1] for p in pts if p[2]], 'o', color=color)
        ax.plot([p[0] for p in pts if not p[2]], [p[1] for p in pts if not p[2]], 'o', mfc='none', color=color)
    totals = [sum(e['seconds'] for e in r['stages'].values()) + sum(r['projected'].values()) for r in runs]
    ax.plot(sizes, totals, 'ks-', lw=2, label='total (hollow = extrapolated)')
    ax.axhline(TARGET_S, color='k', ls='--', lw=1, label='30 min target')
    ax.set_xscale('log'); ax.set_yscale('log'); ax.set_xlabel('transactions'); ax.set_ylabel('seconds'); ax.grid(alpha=0.3, which='both')
    ax.set_title('Pipeline cost per stage vs size'); ax.legend(fontsize=7, ncol=2)
    ax2.plot(sizes, [r['peak_gib'] for r in runs], 'o-', label='peak RSS (whole run)')
    ax2.axhline(TARGET_GIB, color='k', ls='--', lw=1, label='12 GiB target')
    ax2.set_xscale('log'); ax2.set_xlabel('transactions'); ax2.set_ylabel('GiB'); ax2.set_title('Peak memory vs size'); ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3, which='both')
    common.save_png(fig, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(ap); add_args(ap)
    ap.add_argument('--child', type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument('--events', default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None: return child(args)
    common.pin_threads(args.threads)
    out = common.out_dir(args.out, 'pipeline')
    run(args, out); common.write_meta(out, 'pipeline', args)
    print(f'figures written to {out}')


if __name__ == '__main__':
    main()
