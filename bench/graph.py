"""(c) Graph build and GNN epochs vs graph size, on simulated transactions.

For each size: `build_account_graph(tx)` (all transactions as edges), `graph_inputs` (the mean adjacencies
an encoder pass needs), a few full-batch training epochs of `train_gnn_encoder` on the train-period graph
(median epoch time; setup = the rest of the call), and `graph_embeddings` (every row embedded with its
block's prior graph, 3 x GRAPH_BLOCKS graphs). Seconds and edges/s. Then one epoch of sampled mini-batch training (`fanout`, PyG loaders
with fusion_nb.sampling) over the same loss rows, and the mean size of a sampled subgraph, which is what bounds
its memory (the full-batch pass holds every node).

    python bench/graph.py                          # 100k, 300k, 1M transactions; HybridGNN_L2_H64 and HybridGNN_L4_H320
    python bench/graph.py --quick
    python bench/graph.py --graph-sizes 1000000 --gnn-presets DeepSAGE_L6_H384
"""
from __future__ import annotations
import time
import common


def add_args(ap):
    g = ap.add_argument_group('(c) graph build and GNN epochs')
    g.add_argument('--graph-sizes', type=int, nargs='+', default=None, help='transactions (default 100000 300000 1000000; --quick 30000 100000)')
    g.add_argument('--gnn-presets', nargs='+', default=None,
                   help='GNN presets (default HybridGNN_L2_H64 = ours and HybridGNN_L4_H320 as in the legacy notebooks; --quick the first)')
    g.add_argument('--gnn-bench-epochs', type=int, default=3, help='training epochs timed per size (default 3)')
    g.add_argument('--fanout', type=int, default=10, help='sampled training: neighbours per node at every hop (default 10)')
    g.add_argument('--sampled-batch', type=int, default=4096, help='sampled training: transactions per mini-batch (default 4096)')
    g.add_argument('--customers-per-tx', type=float, default=None,
                   help="customers per transaction in the simulated log (default: the simulator's 1/30, a dense account graph; "
                        "0.5 gives a sparse PaySim-like one where most customers transact twice)")


