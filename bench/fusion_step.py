"""Fusion training throughput: the seed's per-sample Dataset + DataLoader loop vs fusion_nb's trainer.

Same head, same data, same batch size, same number of epochs; prints samples/s for each and the ratio.
Not a test (speed depends on the machine); run it by hand or in the GPU check:

    python bench/fusion_step.py                 # CPU here, CUDA when available
    python bench/fusion_step.py --rows 200000 --batch-size 1024 --epochs 3 --model Gated --csv out.csv
"""
import argparse, csv, time, sys
import numpy as np, torch, torch.nn.functional as F
from torch.utils.data import Dataset, DataLoader
from fusion_nb.env import resolve_device
from fusion_nb.fusion import build_head
from fusion_nb.train import TrainConfig, FocalLoss, class_weights, fit, seed_everything


class SeedFusionDataset(Dataset):
    "The seed notebook's dataset: one (gnn, seq, label) triple per __getitem__ call."
    def __init__(self, gnn, seq, labels):
        self.gnn, self.seq, self.labels = torch.FloatTensor(gnn), torch.FloatTensor(seq), torch.LongTensor(labels)
    def __len__(self): return len(self.labels)
    def __getitem__(self, i): return self.gnn[i], self.seq[i], self.labels[i]


def seed_style_epochs(head, gnn, seq, y, batch_size, epochs, device):
    "The seed's train_epoch loop: DataLoader batches moved to the device, AMP on CUDA, per-batch .cpu() of predictions."
    loader = DataLoader(SeedFusionDataset(gnn, seq, y), batch_size=batch_size, shuffle=True, num_workers=0,
                        pin_memory=device.type == 'cuda')
    criterion = FocalLoss(alpha=class_weights(y).to(device), gamma=2.0)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-4)
    use_amp = device.type == 'cuda'
    scaler = torch.amp.GradScaler('cuda', enabled=use_amp)
    head.train()
    for _ in range(epochs):
        preds, labels = [], []
        for g, s, t in loader:
            g, s, t = g.to(device), s.to(device), t.to(device)
            opt.zero_grad(set_to_none=True)
            with torch.amp.autocast(device.type, enabled=use_amp):
                outputs = head(g, s)
                loss = criterion(outputs, t)
            scaler.scale(loss).backward(); scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            scaler.step(opt); scaler.update()
            preds.extend(outputs.argmax(1).cpu().numpy())
            labels.extend(t.cpu().numpy())
    if device.type == 'cuda': torch.cuda.synchronize()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--rows', type=int, default=100_000); ap.add_argument('--gnn-dim', type=int, default=64)
    ap.add_argument('--seq-dim', type=int, default=64); ap.add_argument('--batch-size', type=int, default=256)
    ap.add_argument('--epochs', type=int, default=2); ap.add_argument('--model', default='Gated')
    ap.add_argument('--hidden-dim', type=int, default=256); ap.add_argument('--device', default='auto')
    ap.add_argument('--csv', default=None, help='also write the figures to this CSV file')
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    rng = np.random.default_rng(0)
    gnn = rng.normal(size=(args.rows, args.gnn_dim)).astype(np.float32)
    seq = rng.normal(size=(args.rows, args.seq_dim)).astype(np.float32)
    y = (rng.random(args.rows) < 0.03).astype(np.int64)
    n_val = 512
    rows = []
    for name in ('seed-style DataLoader', 'fusion_nb trainer'):
        seed_everything(0)
        head = build_head(args.model, args.gnn_dim, args.seq_dim, hidden_dim=args.hidden_dim, dropout=0.3).to(device)
        t0 = time.perf_counter()
        if name.startswith('seed'):
            seed_style_epochs(head, gnn, seq, y, args.batch_size, args.epochs, device)
        else:
            cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, patience=args.epochs + 1, device=str(device))
            fit(head, (gnn, seq, y), (gnn[:n_val], seq[:n_val], y[:n_val]), cfg, desc='fusion_nb')
        secs = time.perf_counter() - t0
        rows.append(dict(loop=name, device=str(device), model=args.model, rows=args.rows, batch_size=args.batch_size,
                         epochs=args.epochs, seconds=round(secs, 3), samples_per_s=round(args.rows * args.epochs / secs)))
    speedup = rows[1]['samples_per_s'] / rows[0]['samples_per_s']
    print(f"\n{'loop':<24}{'device':<8}{'samples/s':>12}{'seconds':>10}")
    for r in rows: print(f"{r['loop']:<24}{r['device']:<8}{r['samples_per_s']:>12,}{r['seconds']:>10.2f}")
    print(f'fusion_nb / seed-style: {speedup:.2f}x  (model={args.model}, batch={args.batch_size}, rows={args.rows}, epochs={args.epochs}; '
          f'the fusion_nb time includes its per-epoch validation on {n_val} rows)')
    if args.csv:
        with open(args.csv, 'w', newline='') as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]) + ['speedup']); w.writeheader()
            for r in rows: w.writerow({**r, 'speedup': round(speedup, 3)})
    return rows


if __name__ == '__main__':
    main()
