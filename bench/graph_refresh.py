"""How fresh must the graph state be? The graph view's AP against the number of graph refreshes per split.

A run embeds each split in `graph_blocks` consecutive blocks, each from the graph of the transactions before the
block (03_graph_view): what a deployment that runs `fusion-nb refresh` that many times per period would see. This
script trains one graph encoder (the run's settings, on the train period) and embeds every row again for each
block count, side by side: validation and test AP of the encoder's own fraud head (the graph view alone, no fusion
head), the share of test rows with an endpoint the graph before its block has never seen (cold), and the seconds
the embedding took. The last row, `whole split`, embeds each split from the graph of the whole split, the row's own
edge and every later row of the split included: how runs embedded before 2026-12-03. It is not a deployable
figure (it reads the future), only the size of what that reading was worth. Validation decides nothing here; test
is shown because the question is how much a deployment loses, not which model to pick.

    python bench/graph_refresh.py --quick                             # 30,000 simulated transactions
    python bench/graph_refresh.py --data sim --blocks 1 4 16 64       # the default simulator (100,000)
    python bench/graph_refresh.py --data aml_dev --rows 300000        # ../shared/data (see fusion_nb.env.dev_data_dir)

Writes graph_refresh.csv/.txt, graph_refresh.png (AP and seconds against blocks) and meta-graph_refresh.json.
"""
from __future__ import annotations
import common
import time

DATA = ('sim', 'paysim_dev', 'aml_dev')


def add_args(ap):
    ap.add_argument('--data', choices=DATA, default='sim', help='the default simulator, or a dev log under the data dir')
    ap.add_argument('--rows', type=int, default=None, help='simulated transactions (sim; default 100,000, --quick 30,000) or rows read (dev logs; default all)')
    ap.add_argument('--blocks', type=int, nargs='+', default=None, help='block counts to compare (default 1 4 16 64; --quick 1 4 16); '
                    '1 is shown for reference: a run needs 2 or more, since the first train block has no graph')
    ap.add_argument('--preset', default=None, help='graph encoder preset (default: the run default)')
    ap.add_argument('--epochs', type=int, default=None, help='encoder epochs (default: the run default)')
    ap.add_argument('--seed', type=int, default=0)


def transactions(args):
    from fusion_nb.env import dev_data_dir
    from fusion_nb.simulator import simulate_transactions
    from fusion_nb.loaders import load_amlsim, load_paysim
    if args.data == 'sim': return simulate_transactions(n_transactions=args.rows or (30_000 if args.quick else 100_000), seed=args.seed)
    root = dev_data_dir()
    if root is None or not (root / args.data).is_dir(): raise SystemExit(f'{args.data} not found (see fusion_nb.env.dev_data_dir)')
    if args.data == 'aml_dev': return load_amlsim(root / 'aml_dev', nrows=args.rows)
    return load_paysim(root / 'paysim_dev' / 'transactions.csv.gz', nrows=args.rows)


def whole_split_embeddings(encoder, tx, split, device):
    "Each split's rows embedded from the graph of the whole split and earlier ones (own edges, later rows): the old rule."
    import numpy as np, torch
    from fusion_nb.graph_view import visible_graph, graph_inputs, edge_features, _rows_on
    feats = edge_features(tx)
    emb = np.zeros((len(tx.frame), encoder.emb_dim), np.float32)
    with torch.no_grad():
        for name in ('train', 'val', 'test'):
            rows = np.flatnonzero(split == name)
            h = encoder.gnn(graph_inputs(visible_graph(tx, split, name, feats), device))
            emb[rows] = encoder.embed(h, *_rows_on(tx, 'account', rows, feats[0], device)).cpu().numpy()
    return emb


def cold_share(tx, split, blocks) -> float:
    "Share of test rows with an endpoint that no transaction before the row's block touched."
    import numpy as np
    from fusion_nb.graph_view import embedding_blocks
    src, dst = tx.frame['src'].to_numpy(), tx.frame['dst'].to_numpy()
    first = np.full(tx.n_accounts, len(src))
    np.minimum.at(first, src, np.arange(len(src))); np.minimum.at(first, dst, np.arange(len(dst)))
    cold = []
    for _, rows in embedding_blocks(split, blocks, tx.frame['time'].to_numpy(), ('test',)):
        cold.append((first[src[rows]] >= rows[0]) | (first[dst[rows]] >= rows[0]))
    return float(np.concatenate(cold).mean())


