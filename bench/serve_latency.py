"""Real-time scoring over HTTP (issue 14): latency of `fusion-nb serve` under a bounded open-loop load, and throughput.

The service runs in its own process (`python -m fusion_nb.cli serve`), as in production; this process is the load
generator: a raw HTTP/1.1 client on asyncio with keep-alive connections, light enough to leave the service most of a
core. On a 2-core machine the two still share the CPU with each other (and with whatever else runs): say so when
quoting the figures. `--pin` gives the service a core of its own and the load generator the others, as a client on
another machine would leave it.

1. Latency (open loop): single-transaction requests sent at fixed rates (default 50/100/200/400 per second) for
   `--seconds` each, on a schedule that does not wait for answers. A request's latency runs from its *scheduled*
   send time to its answer, so a slow answer also delays the requests queued behind it in the figures (no
   coordinated omission). At most `--max-outstanding` requests are in flight; a request due while that many are
   waiting is dropped and counted (the bound keeps an overloaded service from being buried). p50/p90/p99/max in ms.
2. Throughput: (a) list requests of `--list-sizes` transactions (micro-batches sent by the client), one connection,
   back to back; (b) many clients (`--clients`) sending single transactions back to back, which the service
   micro-batches itself. Transactions/s.
   Both for each service variant (`--variants`): the server's `--log-sync` batch (fdatasync before each answer),
   second (the default: fdatasync in the background within a second) and off; `--batch-wait-ms` 0 and 1; and
   `--busy-poll-ms 20` (the loop polls for 20 ms after each request instead of sleeping).

3. Breakdown: the model's single-row `score` call in this process and one log line on this disk, with and without
   its fdatasync, the costs of a request besides HTTP.

Writes serve_latency.csv/.txt, serve_throughput.csv/.txt, serve_breakdown.csv/.txt and serve_latency.png (p50/p99
vs rate) into the output folder. Targets (issue 14): p99 <= 10 ms at 200 requests/s; >= 5,000 transactions/s micro-batched.
"""
from __future__ import annotations
import argparse, asyncio, contextlib, gc, json, os, shutil, signal, socket, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import script_main, report, save_png, pyplot
from score_batch import tiny_run, later_rows
from fusion_nb.serve import LOG_SYNC_MODES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def start_service(run_dir: Path, state_dir: Path, batch_wait_ms: float, threads: int, log_sync: str = 'batch',
                  timeout: float = 120, busy_poll_ms: float = 0.0, cpus: set[int] | None = None):
    "`fusion-nb serve` in a child process on a free loopback port; returns (process, port) once /health answers."
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, '-m', 'fusion_nb.cli', 'serve', str(run_dir), '--port', str(port), '--state-dir', str(state_dir),
           '--batch-wait-ms', str(batch_wait_ms), '--threads', str(threads), '--busy-poll-ms', str(busy_poll_ms)]
    cmd += ['--log-sync', log_sync]
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None     # before exec: every thread of the service inherits it
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=pin)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None: raise RuntimeError(f'the service exited ({proc.returncode}):\n{proc.stdout.read()}')
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=0.2) as s:
                s.sendall(b'GET /health HTTP/1.1\r\nHost: b\r\n\r\n')
                if s.recv(64).startswith(b'HTTP/1.1 200'): return proc, port
        except OSError: time.sleep(0.1)
    proc.kill(); raise RuntimeError('the service did not answer /health in time')


def stop_service(proc):
    "SIGINT (a clean shutdown: the state is handed back), then wait."
    proc.send_signal(signal.SIGINT)
    try: proc.wait(timeout=60)
    except subprocess.TimeoutExpired: proc.kill()


KEEP_ALIVE_S = 4.0      # uvicorn closes a keep-alive connection idle for 5 s; a pooled one idle this long is replaced