def run(args, out) -> list[str]:
    import numpy as np, torch
    from itertools import islice
    from torch_geometric.loader import LinkNeighborLoader
    from fusion_nb.env import resolve_device
    from fusion_nb.simulator import simulate_transactions
    from fusion_nb.views import default_split
    from fusion_nb.graph_view import (build_account_graph, graph_inputs, train_gnn_encoder, graph_embeddings, gnn_config,
                                      sampling_graph, visible_graph, edge_features)
    from fusion_nb.sampling import neighbor_sampler
    device = resolve_device(args.device)
    if device.type == 'mps':
        raise ValueError('bench/graph.py: the graph encoder has no MPS path (it falls back to the CPU); pass --device cpu or cuda.')
    sizes = args.graph_sizes or ([30_000, 100_000] if args.quick else [100_000, 300_000, 1_000_000])
    presets = args.gnn_presets or (['HybridGNN_L2_H64'] if args.quick else ['HybridGNN_L2_H64', 'HybridGNN_L4_H320'])
    results = []
    for n in sizes:
        customers = None if args.customers_per_tx is None else max(60, round(n * args.customers_per_tx))
        tx = simulate_transactions(n_transactions=n, seed=0, n_customers=customers)
        split = default_split(tx)
        times, graph = common.timed(lambda: build_account_graph(tx), repeat=3, warmup=1)
        build_s = min(times)
        times, _ = common.timed(lambda: graph_inputs(graph, device), repeat=3, warmup=1, device=device)
        inputs_s = min(times)
        edges, nodes, train_edges = int(graph.edge_index.shape[1]), int(graph.num_nodes), int((split == 'train').sum())
        for preset in presets:
            t0 = time.perf_counter()
            encoder, history = train_gnn_encoder(tx, split, preset=preset, emb_dim=32, epochs=args.gnn_bench_epochs, lr=5e-3,
                                                 device=device, progress=False)
            common.sync(device); train_s = time.perf_counter() - t0
            epoch_s = float(np.median(history['seconds']))
            t0 = time.perf_counter(); graph_embeddings(encoder, tx, split, device=device); common.sync(device)
            embed_s = time.perf_counter() - t0
            fan = [args.fanout] * gnn_config(preset).layers
            timed_steps = 4                          # an epoch of exactly 4 steps (max_loss_rows), timed, after one of 1 step (warm-up)
            for steps in (1, timed_steps):
                _, sampled = train_gnn_encoder(tx, split, preset=preset, emb_dim=32, epochs=1, lr=5e-3, device=device, progress=False,
                                               fanout=fan, batch_size=args.sampled_batch, max_loss_rows=steps * args.sampled_batch)
            step_s = sampled['seconds'][0] / timed_steps
            epoch_steps = -(-min(encoder.meta['train_rows'], 262_144) // args.sampled_batch)
            # the subgraphs the sampler hands the encoder: PyG's LinkNeighborLoader with fusion_nb's sampler, seeded by the
            # first train transactions (sender and receiver), as train_gnn_encoder(fanout=...) loads them
            train_graph = sampling_graph(visible_graph(tx, split, 'train', edge_features(tx)))
            first = np.flatnonzero(split == 'train')[:3 * args.sampled_batch]
            ends = torch.from_numpy(np.stack([tx.frame['src'].to_numpy()[first], tx.frame['dst'].to_numpy()[first]]))
            loader = LinkNeighborLoader(train_graph, fan, edge_label_index=ends, batch_size=args.sampled_batch,
                                        neighbor_sampler=neighbor_sampler(train_graph, fan, seed=0))
            sub_nodes = float(np.mean([b.num_nodes for b in islice(loader, 3)]))
            results.append(dict(transactions=n, nodes=nodes, edges=edges, train_edges=train_edges, preset=preset, device=str(device),
                                build_s=round(build_s, 3), build_edges_per_s=round(edges / build_s),
                                inputs_s=round(inputs_s, 3), epoch_s=round(epoch_s, 3), epoch_edges_per_s=round(train_edges / epoch_s),
                                train_setup_s=round(train_s - sum(history['seconds']), 3), embed_s=round(embed_s, 3),
                                embed_edges_per_s=round(edges / embed_s), fanout='x'.join(map(str, fan)),
                                sampled_step_s=round(step_s, 3), sampled_epoch_s=round(step_s * epoch_steps, 2),
                                subgraph_nodes=round(sub_nodes), subgraph_share=round(sub_nodes / nodes, 3)))
        del tx, graph
    plot(results, out / 'c_graph.png')
    notes = [f'build: build_account_graph on all rows (best of 3); inputs: graph_inputs (mean adjacencies, best of 3); epoch: median of '
             f'{args.gnn_bench_epochs} full-batch train_gnn_encoder epochs on the train-period graph (70% of rows, loss on up to 262,144 rows); '
             f'setup: the rest of that call (features, visible graph, inputs); embed: graph_embeddings for all rows (one graph per block). '
             f'threads={torch.get_num_threads()}.',
             f'sampled_step: mean time of a train_gnn_encoder(fanout=[{args.fanout}] per layer, batch_size={args.sampled_batch}) step (an epoch of 4 steps, '
             f'after a 1-step warm-up); sampled_epoch: that x the steps of an epoch over the same loss rows as full-batch (up to 262,144); subgraph_nodes: mean nodes of a sampled batch (first 3 batches), subgraph_share: as a share of all nodes, '
             f'i.e. of what a full-batch pass holds in memory.']
    return [common.report('(c) graph build and GNN epochs vs graph size', results,
                          ['transactions', 'nodes', 'edges', 'preset', 'device', 'build_s', 'build_edges_per_s', 'inputs_s', 'epoch_s',
                           'epoch_edges_per_s', 'train_setup_s', 'embed_s', 'fanout', 'sampled_step_s', 'sampled_epoch_s', 'subgraph_nodes', 'subgraph_share'],
                          notes, out, 'c_graph')]


def plot(results, path):
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    build = {r['edges']: r['build_s'] for r in results}
    ax.plot(list(build), list(build.values()), 'o-', label='build_account_graph')
    for preset in dict.fromkeys(r['preset'] for r in results):
        rs = [r for r in results if r['preset'] == preset]
        ax.plot([r['edges'] for r in rs], [r['epoch_s'] for r in rs], 's-', label=f'{preset}: one training epoch')
        ax.plot([r['edges'] for r in rs], [r['embed_s'] for r in rs], '^--', label=f'{preset}: embed all rows')
        ax.plot([r['edges'] for r in rs], [r['sampled_epoch_s'] for r in rs], 'v:', label=f"{preset}: one sampled epoch ({rs[0]['fanout']})")
    ax.set_xscale('log'); ax.set_yscale('log'); ax.set_xlabel('edges (transactions)'); ax.set_ylabel('seconds')
    ax.set_title(f"Graph view cost vs size ({results[0]['device']})"); ax.legend(fontsize=8); ax.grid(alpha=0.3, which='both')
    common.save_png(fig, path)


def main(argv=None):
    common.script_main(__doc__, 'graph', add_args, run, argv)


if __name__ == '__main__':
    main()
