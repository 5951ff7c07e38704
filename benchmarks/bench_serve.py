"""Load test of ``metis serve``: N concurrent clients on loopback, batched vs unbatched.

    python benchmarks/bench_serve.py                          # small model, 8 clients, 32 requests per mode
    python benchmarks/bench_serve.py --clients 4 --requests 16 --time-limit 60 --modes batched

For each mode the script starts its own server (``--max-batch 8`` batched, ``--max-batch 1``
unbatched) on a free 127.0.0.1 port, warms it up with one request, then ``--clients`` threads
send ``POST /v1/audio/speech`` (short sentences, the built-in voice) until ``--requests``
replies have come or ``--time-limit`` seconds have passed, whichever is first. It prints
requests/s, audio seconds per second, p50/p95 latency, errors (anything but 200), the
server's resident memory before and after the load (VmRSS), and the mean batch size from
``/metrics``. Traffic goes to loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
import tempfile

REPO = Path(__file__).resolve().parents[1]
SENTENCES = [
    "The harbour was calm when the fishing boats came back.",
    "She folded the letter twice and put it away.",
    "A cold wind blew across the field this morning.",
    "Please remember to water the plants on Friday.",
    "He found the missing key under the newspapers.",
    "We walked along the river until the sun went down.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def run_mode(args, max_batch: int, data: Path) -> dict:
    import httpx

    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "metis_speech", "serve", "--port", str(port), "--model", args.model, "--tasks", "tts",
           "--data-dir", str(data), "--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms),
           "--max-queue", "256", "--steps", str(args.steps), "--s2a-steps", args.s2a_steps, "--threads", str(args.threads)]
    log = open(data / f"server-{max_batch}.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=args.time_limit + 120)
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited: {Path(log.name).read_text()[-2000:]}")
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start within 300 s")
            time.sleep(0.5)
        body = {"model": "metis", "voice": "default", "response_format": "wav"}
        r = client.post("/v1/audio/speech", json=dict(body, input=SENTENCES[0]))  # warm-up
        if r.status_code != 200:
            raise SystemExit(f"warm-up failed: {r.status_code} {r.text[:300]}")
        before_rss = rss_mb(proc.pid)
        before = client.get("/metrics").text
        lock = threading.Lock()
        latencies, errors, audio_s = [], [], [0.0]
        sent = [0]
        stop_at = time.monotonic() + args.time_limit

        def worker(k: int):
            while True:
                with lock:
                    if sent[0] >= args.requests or time.monotonic() > stop_at:
                        return
                    n = sent[0]
                    sent[0] += 1
                t0 = time.perf_counter()
                try:
                    reply = client.post("/v1/audio/speech", json=dict(body, input=SENTENCES[n % len(SENTENCES)], seed=n))
                    ok = reply.status_code == 200
                    err = None if ok else f"{reply.status_code} {reply.text[:120]}"
                except httpx.HTTPError as e:
                    ok, err = False, f"{type(e).__name__}: {e}"
                dt = time.perf_counter() - t0
                with lock:
                    if ok:
                        latencies.append(dt)
                        audio_s[0] += float(reply.headers.get("x-audio-duration", 0))
                    else:
                        errors.append(err)

        t_start = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t_start
        after = client.get("/metrics").text
        after_rss = rss_mb(proc.pid)
        batches = metric(after, 'metis_batch_size_count{task="tts"}') - metric(before, 'metis_batch_size_count{task="tts"}')
        items = metric(after, 'metis_batch_size_sum{task="tts"}') - metric(before, 'metis_batch_size_sum{task="tts"}')
        lat = sorted(latencies)
        pct = lambda q: lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))] if lat else float("nan")  # noqa: E731
        return {"mode": "batched" if max_batch > 1 else "unbatched", "max_batch": max_batch, "done": len(lat),
                "errors": len(errors), "first_error": errors[0] if errors else "", "wall_s": wall,
                "rps": len(lat) / wall, "audio_per_s": audio_s[0] / wall, "p50": pct(0.5), "p95": pct(0.95),
                "rss_before": before_rss, "rss_after": after_rss, "mean_batch": items / batches if batches else float("nan")}
    finally:
        client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="small")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=32, help="replies per mode (bounded)")
    p.add_argument("--time-limit", type=float, default=180.0, help="seconds of load per mode at most")
    p.add_argument("--modes", default="batched,unbatched")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-wait-ms", type=float, default=20.0)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--s2a-steps", default="4,2")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if not (1 <= args.clients <= 64 and 1 <= args.requests <= 10000 and 0 < args.time_limit <= 3600):
        p.error("--clients 1..64, --requests 1..10000, --time-limit up to 3600 s")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        for mode in args.modes.split(","):
            max_batch = args.max_batch if mode == "batched" else 1
            d = Path(tmp) / mode
            d.mkdir()
            rows.append(run_mode(args, max_batch, d))
            print(f"{mode}: done", file=sys.stderr)
    print(f"model {args.model}, {args.clients} clients, up to {args.requests} requests / {args.time_limit:.0f} s per mode, "
          f"steps {args.steps}, s2a {args.s2a_steps}, {args.threads} torch threads, {os.cpu_count()} cores")
    print(f"{'mode':10} {'max_batch':>9} {'done':>5} {'errors':>6} {'req/s':>6} {'audio s/s':>9} {'p50 s':>6} {'p95 s':>6} "
          f"{'mean batch':>10} {'RSS before MB':>13} {'RSS after MB':>12}")
    for r in rows:
        print(f"{r['mode']:10} {r['max_batch']:>9} {r['done']:>5} {r['errors']:>6} {r['rps']:>6.2f} {r['audio_per_s']:>9.2f} "
              f"{r['p50']:>6.2f} {r['p95']:>6.2f} {r['mean_batch']:>10.2f} {r['rss_before']:>13.0f} {r['rss_after']:>12.0f}")
        if r["errors"]:
            print(f"  first error: {r['first_error']}")
    if len(rows) == 2 and rows[1]["rps"] > 0:
        print(f"batched / unbatched throughput: {rows[0]['rps'] / rows[1]['rps']:.2f}x")
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