class Connection:
    "One keep-alive HTTP/1.1 connection that sends a POST and reads the answer (status, body)."
    def __init__(self, reader, writer): self.reader, self.writer, self.used = reader, writer, time.monotonic()

    @classmethod
    async def open(cls, port: int):
        return cls(*await asyncio.open_connection('127.0.0.1', port))

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(b'POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n'
                          % (path.encode(), len(body)) + body)
        return await self._answer()

    async def get(self, path: str) -> tuple[int, bytes]:
        self.writer.write(b'GET %s HTTP/1.1\r\nHost: bench\r\n\r\n' % path.encode())
        return await self._answer()

    async def _answer(self) -> tuple[int, bytes]:
        head = await self.reader.readuntil(b'\r\n\r\n')
        status = int(head[9:12])
        length = next(int(line.split(b':')[1]) for line in head.split(b'\r\n') if line.lower().startswith(b'content-length'))
        body = await self.reader.readexactly(length)
        self.used = time.monotonic()
        return status, body

    def stale(self) -> bool: return time.monotonic() - self.used > KEEP_ALIVE_S

    def close(self): self.writer.close()


def percentile(sorted_values, q): return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


POOL = 8      # connections opened before the clock starts (more are opened only if this many are all busy)


async def open_loop(port: int, bodies: list[bytes], rate: float, max_outstanding: int) -> dict:
    """Send `bodies` at `rate` per second on a fixed schedule; latencies from the scheduled time; drops beyond the bound.
    Like a real client, it keeps a pool of open connections: a connection opened mid-run costs a connect, and its request
    can reach the service after a later one sent on an open connection (which the state then refuses as out of order)."""
    idle, latencies, statuses = [await Connection.open(port) for _ in range(POOL)], [], {}
    outstanding, dropped, tasks = 0, 0, []
    clock = time.perf_counter                  # uvloop's loop.time() has millisecond steps

    async def one(body, due):
        nonlocal outstanding
        while idle and idle[-1].stale(): idle.pop().close()      # the server may have closed it: never send on it
        conn = idle.pop() if idle else await Connection.open(port)
        status, _ = await conn.post('/score', body)
        latencies.append(clock() - due); statuses[status] = statuses.get(status, 0) + 1
        idle.append(conn); outstanding -= 1

    start = clock() + 0.05
    for i, body in enumerate(bodies):
        due = start + i / rate
        if (wait := due - clock()) > 0: await asyncio.sleep(wait)
        if outstanding >= max_outstanding: dropped += 1; continue
        outstanding += 1; tasks.append(asyncio.create_task(one(body, due)))
    await asyncio.gather(*tasks)
    elapsed = clock() - start
    for conn in idle: conn.close()
    ms = sorted(x * 1000 for x in latencies)
    return dict(rate=rate, sent=len(tasks), dropped=dropped, ok=statuses.get(200, 0),
                refused=sum(v for k, v in statuses.items() if k != 200), achieved_per_s=len(latencies) / elapsed,
                p50_ms=percentile(ms, .5), p90_ms=percentile(ms, .9), p99_ms=percentile(ms, .99), max_ms=ms[-1],
                connections=len(idle))


async def closed_loop(port: int, bodies: list[bytes], clients: int, rows_per_body: int) -> dict:
    "`clients` connections sending back to back, each taking the next body when free (so sends go out in time order)."
    conns = [await Connection.open(port) for _ in range(clients)]
    statuses, queue = {}, iter(bodies)

    async def client(conn):
        for body in queue:
            status, _ = await conn.post('/score', body); statuses[status] = statuses.get(status, 0) + 1

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in conns))
    elapsed = time.perf_counter() - start
    for c in conns: c.close()
    ok = statuses.get(200, 0)
    return dict(requests=len(bodies), ok=ok, refused=len(bodies) - ok, seconds=elapsed, requests_per_s=len(bodies) / elapsed,
                tx_per_s=ok * rows_per_body / elapsed)


def bodies_of(rows: list[dict], size: int = 1) -> list[bytes]:
    "JSON bodies: one transaction each (size 1, an object) or lists of `size`."
    if size == 1: return [json.dumps(r).encode() for r in rows]
    return [json.dumps(rows[i:i + size]).encode() for i in range(0, len(rows) - size + 1, size)]


BREAKDOWN_CALLS = 200   # single-row model calls timed per kind (back to back, after a pause)
FSYNC_CALLS = 2000  # fsync'd log lines timed (about 10-12 s)
PAUSE_S = 0.005    # the gap between requests at 200/s: on a shared VM a call after a pause can cost far more than back to back


