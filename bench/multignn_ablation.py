"""Ablation of the Multi-GNN additions (03b_multignn) on aml_dev: gnn-only validation AP of the encoder's own head;
with --speed, seconds per full-batch epoch of PyG's convolutions against 03b's CPU kernels instead.

Usage: OMP_NUM_THREADS=1 python bench/multignn_ablation.py [--rows 300000] [--epochs 60] [--hidden 32] [--data sim]
       [--only MultiGINE,MultiPNA] [--device cuda] [--fanout 10,10 (sampled training; adds the ego-id variant)]
GPU check: python bench/multignn_ablation.py --data sim --device cuda --only HybridGNN,MultiGINE,MultiPNA --hidden 64 --epochs 100 --lr 5e-3
Trains each variant full-batch on the train-period graph (train labels only, 70/15/15 split by time) and reports
validation AP (test is not looked at). Needs ../shared/data/aml_dev unless --data sim.

Speed: python bench/multignn_ablation.py --speed --data sim --hidden 64 [--speed-threads 1,2] [--speed-epochs 4]
Trains each of --only (default HybridGNN,MultiGINE,MultiPNA) for --speed-epochs full-batch epochs at each thread count,
once with PyG's GINEConv/PNAConv (`multignn._pyg_forward`, the path before 03b's CPU kernels) and once with the CPU
kernels (`multignn._cpu_forward`): the median epoch after the first, the first epoch (the kernels derive the graph's
constants there) and `graph_embeddings` of all rows, side by side. On a shared machine run it under `flock`.
"""
import argparse, os, time, warnings
from contextlib import contextmanager
import numpy as np, torch
from sklearn.metrics import average_precision_score
from fusion_nb.env import dev_data_dir
from fusion_nb.loaders import load_amlsim
from fusion_nb.simulator import simulate_transactions
from fusion_nb.views import default_split
from fusion_nb.graph_view import GNN_FAMILIES, gnn_config, train_gnn_encoder, graph_embeddings
from fusion_nb import multignn
from fusion_nb.multignn import sampled_graph_embeddings

VARIANTS = {   # family name -> GNN_FAMILIES entry (the ablation adds its intermediate steps as families)
    'HybridGNN': None,
    'GINE': None,
    'GINE+rev': dict(arch='multignn', options=dict(conv='gine', reverse=True)),
    'GINE+rev+ports': dict(arch='multignn', options=dict(conv='gine', reverse=True, ports=True)),
    'GINE+rev+ports+time': dict(arch='multignn', options=dict(conv='gine', reverse=True, ports=True, time=True)),
    'MultiGINE': None,
    'MultiPNA': None,
    'MultiGINE+ego': dict(arch='multignn', options=dict(conv='gine', reverse=True, ports=True, time=True, edge_updates=True, ego=True)),
}

def val_ap(tx, split, family, hidden, epochs, lr, device='cpu', fanout=None):
    name = family.replace('+', 'x')
    if VARIANTS[family] is not None: GNN_FAMILIES[name] = VARIANTS[family]
    began = time.perf_counter()
    enc, _ = train_gnn_encoder(tx, split, preset=f'{name}_L2_H{hidden}', epochs=epochs, lr=lr, progress=False, device=device, fanout=fanout)
    if fanout is not None: emb, _ = sampled_graph_embeddings(enc, tx, split, fanout, device=device)   # embedded as trained
    else: emb, _ = graph_embeddings(enc, tx, split, device=device)
    enc = enc.cpu()
    with torch.no_grad(): logits = enc.head.eval()(torch.from_numpy(emb))
    score = (logits[:, 1] - logits[:, 0]).numpy()
    y, val, train = tx.frame['label'].to_numpy(), split == 'val', split == 'train'
    per_typology = {}
    if 'typology' in tx.frame:                           # AP over one typology's fraud rows and all legitimate rows
        typology = tx.frame['typology'].astype(str).to_numpy()
        for name in sorted(set(typology[val & (y == 1)])):
            keep = val & ((y == 0) | (typology == name))
            per_typology[name] = average_precision_score(y[keep], score[keep])
    return (average_precision_score(y[val], score[val]), average_precision_score(y[train], score[train]),
            time.perf_counter() - began, per_typology)

@contextmanager
def multignn_forward(forward):
    "MultiGNNEncoder's forward replaced by `forward` (multignn._pyg_forward or _cpu_forward) inside the block."
    saved = multignn.MultiGNNEncoder.forward
    multignn.MultiGNNEncoder.forward = forward
    try: yield
    finally: multignn.MultiGNNEncoder.forward = saved

