"""(a3) The training step without launch overhead: eager vs captured CUDA graph vs torch.compile, fp32 vs bf16.

One Gated head (fusion.build_head, width --hidden, 32-wide views) trained on --rows synthetic rows that live on the
device, at each --batch-sizes, with the same step function (fit's: zero grads, index_select gather, forward, focal
loss, backward, gradient clipping, AdamW) run seven ways, side by side, one after the other in one process:

    fit-like eager            the step called directly in a loop, as fit runs it
    eager + bf16              captured_step(enabled=False, amp=True): bf16 autocast, no graph
    captured graph            captured_step(mode='graph', amp=False): one CUDA graph replay per batch
    captured + bf16           captured_step(mode='graph', amp=True)
    captured, amp=auto        captured_step(mode='graph', amp='auto'): what the first-use measurement picks
    torch.compile             captured_step(mode='compile', amp=False): torch.compile(mode='reduce-overhead')
    stacked x N eager/graph   N heads stacked with torch.func (fit_stacked's step), called directly vs captured

Prints samples/s (sample-models/s for the stack) and each loop's path ('graph', 'compiled', or 'eager: <why>':
on a CPU every captured loop reports the eager fallback, so the figures there only show that the wrapper costs
nothing). Warm-up, capture, compilation and the amp trial are not timed: each loop runs --warm-steps untimed steps
first (at least the wrapper's warm-up plus its amp trial), then --steps timed ones.

    python bench/cuda_step.py --quick                      # CPU, a few seconds: checks the script and the fallback
    python bench/cuda_step.py --device cuda                # 1M rows, batch 1024 and 8192, width 64
"""
from __future__ import annotations
import time
import common

LOOPS = ('fit-like eager', 'eager + bf16', 'captured graph', 'captured + bf16', 'captured, amp=auto', 'torch.compile')


def add_args(ap):
    g = ap.add_argument_group('(a3) captured training step')
    g.add_argument('--rows', type=int, default=None,
                   help='training rows on the device (default 1000000; --quick 20000)')
    g.add_argument('--batch-sizes', type=int, nargs='+', default=None, help='default 1024 8192 (--quick: 1024)')
    g.add_argument('--hidden', type=int, default=64, help='head width (ExperimentConfig default)')
    g.add_argument('--emb-dim', type=int, default=32, help='width of each view (ViewsConfig.emb_dim default)')
    g.add_argument('--stack', type=int, default=9, help="heads in the stacked loops (the default run's 9; 0: none)")
    g.add_argument('--steps', type=int, default=None, help='timed steps per loop (default 300; --quick 10)')
    g.add_argument('--warm-steps', type=int, default=25,
                   help='untimed steps per loop first (warm-up, capture, amp trial; --quick 3)')
    g.add_argument('--skip', nargs='*', default=[], help=f'loops to leave out, by name: {", ".join(LOOPS)}, stacked')


def _data(rows, emb_dim, device, seed=0):
    "A synthetic embedding store (gnn, seq, label) on the device, 3% fraud."
    import torch
    g = torch.Generator().manual_seed(seed)
    gnn, seq = torch.randn(rows, emb_dim, generator=g), torch.randn(rows, emb_dim, generator=g)
    return gnn.to(device), seq.to(device), (torch.rand(rows, generator=g) < 0.03).long().to(device)


def _head(args, seed, device):
    "A Gated head built as run_experiment builds it (seeded, then build_head), on the device, in training mode."
    from fusion_nb.engine import seed_everything
    from fusion_nb.fusion import build_head
    seed_everything(seed)
    return build_head('Gated', args.emb_dim, args.emb_dim, hidden_dim=args.hidden, dropout=0.3).to(device).train()


def head_step(head, optimizer, criterion, data, grad_clip=1.0):
    "fit's training step for one head, as a function of the batch's row indices (gathered inside the step)."
    import torch
    gnn, seq, label = data
    def step(idx):
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(head(gnn.index_select(0, idx), seq.index_select(0, idx)), label.index_select(0, idx))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), grad_clip)
        optimizer.step()
        return loss.detach()
    return step


def stacked_step(heads, optimizer_for, criterion, data, grad_clip=1.0):
    "fit_stacked's step for `heads` stacked with torch.func, as a function of row indices [N, B]; and its optimizer."
    from torch.func import stack_module_state, functional_call, vmap
    from fusion_nb.stack import vmap_layers, clip_per_model
    gnn, seq, label = data
    base = vmap_layers(heads[0]).train()
    stacked, buffers = stack_module_state(heads)
    params = {name: p.detach().requires_grad_() for name, p in stacked.items()}
    optimizer = optimizer_for(params.values())
    forward = vmap(lambda p, b, g, s: functional_call(base, (p, b), (g, s)), randomness='different')
    def step(idx):
        rows = lambda t: t.index_select(0, idx.flatten()).view(*idx.shape, *t.shape[1:])
        optimizer.zero_grad(set_to_none=True)
        losses = vmap(criterion)(forward(params, buffers, rows(gnn), rows(seq)), rows(label))
        losses.sum().backward()
        clip_per_model([p.grad for p in params.values()], grad_clip)
        optimizer.step()
        return losses.detach()
    return step, optimizer