def breakdown(run_dir: Path, rows: list[dict], folder: Path, n: int = BREAKDOWN_CALLS) -> list[dict]:
    "What one request costs apart from HTTP: the model's single-row call (back to back and after a pause), and one fsync'd log line on this disk."
    import statistics
    from fusion_nb.scoring import load_model
    model, out = load_model(run_dir), []
    def stats(what, seconds):
        ms = sorted(x * 1000 for x in seconds)
        return dict(what=what, calls=len(ms), p50_ms=percentile(ms, .5), p99_ms=percentile(ms, .99), max_ms=ms[-1], mean_ms=statistics.mean(ms))
    for pause in (0, PAUSE_S):    # back to back, and after the pause an open-loop client at 200/s leaves between requests
        times = []
        for row in rows[:n] if not pause else rows[n:2 * n]:     # what the service calls: a record in, arrays out
            time.sleep(pause)
            start = time.perf_counter(); model.score_arrays([row], update_state=True); times.append(time.perf_counter() - start)
        after = f', each after a {pause * 1000:g} ms pause' if pause else ''
        out.append(stats(f'model.score_arrays(1 record, update_state=True), in process{after}', times[10:]))
    folder.mkdir(parents=True, exist_ok=True)
    for sync, what in ((True, 'log line + fdatasync (what --log-sync batch waits for)'),
                       (False, 'log line alone (what --log-sync second and off wait for)')):
        out.append(stats(f'{what}, each after a {PAUSE_S * 1000:g} ms pause', log_line_times(folder, rows[:n], sync)))
    return out


def log_line_times(folder: Path, rows: list[dict], sync: bool) -> list[float]:
    "Seconds of FSYNC_CALLS log lines appended to a probe file in `folder`, each after PAUSE_S, with `fdatasync` or not."
    fd, times = os.open(folder / 'log_probe', os.O_WRONLY | os.O_CREAT | os.O_APPEND), []
    for i in range(FSYNC_CALLS):    # a rare slow sync stalls every request behind it: enough calls to see the tail
        time.sleep(PAUSE_S)
        start = time.perf_counter(); os.write(fd, json.dumps(rows[i % len(rows)]).encode() + b'\n')
        if sync: os.fdatasync(fd)
        times.append(time.perf_counter() - start)
    os.close(fd); os.unlink(folder / 'log_probe')
    return times


def use_uvloop():
    try:
        import uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError: pass


def add_args(ap):
    ap.add_argument('--run', default=None, help='a run folder with a model bundle (default: train one into the output folder)')
    ap.add_argument('--train-rows', type=int, default=20_000,
                    help='without --run: train the default encoders on this many simulated rows (--quick: the smoke run)')
    ap.add_argument('--rates', type=float, nargs='+', default=[50, 100, 200, 400], help='request rates of the latency table')
    ap.add_argument('--seconds', type=float, default=10, help='seconds of load per rate (--quick: 2)')
    ap.add_argument('--max-outstanding', type=int, default=64, help='requests in flight at most (the load bound)')
    ap.add_argument('--list-sizes', type=int, nargs='+', default=[10, 32, 100, 1000],
                    help='transactions per list request (a client that sends micro-batches)')
    ap.add_argument('--clients', type=int, default=32, help='concurrent single-transaction clients (micro-batching)')
    ap.add_argument('--variants', type=parse_variant, nargs='+', default=[parse_variant(v) for v in DEFAULT_VARIANTS],
                    metavar='MS[:SYNC][:pollN]', help="services to compare: --batch-wait-ms, :batch, :second or :off for "
                    f"--log-sync (default batch), :pollN for --busy-poll-ms N (default: {' '.join(DEFAULT_VARIANTS)})")
    ap.add_argument('--throughput-rows', type=int, default=20_000, help='transactions per throughput measurement (--quick: 2000)')
    ap.add_argument('--pin', action='store_true', help='run the service on the last core and this load generator on the others '
                    '(as with a client on another machine; default: both share every core)')


