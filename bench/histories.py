"""(b) Sequence building: fusion_nb.sequence_view.build_histories vs a pandas groupby().apply() and a bare numpy gather.

All three produce the same output: `src_idx` and `dst_idx`, int64 [N, K], the rows of each transaction's
sender's / receiver's last K transactions strictly before it (-1 padded after the valid steps, oldest first).
- groupby-apply: the straightforward pandas version, one apply per account and a Python loop to fill the arrays, in
  two variants: 'per-event' (for each event, the account's rows with an earlier time, last K: the textbook one)
  and 'per-account' (one searchsorted per account: a careful one). They are slow, so they run on a subset
  (default 100,000 rows, --quick 20,000; best of 2 runs); their output is checked equal to build_histories on a small table
  and on that subset.
- floor: np.take(mode='clip') of an int64 array into two new [N, K] outputs with the same access pattern
  (K consecutive events per row, rows at random places): the memory-bound cost of writing the output, nothing else.
Targets: >= 20x the groupby-apply (rows/s on the same subset), within 3x of the floor.

    python bench/histories.py                    # groupby on 100k rows; ours and the floor at 100k and 1M
    python bench/histories.py --quick
    python bench/histories.py --hist-sizes 100000 1000000 6360000
"""
from __future__ import annotations
import time
import common

TARGET_VS_GROUPBY, TARGET_VS_FLOOR = 20.0, 3.0


def add_args(ap):
    g = ap.add_argument_group('(b) sequence building')
    g.add_argument('--hist-sizes', type=int, nargs='+', default=None, help='table sizes for ours and the floor (default 100000 1000000; --quick 100000)')
    g.add_argument('--naive-rows', type=int, default=None, help='rows of the groupby-apply subset (default 100000; --quick 20000)')
    g.add_argument('--history-k', type=int, default=16, help='K, steps of history per account (ViewsConfig default 16)')


NAIVE = {'per-event': 'groupby-apply, per-event mask', 'per-account': 'groupby-apply, per-account searchsorted'}


def naive_histories(tx, k, variant='per-event'):
    """The straightforward pandas version: group the (account, row, time) events by account and apply a function per account.

    'per-event': for each event, the account's rows with an earlier time, last k (the textbook version).
    'per-account': one searchsorted per account finds where each event's time block starts (a careful version)."""
    import numpy as np, pandas as pd
    f = tx.frame
    n = len(f)
    src, dst, t = f['src'].to_numpy(), f['dst'].to_numpy(), f['time'].to_numpy()
    rows = np.arange(n)
    events = pd.concat([pd.DataFrame(dict(account=src, row=rows, time=t, role='src')),
                        pd.DataFrame(dict(account=dst, row=rows, time=t, role='dst'))[dst != src]], ignore_index=True)
    events = events.sort_values(['account', 'row'])

    def per_event(g):
        times, event_rows = g['time'].to_numpy(), g['row'].to_numpy()
        return pd.Series([event_rows[times < now][-k:] for now in times], index=g.index)

    def per_account(g):
        times, event_rows = g['time'].to_numpy(), g['row'].to_numpy()
        first_same_time = np.searchsorted(times, times, side='left')        # strictly earlier = before this time block
        return pd.Series([event_rows[max(0, s - k):s] for s in first_same_time], index=g.index)

    last_k = dict(per_event=per_event, per_account=per_account)[variant.replace('-', '_')]
    events['history'] = events.groupby('account', group_keys=False)[['time', 'row']].apply(last_k)
    src_idx, dst_idx = np.full((n, k), -1, np.int64), np.full((n, k), -1, np.int64)
    for role, row, history in zip(events['role'], events['row'], events['history']):
        (src_idx if role == 'src' else dst_idx)[row, :len(history)] = history
    self_tx = src == dst
    dst_idx[self_tx] = src_idx[self_tx]
    return src_idx, dst_idx


def check_equal(tx, k, where, variant='per-event', naive=None):
    "Raise if build_histories and the groupby-apply version (`variant`, or its output `naive`) disagree on `tx`."
    import numpy as np
    from fusion_nb.sequence_view import build_histories
    ours, (src_idx, dst_idx) = build_histories(tx, k=k), naive or naive_histories(tx, k, variant)
    for name, a, b in (('src_idx', ours.src_idx, src_idx), ('dst_idx', ours.dst_idx, dst_idx)):
        if not np.array_equal(a, b):
            bad = np.flatnonzero((a != b).any(1))
            raise AssertionError(f'{where}: build_histories.{name} differs from {NAIVE[variant]} on {len(bad)} rows '
                                 f'(first row {bad[0]}: ours {a[bad[0]].tolist()}, groupby {b[bad[0]].tolist()}).')
    if not (np.array_equal(ours.src_len, (src_idx >= 0).sum(1)) and np.array_equal(ours.dst_len, (dst_idx >= 0).sum(1))):
        raise AssertionError(f'{where}: build_histories lengths do not count the valid steps.')
    return ours


def floor_seconds(n, k, seed=0, repeat=3, mode='clip'):
    """Best time of np.take of an int64 event array into two [n, k] outputs, K consecutive events per row.

    mode='clip' skips numpy's bounds check (the default 'raise' mode checks every index and is up to 2x slower on
    tables that fit in cache), so it is the faster of the two and the honest floor."""
    import numpy as np
    rng = np.random.default_rng(seed)
    events = np.arange(2 * n, dtype=np.int64)
    idx = [rng.integers(0, 2 * n - k, n)[:, None] + np.arange(k) for _ in range(2)]   # sender's and receiver's block
    def gather():                                   # new output arrays each call, as build_histories returns new arrays
        return [np.take(events, i, mode=mode) for i in idx]
    times, _ = common.timed(gather, repeat=repeat, warmup=1)
    return min(times)


