"""GPU check of the Trees baseline (issue 15): XGBoost picks CUDA on a GPU machine, trains there, and scores like the CPU fit.

Run on a machine with an NVIDIA GPU and the CUDA build of `xgboost` (`pip install xgboost`):
    python bench/trees_gpu.py            # exit 0: ok; 1: a check failed (printed)
Prints the device chosen, the fit times on CUDA and CPU, and the validation APs of both fits.
"""
import sys, time
import numpy as np
from sklearn.metrics import average_precision_score
from fusion_nb.simulator import simulate_transactions
from fusion_nb.splits import temporal_split, labelled_mask
from fusion_nb.baselines import tree_features, fit_trees, score_trees, tree_device, tree_rounds, tree_library

def main() -> int:
    device = tree_device()
    print(f'tree_device(): {device}')
    if device != 'cuda':
        print('FAIL: expected cuda (is the CUDA build of xgboost installed, and torch.cuda.is_available()?)'); return 1
    tx = simulate_transactions(n_transactions=100_000, seed=0)
    split, y = temporal_split(tx), tx.frame['label'].to_numpy()
    X, _ = tree_features(tx)
    train, val = labelled_mask(tx, split, 'train'), labelled_mask(tx, split, 'val')
    aps = {}
    for dev in ('cuda', 'cpu'):
        t0 = time.perf_counter()
        model = fit_trees(X[train], y[train], X_val=X[val], y_val=y[val], device=dev)
        aps[dev] = average_precision_score(y[val], score_trees(model, X[val]))
        print(f'{dev}: {tree_library(model)} fit+score {time.perf_counter() - t0:.1f} s, {tree_rounds(model)} rounds, val AP {aps[dev]:.4f}')
    if abs(aps['cuda'] - aps['cpu']) > 0.03:
        print(f'FAIL: CUDA and CPU validation AP differ by {abs(aps["cuda"] - aps["cpu"]):.4f} (> 0.03)'); return 1
    print('ok'); return 0

if __name__ == '__main__': sys.exit(main())