async def health_round_trips(port: int, n: int = 200) -> list[float]:
    "Seconds of `n` sequential GET /health round trips: the HTTP stack alone, no model and no disk."
    conn, times = await Connection.open(port), []
    for _ in range(n):
        start = time.perf_counter(); await conn.get('/health'); times.append(time.perf_counter() - start)
    conn.close()
    return times


DEFAULT_VARIANTS = ('0:batch', '1:batch', '0:second', '0:off', '0:batch:poll20', '0:second:poll20')
SYNC_MODES = tuple(LOG_SYNC_MODES)


def variant_name(wait: float, log_sync: str, poll: float = 0.0) -> str:
    return f"sync {log_sync}, wait {wait:g} ms{f', poll {poll:g} ms' if poll else ''}"


def parse_variant(text: str) -> tuple[float, str, float]:
    "'0' or '1.5' (log sync batch), '0:second' (or :off), '0:batch:poll20' (busy polling 20 ms) -> (batch wait ms, log sync, busy poll ms)."
    wait, *modes = text.split(':')
    try:
        polls = [float(m[4:]) for m in modes if m.startswith('poll')]
        syncs = [m for m in modes if m in SYNC_MODES]
        if len(polls) > 1 or len(syncs) > 1 or len(polls) + len(syncs) < len(modes): raise ValueError
        return float(wait), (syncs or ['batch'])[0], (polls or [0.0])[0]
    except ValueError: raise argparse.ArgumentTypeError(f'{text!r}: expected MS, MS:SYNC, MS:pollN or MS:SYNC:pollN '
                                                        f"(SYNC one of {', '.join(SYNC_MODES)})") from None