def run(args, out):
    import numpy as np, torch
    from sklearn.metrics import average_precision_score
    from fusion_nb.env import resolve_device
    from fusion_nb.splits import train_period
    from fusion_nb.views import ViewsConfig, default_split
    from fusion_nb.graph_view import train_gnn_encoder, graph_embeddings, graph_kind
    device = resolve_device(args.device)
    tx = transactions(args)
    if graph_kind(tx) != 'account': raise SystemExit('graph refreshes apply to account graphs only')
    split, y = default_split(tx), tx.frame['label'].to_numpy()
    views = ViewsConfig()
    preset, epochs = args.preset or views.gnn_preset, args.epochs or views.gnn_epochs
    t0 = time.perf_counter()
    encoder, _ = train_gnn_encoder(*train_period(tx, split), preset=preset, emb_dim=views.emb_dim, epochs=epochs, lr=views.gnn_lr,
                                   seed=args.seed, device=device, progress=False)
    train_s = time.perf_counter() - t0
    encoder = encoder.to(device).eval()

    def aps(emb) -> dict:
        with torch.no_grad(): s = torch.softmax(encoder.head(torch.from_numpy(emb).to(device)), 1)[:, 1].cpu().numpy()
        keep = y >= 0
        return {f'{k}_ap': float(average_precision_score(y[keep & (split == k)], s[keep & (split == k)])) for k in ('val', 'test')}

    rows = []
    for blocks in args.blocks or ([1, 4, 16] if args.quick else [1, 4, 16, 64]):
        times, (emb, _) = common.timed(lambda: graph_embeddings(encoder, tx, split, device=device, blocks=blocks), device=device)
        rows.append(dict(embedding=f'{blocks} block{"s" if blocks > 1 else ""} per split', blocks=blocks, **aps(emb),
                         test_cold=cold_share(tx, split, blocks), embed_s=times[0]))
        print(f"{rows[-1]['embedding']}: val AP {rows[-1]['val_ap']:.4f}, test AP {rows[-1]['test_ap']:.4f}", flush=True)
    times, emb = common.timed(lambda: whole_split_embeddings(encoder, tx, split, device), device=device)
    rows.append(dict(embedding='whole split (reads the future)', blocks=None, **aps(emb), test_cold=0.0, embed_s=times[0]))
    fraud = {k: int(y[split == k].clip(0).sum()) for k in ('val', 'test')}
    notes = [f'{args.data}: {len(tx.frame):,} transactions; fraud val {fraud["val"]:,}, test {fraud["test"]:,} '
             f'(AP of random scores: val {y[split == "val"].clip(0).mean():.4f}, test {y[split == "test"].clip(0).mean():.4f}).',
             f'encoder {preset}, {epochs} epochs on the train period ({train_s:.1f} s); AP of its own fraud head (the graph view alone).',
             'test_cold: share of test rows with an endpoint unseen before the row\'s block (read from the cold state).']
    common.report('graph view AP against graph refreshes per split', rows, ['embedding', 'val_ap', 'test_ap', 'test_cold', 'embed_s'],
                  notes, out, 'graph_refresh')
    plot(rows, out, args.data)


def plot(rows, out, data):
    plt = common.pyplot()
    fixed = [r for r in rows if r['blocks']]
    whole = next(r for r in rows if not r['blocks'])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, style in (('val_ap', 'o-'), ('test_ap', 's-')):
        line, = left.plot([r['blocks'] for r in fixed], [r[key] for r in fixed], style, label=key.replace('_ap', ' AP'))
        left.axhline(whole[key], ls=':', color=line.get_color(), label=f"{key.replace('_ap', ' AP')}, whole split (reads the future)")
    left.set(xscale='log', xlabel='graph refreshes per split (blocks)', ylabel='AP, graph view alone', title=f'{data}: AP')
    left.legend()
    right.plot([r['blocks'] for r in fixed], [r['embed_s'] for r in fixed], 'o-')
    right.set(xscale='log', xlabel='graph refreshes per split (blocks)', ylabel='seconds', title='embedding every row')
    common.save_png(fig, out / 'graph_refresh.png')


if __name__ == '__main__':
    common.script_main(__doc__, 'graph_refresh', add_args, run)
