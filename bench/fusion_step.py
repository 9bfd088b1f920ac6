"""(a) Fusion training step: the legacy notebooks' per-sample Dataset + DataLoader loop vs fusion_nb.train.fit, and scoring.
On CUDA fit runs its default captured CUDA-graph step (TrainConfig.cuda_graph='auto') and, as a third loop, the eager
step (cuda_graph='off'); the `path` column says how each fit's step ran (CapturedStep.path).

Same head, same data, same batch size and epochs for both loops; prints samples/s of each, the speed-up,
this machine's fp32 matmul rate measured in the same run (matrices shaped like the head's Linear layers,
and one large square product), and our training rate as a fraction of it (FLOPs per sample = 2*in*out*3
summed over the head's Linear layers: forward + two backward products). Then scoring throughput of a
trained head with fusion_nb.train.predict_proba (target >= 200k transactions/s on CPU).

    python bench/fusion_step.py                      # CPU, 200k rows, batch 256 and 1024, hidden 64 and 256
    python bench/fusion_step.py --quick
    python bench/fusion_step.py --device cuda --batch-sizes 1024 --rows 1000000
"""
from __future__ import annotations
import time
import common

SCORE_TARGET = 200_000          # transactions/s on CPU
LOOPS = ('legacy DataLoader', 'fusion_nb fit', 'fusion_nb fit, eager')   # the last on CUDA only (cuda_graph=off)


def add_args(ap):
    g = ap.add_argument_group('(a) fusion training step')
    g.add_argument('--rows', type=int, default=None, help='training rows (default 200000; --quick 50000)')
    g.add_argument('--batch-sizes', type=int, nargs='+', default=[256, 1024], help='batch sizes (the legacy notebooks used 256)')
    g.add_argument('--hidden-dims', type=int, nargs='+', default=None,
                   help='head widths (default 64 = our experiment default and 256 as in the legacy notebooks; --quick 64)')
    g.add_argument('--model', default='Gated', help='fusion head (Simple|Attention|Gated|CrossModal)')
    g.add_argument('--emb-dim', type=int, default=32, help='width of each view (ViewsConfig.emb_dim default)')
    g.add_argument('--epochs', type=int, default=None, help='epochs per loop (default 2; --quick 1)')
    g.add_argument('--score-rows', type=int, default=None, help='rows scored by predict_proba (default 1000000; --quick 200000)')


# --- the legacy notebooks' training code, kept as it was (per-sample Dataset, DataLoader, per-batch .item()/.cpu()) ---
def _legacy_classes():
    import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
    from torch.utils.data import Dataset

    class FusionDataset(Dataset):
        "The legacy notebooks' dataset: one (gnn, seq, label) triple per __getitem__ call."
        def __init__(self, gnn, seq, labels):
            self.gnn, self.seq, self.labels = torch.FloatTensor(gnn), torch.FloatTensor(seq), torch.LongTensor(labels)
        def __len__(self): return len(self.labels)
        def __getitem__(self, i): return self.gnn[i], self.seq[i], self.labels[i]
        def get_class_weights(self):
            counts = np.bincount(self.labels.numpy()); w = 1.0 / counts
            return torch.FloatTensor(w / w.sum() * len(w))

    class FocalLoss(nn.Module):
        "The legacy notebooks' focal loss (class weights inside the cross-entropy)."
        def __init__(self, alpha=None, gamma=2.0):
            super().__init__(); self.alpha, self.gamma = alpha, gamma
        def forward(self, inputs, targets):
            ce = F.cross_entropy(inputs, targets, reduction='none', weight=self.alpha)
            return (((1 - torch.exp(-ce)) ** self.gamma) * ce).mean()

    return FusionDataset, FocalLoss