def _time(step, batches, warm, steps, device):
    "Seconds for `steps` calls of `step` (after `warm` untimed ones), accumulating the loss on the device as fit does."
    import torch
    loss_sum = None
    for i in range(warm): step(batches[i % len(batches)])
    common.sync(device)
    start = time.perf_counter()
    for i in range(steps):
        loss = step(batches[(warm + i) % len(batches)])
        loss_sum = loss if loss_sum is None else loss_sum + loss
    common.sync(device)
    seconds = time.perf_counter() - start
    assert torch.isfinite(loss_sum).all(), f'non-finite training loss {loss_sum}'
    return seconds


def _single_loops(args, device, data, criterion, batch_size, batches):
    "One row per single-head loop at this batch size: samples/s and how the step ran."
    from fusion_nb.engine import adamw
    from fusion_nb.cuda_step import captured_step
    options = {'eager + bf16': dict(enabled=False, amp=True), 'captured graph': dict(amp=False),
               'captured + bf16': dict(amp=True), 'captured, amp=auto': dict(amp='auto'),
               'torch.compile': dict(mode='compile', amp=False)}
    rows = []
    for name in LOOPS:
        if name in args.skip: continue
        head = _head(args, 0, device)
        optimizer = adamw(head.parameters(), 1e-3, 1e-4)
        step = head_step(head, optimizer, criterion, data)
        wrapped = step if name == 'fit-like eager' else captured_step(step, optimizer, (batches[0],), **options[name])
        seconds = _time(wrapped, batches, args.warm_steps, args.steps, device)
        path = 'eager (direct call)' if wrapped is step else wrapped.path
        rows.append(dict(loop=name, batch=batch_size, models=1, path=path, seconds=seconds,
                         samples_per_s=args.steps * batch_size / seconds))
        print(f'  {name:<20} batch {batch_size:>5}: {rows[-1]["samples_per_s"]:>12,.0f} samples/s  ({path})',
              flush=True)
    return rows


def _stacked_loops(args, device, data, criterion, batch_size):
    "Rows for the N-head stack, called directly and captured: sample-models/s."
    import torch
    from fusion_nb.cuda_step import captured_step, capturable_adamw
    from fusion_nb.engine import adamw
    n, rows = args.stack, []
    per_model = [torch.randperm(args.rows, generator=torch.Generator().manual_seed(s)).to(device) for s in range(n)]
    starts = range(0, args.rows - batch_size + 1, batch_size)
    batches = [torch.stack([p[i:i + batch_size] for p in per_model]) for i in starts]
    for name, captured in ((f'stacked x{n} eager', False), (f'stacked x{n} captured', True)):
        heads = [_head(args, seed, device) for seed in range(n)]
        make = (lambda p: capturable_adamw(p, 1e-3, 1e-4)) if captured else (lambda p: adamw(p, 1e-3, 1e-4))
        step, optimizer = stacked_step(heads, make, criterion, data)
        wrapped = captured_step(step, optimizer, (batches[0],), amp=False) if captured else step
        seconds = _time(wrapped, batches, args.warm_steps, args.steps, device)
        path = wrapped.path if captured else 'eager (direct call)'
        rows.append(dict(loop=name, batch=batch_size, models=n, path=path, seconds=seconds,
                         samples_per_s=args.steps * batch_size * n / seconds))
        print(f'  {name:<20} batch {batch_size:>5}: {rows[-1]["samples_per_s"]:>12,.0f} sample-models/s  ({path})',
              flush=True)
    return rows


def run(args, out):
    import torch
    from fusion_nb.env import resolve_device
    from fusion_nb.engine import FocalLoss, class_weights
    device = resolve_device(args.device)
    args.rows = args.rows or (20_000 if args.quick else 1_000_000)
    args.batch_sizes = args.batch_sizes or ([1024] if args.quick else [1024, 8192])
    args.steps = args.steps or (10 if args.quick else 300)
    if args.quick: args.warm_steps = min(args.warm_steps, 3)
    data = _data(args.rows, args.emb_dim, device)
    criterion = FocalLoss(class_weights(data[2].cpu().numpy())).to(device)
    print(f'device {device}, {args.rows:,} rows, width {args.hidden}, {args.steps} timed steps per loop', flush=True)
    rows = []
    for batch_size in args.batch_sizes:
        order = torch.randperm(args.rows, generator=torch.Generator().manual_seed(1)).to(device)
        batches = list(order[: args.rows // batch_size * batch_size].split(batch_size))
        rows += _single_loops(args, device, data, criterion, batch_size, batches)
        if args.stack and 'stacked' not in args.skip: rows += _stacked_loops(args, device, data, criterion, batch_size)
    for r in rows:
        base = next(b for b in rows if b['batch'] == r['batch'] and b['models'] == r['models']
                    and b['path'] == 'eager (direct call)')
        r['vs_eager'] = r['samples_per_s'] / base['samples_per_s']
    notes = [f'device {device}; samples/s = timed steps x batch (x models for a stack) / seconds, after '
             f'{args.warm_steps} untimed steps; vs_eager: against the direct call at the same batch and model count.',
             'path: how the timed steps ran (graph / graph+bf16 / compiled / eager: why). On a CPU the captured loops '
             'run the eager fallback: their figures only show the wrapper adds no cost there.']
    common.report('training step: eager vs captured CUDA graph vs torch.compile', rows,
                  ['loop', 'batch', 'models', 'samples_per_s', 'vs_eager', 'path'], notes, out, 'cuda_step')


if __name__ == '__main__':
    common.script_main(__doc__, 'cuda_step', add_args, run)
