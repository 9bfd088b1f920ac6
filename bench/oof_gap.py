"""In-sample vs out-of-fold training embeddings (issue 15, item 6): does a head trained on embeddings of rows whose
labels the encoders saw learn to trust them more than the test embeddings deserve?

Builds the two views once (encoders trained on all training labels: the run's in-sample store), then embeds the
training rows again out of fold (`fusion_nb.views.cross_fitted_train_embeddings`: K time folds, each embedded by
encoders trained with that fold's labels hidden; validation and test rows keep the in-sample encoders' embeddings).
On each store it trains a Gated head (`fusion_nb.train.fit`, the run's defaults) and gradient-boosted trees on the
two embeddings alone (sklearn HistGradientBoosting), and prints AP on train, validation and test, and the
train - test gap. Prints the load average: the machine is shared.

    python bench/oof_gap.py --dataset synthetic --n 30000 --folds 3
    python bench/oof_gap.py --dataset aml_dev --nrows 150000 --seq-epochs 1 --folds 3
    python bench/oof_gap.py --dataset aml_dev --nrows 0 --device cuda      # all of aml_dev, on a GPU
"""
from __future__ import annotations
import argparse, os, time
import numpy as np, torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score
from fusion_nb.env import dev_data_dir
from fusion_nb.simulator import simulate_transactions
from fusion_nb.loaders import load_amlsim
from fusion_nb.splits import make_split
from fusion_nb.sequence_view import build_histories
from fusion_nb.views import ViewsConfig, build_views, cross_fitted_train_embeddings
from fusion_nb.fusion import build_head
from fusion_nb.train import TrainConfig, fit, predict_proba, seed_everything

SPLITS = ('train', 'val', 'test')


def transactions(args):
    if args.dataset == 'synthetic': return simulate_transactions(n_transactions=args.n, seed=args.seed)
    root = dev_data_dir()
    if root is None or not (root / 'aml_dev').is_dir(): raise SystemExit('aml_dev not found (see fusion_nb.env.dev_data_dir)')
    return load_amlsim(root / 'aml_dev', nrows=args.nrows or None)


def ap(y, p): return float(average_precision_score(y, p)) if 0 < y.sum() < len(y) else float('nan')


def head_aps(arrays: dict, seed: int, epochs: int, device: str = 'cpu') -> dict:
    "AP per split of a Gated head trained on the train rows (early stopping on validation AP)."
    seed_everything(seed)
    head = build_head('Gated', arrays['train'][0].shape[1], arrays['train'][1].shape[1])
    fit(head, arrays['train'], arrays['val'], TrainConfig(epochs=epochs, seed=seed, device=device), progress=False)
    return {s: ap(arrays[s][2], predict_proba(head, arrays[s][0], arrays[s][1], device=device)) for s in SPLITS}


def tree_aps(arrays: dict, seed: int) -> dict:
    "AP per split of gradient-boosted trees on the two embeddings alone."
    X = {s: np.hstack(arrays[s][:2]) for s in SPLITS}
    model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed).fit(X['train'], arrays['train'][2])
    return {s: ap(arrays[s][2], model.predict_proba(X[s])[:, 1]) for s in SPLITS}


def main():
    ap_ = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap_.add_argument('--dataset', choices=('synthetic', 'aml_dev'), default='synthetic')
    ap_.add_argument('--n', type=int, default=30_000, help='simulated transactions (synthetic)')
    ap_.add_argument('--nrows', type=int, default=200_000, help='rows of aml_dev read')
    ap_.add_argument('--folds', type=int, default=3)
    ap_.add_argument('--gnn-epochs', type=int, default=ViewsConfig.gnn_epochs)
    ap_.add_argument('--seq-epochs', type=int, default=ViewsConfig.seq_epochs)
    ap_.add_argument('--head-epochs', type=int, default=TrainConfig.epochs)
    ap_.add_argument('--seeds', type=int, default=2, help='head seeds')
    ap_.add_argument('--seed', type=int, default=0)
    ap_.add_argument('--threads', type=int, default=1)
    ap_.add_argument('--device', default='cpu', help='cpu, cuda or auto (encoders and heads)')
    args = ap_.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    tx = transactions(args)
    split = make_split(tx)
    config = ViewsConfig(gnn_epochs=args.gnn_epochs, seq_epochs=args.seq_epochs, seed=args.seed, device=args.device, oof_folds=args.folds)
    in_sample = build_views(tx, split, ViewsConfig(**{**config.__dict__, 'oof_folds': 0}), progress=True)
    rows, gnn_oof, seq_oof = cross_fitted_train_embeddings(tx, split, build_histories(tx, k=config.history_k), config)
    position = {i: k for k, i in enumerate(in_sample.ids)}
    at = np.array([position[i] for i in tx.frame['tx_id'].to_numpy()[rows]])
    gnn, seq = in_sample.gnn.copy(), in_sample.seq.copy()
    gnn[at], seq[at] = gnn_oof, seq_oof
    stores = {'in-sample': (in_sample.gnn, in_sample.seq), f'out-of-fold ({args.folds} folds)': (gnn, seq)}
    print(f'\n{tx.source}: {len(tx):,} transactions, fraud {int(tx.frame["label"].sum()):,}; '
          + ', '.join(f'{s} {int((in_sample.split == s).sum()):,} rows / {int(in_sample.label[in_sample.split == s].sum())} fraud' for s in SPLITS))
    print(f'{"train embeddings":<26}{"model":<28}{"AP train":>9}{"AP val":>9}{"AP test":>9}{"train-test":>11}')
    for name, (g, q) in stores.items():
        arrays = {s: (g[in_sample.split == s], q[in_sample.split == s], in_sample.label[in_sample.split == s]) for s in SPLITS}
        results = {f'Gated head (seed {args.seed + i})': head_aps(arrays, args.seed + i, args.head_epochs, args.device) for i in range(args.seeds)}
        results['trees on embeddings'] = tree_aps(arrays, args.seed)
        for model, r in results.items():
            print(f'{name:<26}{model:<28}{r["train"]:>9.3f}{r["val"]:>9.3f}{r["test"]:>9.3f}{r["train"] - r["test"]:>+11.3f}', flush=True)
    print(f'\n{time.perf_counter() - began:.0f} s; load average {os.getloadavg()[0]:.1f}')


if __name__ == '__main__':
    main()