def legacy_fit(head, train, val, batch_size, epochs, device):
    "The legacy notebooks' train_fusion_model loop (train_epoch + evaluate per epoch), minus its tqdm bars and printing."
    import numpy as np, torch, torch.nn.functional as F
    from torch.utils.data import DataLoader
    from sklearn.metrics import accuracy_score, precision_score, recall_score, f1_score, roc_auc_score, average_precision_score
    FusionDataset, FocalLoss = _legacy_classes()
    pin = device.type == 'cuda'
    train_ds, val_ds = FusionDataset(*train), FusionDataset(*val)
    train_loader = DataLoader(train_ds, batch_size=batch_size, shuffle=True, num_workers=0, pin_memory=pin)
    val_loader = DataLoader(val_ds, batch_size=batch_size, shuffle=False, num_workers=0, pin_memory=pin)
    criterion = FocalLoss(alpha=train_ds.get_class_weights().to(device), gamma=2.5)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=20, T_mult=2)
    use_amp = device.type == 'cuda'
    scaler = torch.amp.GradScaler('cuda', enabled=use_amp)
    for _ in range(epochs):
        head.train(); total_loss, preds, labels = 0.0, [], []
        for g, s, t in train_loader:
            g, s, t = g.to(device), s.to(device), t.to(device)
            optimizer.zero_grad(set_to_none=True)
            with torch.amp.autocast(device.type, enabled=use_amp):
                outputs = head(g, s); loss = criterion(outputs, t)
            scaler.scale(loss).backward(); scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(head.parameters(), max_norm=1.0)
            scaler.step(optimizer); scaler.update()
            total_loss += loss.item() * g.size(0)
            preds.extend(outputs.argmax(dim=1).cpu().numpy()); labels.extend(t.cpu().numpy())
        accuracy_score(labels, preds)
        head.eval(); probs, preds, labels = [], [], []
        with torch.no_grad():
            for g, s, t in val_loader:
                g, s, t = g.to(device), s.to(device), t.to(device)
                outputs = head(g, s); criterion(outputs, t).item()
                p = F.softmax(outputs, dim=1)
                preds.extend(p.argmax(dim=1).cpu().numpy()); probs.extend(p[:, 1].cpu().numpy()); labels.extend(t.cpu().numpy())
        preds, probs, labels = np.array(preds), np.array(probs), np.array(labels)
        for m in (accuracy_score, precision_score, recall_score, f1_score):
            m(labels, preds) if m is accuracy_score else m(labels, preds, zero_division=0)
        roc_auc_score(labels, probs); average_precision_score(labels, probs)
        scheduler.step()
    common.sync(device)


# --- FLOPs and the machine's matmul rate ---
def linear_shapes(head) -> list[tuple[int, int]]:
    "(in, out) of every nn.Linear in `head` (MultiheadAttention's packed input projection is not counted)."
    import torch.nn as nn
    return [(m.in_features, m.out_features) for m in head.modules() if isinstance(m, nn.Linear)]


def flops_per_sample(head) -> int:
    "Training FLOPs per sample of the head's Linear layers: 2*in*out for the forward and twice that backward."
    return sum(2 * i * o * 3 for i, o in linear_shapes(head))


def mm_seconds(m, k, n, device, min_time=0.05):
    "Best time of one fp32 [m,k]@[k,n] product on `device` (best of 5 batches of calls lasting >= min_time)."
    import torch
    a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
    torch.mm(a, b); common.sync(device)
    calls = 1
    while True:
        common.sync(device); t0 = time.perf_counter()
        for _ in range(calls): torch.mm(a, b)
        common.sync(device); dt = time.perf_counter() - t0
        if dt >= min_time or calls >= 1 << 16: break
        calls *= 4
    best = dt / calls
    for _ in range(4):
        common.sync(device); t0 = time.perf_counter()
        for _ in range(calls): torch.mm(a, b)
        common.sync(device); best = min(best, (time.perf_counter() - t0) / calls)
    return best


def head_matmul_rate(shapes, batch, device) -> float:
    "GFLOP/s of the head's own matmuls at `batch` rows: forward [B,in]@[in,out], backward [B,out]@[out,in] and [out,B]@[B,in]."
    flops = secs = 0.0
    for i, o in shapes:
        for m, k, n in ((batch, i, o), (batch, o, i), (o, batch, i)):
            flops += 2 * m * k * n; secs += mm_seconds(m, k, n, device)
    return flops / secs / 1e9


def square_rate(device) -> tuple[int, float]:
    "(size, GFLOP/s) of a large square fp32 product: the machine's practical matmul peak."
    size = 8192 if device.type == 'cuda' else 2048
    return size, 2 * size ** 3 / mm_seconds(size, size, size, device, min_time=0.3) / 1e9


