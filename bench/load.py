"""Load test of `fastsam serve` on loopback: concurrent clients mixing uploads and prompts, for a bounded time.

Starts the server in a subprocess (random-weight weights unless --model is given), runs N client threads for
--seconds, and reports requests/s, p50/p95 latency per kind, errors by status (only 503 is acceptable under
overload) and the server's resident memory before and after. Prints a markdown table and writes JSON to
bench/results/load.json.

    python bench/load.py [--clients 8] [--seconds 30] [--imgsz 512] [--model PATH] [--max-queue 4]

With ``--engine ray --replicas N`` the server is ``fastsam serve --engine ray`` (Ray Serve replicas sharing a
``redis-server`` this script starts on a free port, unless ``--cache URL`` names one); ``--kill-replica-at S`` kills
one replica process (SIGKILL) S seconds into the run: only 200/201/503 may come back, and the service must still
serve at the end. The JSON then goes to bench/results/load_ray_<N>replicas.json (``--out`` to change it).

    python bench/load.py --engine ray --replicas 2 [--kill-replica-at 10]
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


def tree_rss_mb(pid: int, match: str = "") -> float:
    """Resident memory of ``pid``'s descendants whose command line contains ``match`` (all of them when empty)."""
    import psutil

    total = 0
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if match in " ".join(child.cmdline()):
                total += child.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def replica_pids(pid: int) -> list[int]:
    """The Ray Serve model replicas started by the server process ``pid`` (its descendants)."""
    import psutil

    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if "FastSAMReplica" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.Error:
            pass
    return found


def start_redis() -> tuple[subprocess.Popen, str]:
    """A redis-server without persistence on a free loopback port."""
    import shutil

    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("--engine ray needs redis-server (apt-get install redis-server) or --cache redis://...")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(0.5)
    return proc, f"redis://127.0.0.1:{port}/0"


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
    parser.add_argument("--engine", choices=("local", "ray"), default="local")
    parser.add_argument("--replicas", type=int, default=1, help="with --engine ray")
    parser.add_argument("--cache", default=None, help="with --engine ray: a Redis URL (default: a redis-server "
                        "started here)")  # fmt: skip
    parser.add_argument("--kill-replica-at", type=float, default=None, metavar="S",
                        help="with --engine ray: SIGKILL one replica S seconds into the run")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    ray = args.engine == "ray"

    photos = sorted((SHARED / "data" / "images").rglob("*.jpg"))
    if not photos:
        sys.exit(f"no photos under {SHARED}/data/images (set FASTSAM_SHARED)")
    blobs = [p.read_bytes() for p in photos]
    tmp = Path(tempfile.mkdtemp())
    model = args.model or str(random_weights(tmp))
    port = free_port()
    command = [sys.executable, "-m", "fastsam.cli.main", "serve", "--model", model, "--device", "cpu", "--port",
               str(port), "--max-queue", str(args.max_queue)]  # fmt: skip
    redis_server = None
    if ray:
        if args.cache is None:
            redis_server, args.cache = start_redis()
        command += ["--engine", "ray", "--replicas", str(args.replicas), "--cache", args.cache]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    memory = (lambda: tree_rss_mb(server.pid, "ServeReplica")) if ray else (lambda: rss_mb(server.pid))
    killed: list[int] = []
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).json().get("ready"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        if server.poll() is not None:
            sys.exit(f"the server exited with code {server.returncode} before it was ready")
        rss_before = memory()
        latencies: dict[str, list[float]] = defaultdict(list)
        statuses: dict[str, int] = defaultdict(int)
        retried: dict[str, int] = defaultdict(int)
        answered_by: dict[str, int] = defaultdict(int)
        lock = threading.Lock()
        stop_at = time.monotonic() + args.seconds

        def record(kind: str, start: float, status: int, headers: httpx.Headers | None = None) -> None:
            with lock:
                latencies[kind].append((time.perf_counter() - start) * 1000)
                statuses[f"{kind} {status}"] += 1
                if headers is not None and "x-fastsam-retries" in headers:
                    retried[f"{kind} {status}"] += 1
                if headers is not None and "x-fastsam-replica" in headers:
                    answered_by[headers["x-fastsam-replica"]] += 1

        def client(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=base, timeout=120) as http:
                while time.monotonic() < stop_at:
                    start = time.perf_counter()
                    r = http.post(f"/api/v1/images?imgsz={args.imgsz}", content=rng.choice(blobs))
                    record("upload", start, r.status_code, r.headers)
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
                        record("prompt", start, p.status_code, p.headers)

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        if ray and args.kill_replica_at is not None:
            time.sleep(args.kill_replica_at)
            victims = replica_pids(server.pid)[:1]
            for pid in victims:
                os.kill(pid, 9)
                killed.append(pid)
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        rss_after = memory()
        alive = server.poll() is None and httpx.get(f"{base}/api/v1/health", timeout=60).status_code == 200
    finally:
        server.terminate()
        try:
            server.wait(120)
        except subprocess.TimeoutExpired:
            server.kill()
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait(10)

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
    engine = f"ray, {args.replicas} replica(s), Redis store" if ray else "local"
    print(f"{args.clients} clients, {elapsed:.0f} s, imgsz {args.imgsz}, max queue {args.max_queue}, engine {engine}\n")
    print("| kind | requests | p50 ms | p95 ms |\n|---|---|---|---|")
    for kind, row in rows.items():
        print(f"| {kind} | {row['count']} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} |")
    print(f"\nthroughput {total / elapsed:.1f} requests/s; statuses {dict(statuses)}; unexpected {bad or 'none'}")
    print(f"server RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after; still serving: {alive}")
    if ray:
        print(f"answers by replica {dict(answered_by)}; killed replica pids {killed or 'none'}; "
              f"answers after a retry {dict(retried) or 'none'}")  # fmt: skip
    default_name = f"load_ray_{args.replicas}replicas.json" if ray else "load.json"
    out = args.out or ROOT / "bench" / "results" / default_name
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "command": " ".join(["python", *sys.argv]), "machine": platform.platform(), "cpus": os.cpu_count(),
        "clients": args.clients, "seconds": elapsed, "imgsz": args.imgsz, "requests_per_s": total / elapsed,
        "latency": rows, "statuses": dict(statuses), "unexpected_statuses": bad,
        "rss_mb_before": rss_before, "rss_mb_after": rss_after, "still_serving": alive,
        **({"engine": "ray", "replicas": args.replicas, "store": "redis", "answers_by_replica": dict(answered_by),
            "killed_replica_pids": killed, "kill_replica_at_s": args.kill_replica_at,
            "answers_after_retry": dict(retried), "rss": "sum over the replica processes"} if ray else {}),
    }, indent=2))  # fmt: skip
    if bad or not alive:
        sys.exit(1)


if __name__ == "__main__":
    main()