def run(args, out) -> list[str]:
    from fusion_nb.simulator import simulate_transactions
    from fusion_nb.sequence_view import build_histories
    k = args.history_k
    sizes = args.hist_sizes or ([100_000] if args.quick else [100_000, 1_000_000])
    naive_rows = args.naive_rows or (20_000 if args.quick else 100_000)
    small = simulate_transactions(n_transactions=5_000, seed=1)
    for variant in NAIVE: check_equal(small, k, 'small table (5,000 rows, seed 1)', variant)
    results, naive_s = [], {}
    subset = simulate_transactions(n_transactions=naive_rows, seed=0)
    ours_times, _ = common.timed(lambda: build_histories(subset, k=k), repeat=3, warmup=1)
    ours_sub = min(ours_times)
    for variant, name in NAIVE.items():
        times, output = common.timed(lambda: naive_histories(subset, k, variant), repeat=2)
        naive_s[variant] = min(times)
        check_equal(subset, k, f'groupby subset ({naive_rows:,} rows)', variant, naive=output)
        results.append(dict(rows=naive_rows, method=name, seconds=round(naive_s[variant], 3), rows_per_s=round(naive_rows / naive_s[variant]),
                            note='subset (slow), best of 2; output checked equal to build_histories'))
    speedups = {v: naive_s[v] / ours_sub for v in NAIVE}
    results.append(dict(rows=naive_rows, method='build_histories', seconds=round(ours_sub, 4), rows_per_s=round(naive_rows / ours_sub),
                        speedup_vs_groupby=round(speedups['per-event'], 1), speedup_vs_careful_groupby=round(speedups['per-account'], 1)))
    for n in sizes:
        big = n > 2_000_000
        floor = floor_seconds(n, k, repeat=2 if big else 3)
        if n == naive_rows: results[-1]['x_floor'] = round(ours_sub / floor, 2)
        else:
            tx = simulate_transactions(n_transactions=n, seed=0)
            times, _ = common.timed(lambda: build_histories(tx, k=k), repeat=2 if big else 3, warmup=1)
            results.append(dict(rows=n, method='build_histories', seconds=round(min(times), 4), rows_per_s=round(n / min(times)),
                                x_floor=round(min(times) / floor, 2)))
            del tx
        raise_mode = floor_seconds(n, k, repeat=2 if big else 3, mode='raise')
        results.append(dict(rows=n, method='numpy take floor', seconds=round(floor, 4), rows_per_s=round(n / floor),
                            note=f"2 x [N,{k}] int64 = {2 * n * k * 8 / 2**20:,.0f} MiB written; mode='clip' (default mode='raise': {raise_mode:.4f} s)"))
    worst_floor = max(r['x_floor'] for r in results if 'x_floor' in r)
    verdict = lambda ok: 'met' if ok else 'MISSED'
    plot(results, out / 'b_histories.png')
    notes = [f'K={k}; build_histories and the floor: best of 3 calls after a warm-up (2 above 2M rows), each returning new arrays; '
             f'the groupby-apply versions best of 2, on a {naive_rows:,}-row table only (they are slow).',
             f'Equality checked: build_histories == both groupby-apply versions on a 5,000-row table and on the {naive_rows:,}-row table.',
             f'speed-up vs groupby-apply on the same {naive_rows:,} rows: {speedups["per-event"]:.1f}x vs the per-event version, '
             f'{speedups["per-account"]:.1f}x vs the careful per-account version (target >= {TARGET_VS_GROUPBY:.0f}x: '
             f'{verdict(speedups["per-event"] >= TARGET_VS_GROUPBY)} / {verdict(speedups["per-account"] >= TARGET_VS_GROUPBY)}).',
             f'worst build_histories time vs the numpy gather floor: {worst_floor}x (target <= {TARGET_VS_FLOOR:.0f}x: {verdict(worst_floor <= TARGET_VS_FLOOR)}).']
    return [common.report('(b) sequence building: build_histories vs pandas groupby-apply vs numpy gather floor', results,
                          ['rows', 'method', 'seconds', 'rows_per_s', 'speedup_vs_groupby', 'speedup_vs_careful_groupby', 'x_floor', 'note'],
                          notes, out, 'b_histories')]


def plot(results, path):
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    methods = list(dict.fromkeys(r['method'] for r in results))
    sizes = list(dict.fromkeys(r['rows'] for r in results))
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        xs = [i + j * width for i, s in enumerate(sizes) for r in results if r['rows'] == s and r['method'] == m]
        ys = [r['rows_per_s'] for s in sizes for r in results if r['rows'] == s and r['method'] == m]
        ax.bar(xs, ys, width=width, label=m)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(sizes))], [f'{s:,} rows' for s in sizes])
    ax.set_yscale('log'); ax.set_ylabel('rows/s (log)'); ax.legend(); ax.set_title('Building [N, K] histories')
    common.save_png(fig, path)


def main(argv=None):
    common.script_main(__doc__, 'histories', add_args, run, argv)


if __name__ == '__main__':
    main()