# --- the benchmark ---
def run(args, out) -> list[str]:
    import numpy as np, torch
    from fusion_nb.env import resolve_device
    from fusion_nb.fusion import build_head
    from fusion_nb.engine import seed_everything
    from fusion_nb.train import TrainConfig, fit, predict_proba
    device = resolve_device(args.device)
    rows = args.rows or (50_000 if args.quick else 200_000)
    epochs = args.epochs or (1 if args.quick else 2)
    hidden_dims = args.hidden_dims or ([64] if args.quick else [64, 256])
    score_rows = args.score_rows or (200_000 if args.quick else 1_000_000)
    rng = np.random.default_rng(0)
    def views(n):
        return (rng.normal(size=(n, args.emb_dim)).astype(np.float32), rng.normal(size=(n, args.emb_dim)).astype(np.float32),
                (rng.random(n) < 0.03).astype(np.int64))
    train, val = views(rows), views(2048)
    warm = views(4096)                # first calls pay for lazy initialisation (CUDA context, cuBLAS, autocast): not timed
    legacy_fit(build_head(args.model, args.emb_dim, args.emb_dim, hidden_dim=64).to(device), warm, val, 1024, 1, device)
    fit(build_head(args.model, args.emb_dim, args.emb_dim, hidden_dim=64), warm, val, TrainConfig(epochs=1, batch_size=1024, device=str(device)))
    sq_size, sq_rate = square_rate(device)
    matmul = [dict(shape=f'square {sq_size}x{sq_size}x{sq_size}', device=str(device), gflops=sq_rate)]
    training, scoring, trained = [], [], {}
    for hidden in hidden_dims:
        probe = build_head(args.model, args.emb_dim, args.emb_dim, hidden_dim=hidden, dropout=0.3)
        shapes, fps = linear_shapes(probe), flops_per_sample(probe)
        for bs in args.batch_sizes:
            layer_rate = head_matmul_rate(shapes, bs, device)
            matmul.append(dict(shape=f'{args.model} h{hidden} layers @ batch {bs}', device=str(device), gflops=layer_rate))
            result = {}
            for loop in LOOPS[:2] + (LOOPS[2:] if device.type == 'cuda' else ()):
                seed_everything(0)
                head = build_head(args.model, args.emb_dim, args.emb_dim, hidden_dim=hidden, dropout=0.3).to(device)
                t0, paths = time.perf_counter(), []
                if loop.startswith('legacy'): legacy_fit(head, train, val, bs, epochs, device); paths.append('eager')
                else:       # cuda_graph 'auto' (the default): fit's step replays as a captured CUDA graph on CUDA
                    cfg = TrainConfig(epochs=epochs, batch_size=bs, patience=epochs + 1, device=str(device),
                                      cuda_graph='off' if loop.endswith('eager') else 'auto')
                    fit(head, train, val, cfg, on_epoch=lambda info: paths.append(info['step_path'])); common.sync(device)
                secs = time.perf_counter() - t0
                rate = rows * epochs / secs
                result[loop] = rate
                training.append(dict(loop=loop, device=str(device), model=args.model, hidden=hidden, batch=bs, rows=rows,
                                     epochs=epochs, seconds=round(secs, 2), samples_per_s=round(rate),
                                     flops_per_sample=fps, gflops=round(rate * fps / 1e9, 2),
                                     pct_of_square_mm=round(100 * rate * fps / 1e9 / sq_rate, 1),
                                     pct_of_layer_mm=round(100 * rate * fps / 1e9 / layer_rate, 1),
                                     path=paths[-1] if paths else '?'))
                print(f"  {loop} h{hidden} b{bs}: {rate:,.0f} samples/s, step path: {paths[-1] if paths else '?'}", flush=True)
                if loop == 'fusion_nb fit': trained[hidden] = head
            for r in training[-len(result):]: r['speedup'] = round(result[r['loop']] / result['legacy DataLoader'], 2)
        # on an accelerator, also score on its host CPU (first head width only: wide heads are slow there)
        score_devices = [device] + ([torch.device('cpu')] if device.type != 'cpu' and hidden == hidden_dims[0] else [])
        g, s, _ = views(score_rows)
        for dev in score_devices:
            head = trained[hidden].to(dev)
            predict_proba(head, g[:16384], s[:16384], device=dev)                  # warm-up, not timed
            for bs in ((8192, 65536) if hidden == hidden_dims[0] else (8192,)):  # 8192 = predict_proba's default
                times, _ = common.timed(lambda: predict_proba(head, g, s, device=dev, batch_size=bs), repeat=2, device=dev)
                rate = score_rows / min(times)
                scoring.append(dict(model=args.model, hidden=hidden, device=str(dev), batch=bs, rows=score_rows,
                                    seconds=round(min(times), 3), tx_per_s=round(rate),
                                    target=f'>= {SCORE_TARGET:,}/s' if dev.type == 'cpu' else '',
                                    meets=(rate >= SCORE_TARGET) if dev.type == 'cpu' else ''))
        trained[hidden] = trained[hidden].to(device)
    plot(training, scoring, out / 'a_fusion_step.png')
    texts = [common.report('(a) fusion training step: legacy DataLoader vs fusion_nb fit', training,
                           ['loop', 'device', 'hidden', 'batch', 'seconds', 'samples_per_s', 'speedup', 'flops_per_sample',
                            'gflops', 'pct_of_square_mm', 'pct_of_layer_mm', 'path'],
                           [f'{rows:,} training rows x {epochs} epoch(s), {args.model} head, views {args.emb_dim}+{args.emb_dim} wide, '
                            f'2,048 validation rows scored each epoch by both loops; threads={torch.get_num_threads()}.',
                            'flops_per_sample = sum over Linear layers of 2*in*out*3 (forward + backward). '
                            'pct_of_square_mm: our GFLOP/s as % of a large square fp32 matmul; '
                            'pct_of_layer_mm: as % of fp32 matmuls shaped like the head\'s layers at that batch.',
                            'path: how fit\'s training step ran (CapturedStep.path: graph / graph+bf16 / eager: why; eager: the '
                            'plain step). On CUDA "fusion_nb fit" is the default (cuda_graph=auto: captured), "fusion_nb fit, '
                            'eager" the same fit with cuda_graph=off.'],
                           out, 'a_fusion_step'),
             common.report('(a) fp32 matmul rate of this machine (same run)', matmul, ['shape', 'device', 'gflops'],
                           ['best of 5; "layers @ batch B" = forward and both backward products of every Linear layer of the head.'],
                           out, 'a_matmul'),
             common.report('(a) scoring throughput: fusion_nb.train.predict_proba with a trained head', scoring,
                           ['model', 'hidden', 'device', 'batch', 'rows', 'seconds', 'tx_per_s', 'target', 'meets'],
                           ['best of 2 calls after a warm-up; includes the numpy->tensor conversion and finiteness check.'],
                           out, 'a_scoring')]
    return texts