def epoch_seconds(tx, split, family, hidden, epochs, lr, forward):
    "(median epoch after the first, first epoch, graph_embeddings of all rows) in seconds, with `forward` for Multi-GNN encoders."
    with multignn_forward(forward):
        enc, history = train_gnn_encoder(tx, split, preset=f'{family}_L2_H{hidden}', epochs=epochs, lr=lr, progress=False, device='cpu')
        began = time.perf_counter()
        graph_embeddings(enc, tx, split, device='cpu')
    return float(np.median(history['seconds'][1:])), history['seconds'][0], time.perf_counter() - began

def speed_table(tx, split, families, hidden, epochs, lr, threads):
    "Markdown table: per family and thread count, PyG's convolutions against the CPU kernels."
    rows = ['| encoder | threads | s/epoch PyG | s/epoch CPU kernels | speed-up | first epoch PyG / kernels | '
            'embed s PyG / kernels |', '|---|---|---|---|---|---|---|']
    for t in threads:
        torch.set_num_threads(t)
        for family in families:
            multi = gnn_config(f'{family}_L2_H{hidden}').arch == 'multignn'
            pyg = epoch_seconds(tx, split, family, hidden, epochs, lr, multignn._pyg_forward)
            cpu = epoch_seconds(tx, split, family, hidden, epochs, lr, multignn._cpu_forward) if multi else pyg
            rows.append(f'| {family}_L2_H{hidden} | {t} | {pyg[0]:.3f} | {cpu[0]:.3f} | {pyg[0] / cpu[0]:.1f}x | '
                        f'{pyg[1]:.3f} / {cpu[1]:.3f} | {pyg[2]:.2f} / {cpu[2]:.2f} |' if multi else
                        f'| {family}_L2_H{hidden} | {t} | {pyg[0]:.3f} | (no Multi-GNN path) | | {pyg[1]:.3f} | {pyg[2]:.2f} |')
            print(rows[-1], flush=True)
    return rows

if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--data', default='aml_dev'); p.add_argument('--rows', type=int, default=300_000)
    p.add_argument('--epochs', type=int, default=60); p.add_argument('--hidden', type=int, default=32)
    p.add_argument('--lr', type=float, default=1e-2); p.add_argument('--only', default='')
    p.add_argument('--device', default='cpu'); p.add_argument('--fanout', default='', help='e.g. 10,10: sampled training (ego variants need it)')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--speed', action='store_true', help='time PyG convolutions against the CPU kernels instead of the ablation')
    p.add_argument('--speed-epochs', type=int, default=4); p.add_argument('--speed-threads', default='1,2')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    fanout = [int(f) for f in a.fanout.split(',')] if a.fanout else None
    tx = simulate_transactions() if a.data == 'sim' else load_amlsim(dev_data_dir() / 'aml_dev', nrows=a.rows)
    split = default_split(tx)
    y = tx.frame['label'].to_numpy()
    print(f'{a.data}: {len(y):,} rows, train fraud {int(y[split == "train"].sum())}, val fraud {int(y[split == "val"].sum())} '
          f'(val base rate {y[split == "val"].mean():.4f}); L2 H{a.hidden}, {a.epochs} {"full-batch" if fanout is None else f"sampled {fanout}"} epochs, lr {a.lr}, {a.device}', flush=True)
    if a.speed:
        families = a.only.split(',') if a.only else ['HybridGNN', 'MultiGINE', 'MultiPNA']
        print(f'{a.speed_epochs} full-batch epochs (median after the first), graph_embeddings of all rows; load average '
              f'{"/".join(f"{x:.2f}" for x in os.getloadavg())}', flush=True)
        rows = speed_table(tx, split, families, a.hidden, a.speed_epochs, a.lr, [int(t) for t in a.speed_threads.split(',')])
        print('\n'.join(rows)); raise SystemExit
    print('| variant | val AP | train AP | seconds |\n|---|---|---|---|', flush=True)
    for family in (a.only.split(',') if a.only else [v for v in VARIANTS if 'ego' not in v or fanout]):
        ap, tr, s, per_typology = val_ap(tx, split, family, a.hidden, a.epochs, a.lr, a.device, fanout)
        detail = ', '.join(f'{k} {v:.3f}' for k, v in per_typology.items())
        print(f'| {family} | {ap:.3f} | {tr:.3f} | {s:.0f} |' + (f' {detail} |' if detail else ''), flush=True)