def latency_plot(rows: list[dict], out: Path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, variant in enumerate(dict.fromkeys(r['service'] for r in rows)):
        sel = [r for r in rows if r['service'] == variant]
        color = f'C{k}'
        ax.plot([r['rate'] for r in sel], [r['p50_ms'] for r in sel], 'o-', color=color, label=f'p50, {variant}')
        ax.plot([r['rate'] for r in sel], [r['p99_ms'] for r in sel], 's--', color=color, label=f'p99, {variant}')
    ax.axhline(10, color='grey', lw=0.8, ls=':'); ax.text(ax.get_xlim()[0], 10.3, 'target p99 10 ms', fontsize=8, color='grey')
    ax.set_xlabel('requests/s (one transaction each)'); ax.set_ylabel('latency, ms (scheduled send to answer)')
    ax.set_yscale('log'); ax.grid(alpha=.3); ax.legend(fontsize=7); ax.set_title('fusion-nb serve on loopback (open-loop load)')
    save_png(fig, out / 'serve_latency.png')


@contextlib.contextmanager
def no_gc_pauses():
    """No garbage collection in this (load generator) process while it measures. With torch, pandas and fusion_nb
    imported it holds ~400k objects, and a full collection that walks them took 200-250 ms: every request due in
    that time was sent late and counted late (the service's own log showed no such stall)."""
    gc.collect(); gc.freeze(); gc.disable()
    try: yield
    finally: gc.enable(); gc.unfreeze()


def measured(coroutine):
    "Run one measurement (`coroutine`, its inputs already built) with `no_gc_pauses`."
    with no_gc_pauses(): return asyncio.run(coroutine)


def measure_service(args, run_dir: Path, out: Path, variant: tuple, take, seconds: float, n_tp: int):
    "Latency rows, throughput rows and /health round trips against one service process."
    (wait, log_sync, poll), name, latency, throughput = variant, variant_name(*variant), [], []
    proc, port = start_service(run_dir, out / f"state_{name.replace(' ', '_').replace(',', '')}", wait, args.threads, log_sync,
                               busy_poll_ms=poll, cpus=args.service_cpus)
    try:
        for rate in args.rates:
            r = measured(open_loop(port, bodies_of(take(int(rate * seconds))), rate, args.max_outstanding))
            latency.append(dict(service=name, **r)); print(latency[-1], flush=True)
        r = measured(closed_loop(port, bodies_of(take(n_tp)), args.clients, 1))
        throughput.append(dict(kind=f'{args.clients} clients x single', service=name, **r)); print(throughput[-1], flush=True)
        for size in args.list_sizes:
            r = measured(closed_loop(port, bodies_of(take(n_tp), size), 1, size))
            throughput.append(dict(kind=f'lists of {size}', service=name, **r)); print(throughput[-1], flush=True)
        health = measured(health_round_trips(port))
    finally: stop_service(proc)
    return latency, throughput, health


def served_copy(run_dir: Path, out: Path) -> Path:
    """A copy of the run to serve: the run's files and its bundle `model/` (not its other folders), in `out`.

    The service hands its state back on a clean shutdown (RUN_DIR/model/state.npz), so serving the run itself would
    change the run being measured; each variant serves this copy in turn (its rows continue where the last stopped)."""
    dst = out / 'served_run'
    if dst.exists(): shutil.rmtree(dst)
    shutil.copytree(run_dir, dst, ignore=lambda folder, names: [n for n in names if Path(folder) == run_dir
                                                                and (run_dir / n).is_dir() and n != 'model'])
    return dst


def pin_cores(args) -> str:
    "With --pin: the service's core set in `args.service_cpus` and this process on the rest; a note for the tables."
    cores = sorted(os.sched_getaffinity(0))
    args.service_cpus = None
    if not args.pin: return f'service and load generator share this {os.cpu_count()}-core machine (and anything else running on it)'
    if len(cores) < 2: raise SystemExit('--pin needs at least 2 cores (one for the service, one for the load generator)')
    args.service_cpus = {cores[-1]}
    os.sched_setaffinity(0, set(cores[:-1]))
    return f'service pinned to core {cores[-1]}, load generator to cores {cores[:-1]} (anything else may use any core)'


def run(args, out: Path):
    use_uvloop()
    placement = pin_cores(args)
    seconds = 2 if args.quick and args.seconds == 10 else args.seconds
    n_tp = 2000 if args.quick and args.throughput_rows == 20_000 else args.throughput_rows
    measured = Path(args.run) if args.run else tiny_run(out / 'run', *((3000, True) if args.quick else (args.train_rows, False)))
    run_dir = served_copy(measured, out)          # the service writes its state on shutdown: never into the run itself
    need = (int(sum(args.rates) * seconds) + (len(args.list_sizes) + 1) * n_tp) * len(args.variants) + 2 * BREAKDOWN_CALLS
    rows = later_rows(run_dir, need + 1000)       # in time order: each request must come after the last
    cursor, latency, throughput, health = 0, [], [], []
    def take(n):
        nonlocal cursor
        cursor += n; return rows[cursor - n:cursor]
    for variant in args.variants:
        lat, tp, trips = measure_service(args, run_dir, out, variant, take, seconds, n_tp)
        latency += lat; throughput += tp; health += trips
    notes = [f'run: {measured} (served from a copy, {run_dir}); {seconds:g} s per rate; at most {args.max_outstanding} in flight; {placement}; '
             f'torch threads in the service: {args.threads}',
             'target: p99 <= 10 ms at 200 requests/s']
    report('serve latency: single-transaction requests, open loop', latency,
           ['service', 'rate', 'sent', 'dropped', 'ok', 'refused', 'achieved_per_s', 'p50_ms', 'p90_ms', 'p99_ms', 'max_ms'],
           notes, out, 'serve_latency')
    report('serve throughput: back-to-back requests', throughput,
           ['kind', 'service', 'requests', 'ok', 'refused', 'seconds', 'requests_per_s', 'tx_per_s'],
           ['target: >= 5,000 transactions/s micro-batched'], out, 'serve_throughput')
    parts = breakdown(run_dir, take(2 * BREAKDOWN_CALLS), out / 'probe')
    ms = sorted(x * 1000 for x in health)
    parts.append(dict(what='GET /health round trip (the HTTP stack alone)', calls=len(ms), p50_ms=percentile(ms, .5),
                      p99_ms=percentile(ms, .99), max_ms=ms[-1], mean_ms=sum(ms) / len(ms)))
    report('where a single-transaction request spends its time', parts, ['what', 'calls', 'p50_ms', 'p99_ms', 'max_ms', 'mean_ms'], [],
           out, 'serve_breakdown')
    latency_plot(latency, out)


if __name__ == '__main__':
    script_main(__doc__, 'serve_latency', add_args, run)