def plot(training, scoring, path):
    plt = common.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    labels = [f"h{r['hidden']} b{r['batch']}" for r in training if r['loop'].startswith('legacy')]
    x = range(len(labels))
    loops = [loop for loop in LOOPS if any(r['loop'] == loop for r in training)]
    width = 0.8 / len(loops)
    for j, loop in enumerate(loops):
        vals = [r['samples_per_s'] for r in training if r['loop'] == loop]
        axes[0].bar([i + width * j for i in x], vals, width=width, label=loop)
    axes[0].set_xticks([i + 0.4 - width / 2 for i in x], labels); axes[0].set_ylabel('training samples/s'); axes[0].legend()
    axes[0].set_title(f"Fusion training ({training[0]['model']}, {training[0]['device']})")
    lab = [f"{r['device']} h{r['hidden']} b{r['batch']}" for r in scoring]
    axes[1].barh(lab, [r['tx_per_s'] for r in scoring], color='tab:green')
    axes[1].axvline(SCORE_TARGET, color='k', ls='--', label='target 200k/s (CPU)'); axes[1].legend()
    axes[1].set_xlabel('scored transactions/s'); axes[1].set_title('predict_proba')
    common.save_png(fig, path)


def main(argv=None):
    common.script_main(__doc__, 'fusion_step', add_args, run, argv)


if __name__ == '__main__':
    main()
