"""Load test of `fastsam serve` on loopback: concurrent clients mixing uploads and prompts, for a bounded time.

Starts the server in a subprocess (random-weight weights unless --model is given), runs N client threads for
--seconds, and reports requests/s, p50/p95 latency per kind, errors by status (only 503 is acceptable under
overload) and the server's resident memory before and after. Prints a markdown table and writes JSON to
bench/results/load.json.

    python bench/load.py [--clients 8] [--seconds 30] [--imgsz 512] [--model PATH] [--max-queue 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FASTSAM_SHARED", ROOT.parent / "shared"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def random_weights(directory: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from model_factory import save_random_weights

    return save_random_weights(directory / "random-s.safetensors", "s", 16, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--imgsz", type=int, default=512)
    parser.add_argument("--model", default=None, help="weights (default: random FastSAM-s-shaped weights)")
    parser.add_argument("--max-queue", type=int, default=4)
    parser.add_argument("--prompts-per-upload", type=int, default=5)
    args = parser.parse_args()

    photos = sorted((SHARED / "data" / "images").rglob("*.jpg"))
    if not photos:
        sys.exit(f"no photos under {SHARED}/data/images (set FASTSAM_SHARED)")
    blobs = [p.read_bytes() for p in photos]
    tmp = Path(tempfile.mkdtemp())
    model = args.model or str(random_weights(tmp))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "fastsam.cli.main", "serve", "--model", model, "--device", "cpu", "--port", str(port),
         "--max-queue", str(args.max_queue)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).json().get("ready"):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        rss_before = rss_mb(server.pid)
        latencies: dict[str, list[float]] = defaultdict(list)
        statuses: dict[str, int] = defaultdict(int)
        lock = threading.Lock()
        stop_at = time.monotonic() + args.seconds

        def record(kind: str, start: float, status: int) -> None:
            with lock:
                latencies[kind].append((time.perf_counter() - start) * 1000)
                statuses[f"{kind} {status}"] += 1

        def client(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=base, timeout=120) as http:
                while time.monotonic() < stop_at:
                    start = time.perf_counter()
                    r = http.post(f"/api/v1/images?imgsz={args.imgsz}", content=rng.choice(blobs))
                    record("upload", start, r.status_code)
                    if r.status_code != 201:
                        time.sleep(float(r.headers.get("retry-after", "1")) * rng.random())
                        continue
                    body = r.json()
                    w, h = body["width"], body["height"]
                    for _ in range(args.prompts_per_upload):
                        if time.monotonic() >= stop_at:
                            break
                        x, y = rng.randrange(w), rng.randrange(h)
                        prompt = rng.choice([
                            {"points": [[x, y]], "labels": [1]},
                            {"points": [[x, y], [rng.randrange(w), rng.randrange(h)]], "labels": [1, 0]},
                            {"boxes": [[x // 2, y // 2, x // 2 + w // 3, y // 2 + h // 3]]},
                        ])  # fmt: skip
                        start = time.perf_counter()
                        p = http.post(f"/api/v1/images/{body['image_id']}/prompt", json=prompt)
                        record("prompt", start, p.status_code)

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        rss_after = rss_mb(server.pid)
        alive = server.poll() is None and httpx.get(f"{base}/api/v1/health").status_code == 200
    finally:
        server.terminate()
        server.wait(30)

    total = sum(len(v) for v in latencies.values())
    bad = {k: v for k, v in statuses.items() if not k.endswith((" 200", " 201", " 503"))}
    rows = {}
    for kind, values in latencies.items():
        values = sorted(values)
        rows[kind] = {
            "count": len(values),
            "p50_ms": statistics.median(values),
            "p95_ms": values[min(len(values) - 1, int(0.95 * len(values)))],
        }
    print(f"{args.clients} clients, {elapsed:.0f} s, imgsz {args.imgsz}, max queue {args.max_queue}\n")
    print("| kind | requests | p50 ms | p95 ms |\n|---|---|---|---|")
    for kind, row in rows.items():
        print(f"| {kind} | {row['count']} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} |")
    print(f"\nthroughput {total / elapsed:.1f} requests/s; statuses {dict(statuses)}; unexpected {bad or 'none'}")
    print(f"server RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after; still serving: {alive}")
    out = ROOT / "bench" / "results" / "load.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "command": " ".join(["python", *sys.argv]), "machine": platform.platform(), "cpus": os.cpu_count(),
        "clients": args.clients, "seconds": elapsed, "imgsz": args.imgsz, "requests_per_s": total / elapsed,
        "latency": rows, "statuses": dict(statuses), "unexpected_statuses": bad,
        "rss_mb_before": rss_before, "rss_mb_after": rss_after, "still_serving": alive,
    }, indent=2))  # fmt: skip
    if bad or not alive:
        sys.exit(1)


if __name__ == "__main__":
    main()
