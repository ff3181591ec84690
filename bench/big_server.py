"""Big photos in the HTTP server (issue 18, part 2): one 36 MP upload, prompts on it, and concurrent uploads under
a memory budget.

``fastsam serve`` runs as a subprocess (the random-weight FastSAM-s checkpoint of ``vs_ultralytics.py``, fp32, CPU;
with ``--networks s,reference`` also the trained reference network of ``train_reference.py`` at conf 0.05) and is
driven over loopback with urllib. The photo is ``big_images.py``'s 6000 x 6000 JPEG (an SA-1B photo scaled up).
The server's peak memory is its ``VmHWM`` (the kernel's high-water mark of its RSS) and, as a cross-check, RSS
sampled every 20 ms with psutil.

* ``one``: a server with the default budget; upload the photo (time, status, masks), its peak RSS, what the cache
  holds, the mask listing's size with and without gzip (and the time to fetch each), then point prompts on the
  cached image: the first one right after the upload, then the median and p95 of 20 (one point each, client wall
  time over loopback), and 5 box prompts.
* ``concurrent``: a server started with ``--memory-mb B`` for each of ``--budgets``; four clients upload the photo
  at the same moment: each status (201, or 503 with its message), whether the server is still alive, and its peak
  RSS against the budget.

    python bench/big_server.py                                  # both sections, FastSAM-s (about 2 minutes)
    python bench/big_server.py --networks s,reference --budgets 6000,2500,1700

Writes bench/results/big_server.json (or --output NAME) and prints markdown tables last.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import vs_ultralytics as vu
from big_images import photo

ROOT = BENCH.parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sections", default="one,concurrent")
    p.add_argument("--networks", default="s", help="networks of the 'one' section: s, reference (default: %(default)s)")
    p.add_argument("--budgets", default="6000,2500,1700", help="--memory-mb values of the 'concurrent' section (MB)")
    p.add_argument("--clients", type=int, default=4, help="concurrent uploads (default: %(default)s)")
    p.add_argument("--megapixels", type=int, default=36, choices=(9, 36, 100))
    p.add_argument("--imgsz", type=int, default=1024)
    p.add_argument("--prompts", type=int, default=20, help="point prompts timed (default: %(default)s)")
    p.add_argument("--reference-conf", type=float, default=0.05)
    p.add_argument("--output", default="big_server")
    return p.parse_args()


# ------------------------------------------------------------------------------------------------------------ server
class Server:
    """``fastsam serve`` in a subprocess on a free loopback port, with an RSS sampler."""

    def __init__(self, weights: Path, extra: list[str], log: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "fastsam.cli.main", "serve", "--model", str(weights), "--device", "cpu",
                "--precision", "fp32", "--port", str(self.port), *extra]  # fmt: skip
        self.log = log.open("w")
        env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.samples: list[float] = []
        self._stop = threading.Event()
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fastsam serve exited ({self.proc.returncode}); see {log}")
            try:
                with urllib.request.urlopen(f"{self.base}/api/v1/health", timeout=2) as r:
                    if json.load(r).get("ready"):
                        break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"fastsam serve did not start within 180 s; see {log}")
            time.sleep(0.2)
        self.resting_mb = self.status_mb("VmRSS")
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def status_mb(self, key: str) -> float:
        """``VmRSS`` or ``VmHWM`` of the server process, MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(key)

    def _sample(self) -> None:
        import psutil

        process = psutil.Process(self.proc.pid)
        while not self._stop.is_set():
            try:
                self.samples.append(process.memory_info().rss / 2**20)
            except psutil.Error:
                return
            time.sleep(0.02)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> dict:
        """Peak memory (VmHWM, and the sampled maximum) and how the process ended (SIGTERM: graceful)."""
        peak = {"peak_mb": self.status_mb("VmHWM") if self.alive else None,
                "sampled_peak_mb": max(self.samples, default=0.0), "resting_mb": self.resting_mb,
                "alive_at_end": self.alive}  # fmt: skip
        self._stop.set()
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        peak["returncode"] = self.proc.returncode
        self.log.close()
        return peak


def call(base: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> dict:
    """One request: status, headers (lower-case names), the body as sent (not decompressed) and the client's wall
    time."""
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=600) as r:
            status, head, data = r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as err:
        status, head, data = err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()
    return {"status": status, "headers": head, "body": data, "seconds": time.perf_counter() - start}


def upload(base: str, data: bytes, a: argparse.Namespace, conf: float) -> dict:
    return call(base, "POST", f"/api/v1/images?imgsz={a.imgsz}&conf={conf}", data,
                {"Content-Type": "image/jpeg", "Accept-Encoding": "identity"})  # fmt: skip


def prompt(base: str, image_id: str, body: dict) -> dict:
    return call(base, "POST", f"/api/v1/images/{image_id}/prompt", json.dumps(body).encode(),
                {"Content-Type": "application/json"})  # fmt: skip


# ---------------------------------------------------------------------------------------------------------- sections
def section_one(a: argparse.Namespace, image: Path, work: Path) -> list[dict]:
    import numpy as np

    data = image.read_bytes()
    rows = []
    for network in a.networks.split(","):
        weights, conf = vu.bench_network(network, a.reference_conf)
        if weights is None:
            continue
        server = Server(weights, [], work / f"one_{network}.log")
        try:
            up = upload(server.base, data, a, conf)
            if up["status"] != 201:
                raise RuntimeError(f"upload answered {up['status']}: {up['body'][:300]!r}")
            answer = json.loads(up["body"])
            after_upload_mb = server.status_mb("VmHWM")
            image_id, masks = answer["image_id"], answer["masks"]
            boxes = np.array([m["bbox"] for m in masks])
            rng = np.random.default_rng(0)
            inside = [[int((b[0] + b[2]) / 2), int((b[1] + b[3]) / 2)] for b in boxes[rng.permutation(len(boxes))]]
            first = prompt(server.base, image_id, {"points": [inside[0]]})
            timed = [prompt(server.base, image_id, {"points": [p]}) for p in (inside * 2)[1 : a.prompts + 1]]
            size = np.array([answer["width"], answer["height"]])
            corner = rng.uniform(0, 0.8, (5, 2)) * size
            box_calls = [prompt(server.base, image_id, {"boxes": [[*c, *(c + rng.uniform(0.03, 0.2, 2) * size)]]})
                         for c in corner.tolist()]  # fmt: skip
            health = json.loads(call(server.base, "GET", "/api/v1/health")["body"])
            gz = call(server.base, "GET", f"/api/v1/images/{image_id}", headers={"Accept-Encoding": "gzip"})
            plain = call(server.base, "GET", f"/api/v1/images/{image_id}", headers={"Accept-Encoding": "identity"})
            peak = server.stop()
        finally:
            if server.alive:
                server.stop()
        latencies = [c["seconds"] * 1000 for c in timed]
        row = {
            "network": network, "weights": weights.name, "conf": conf, "image": image.name,
            "size": [answer["height"], answer["width"]], "upload_bytes": len(data), "masks": len(masks),
            "upload_status": up["status"], "upload_seconds": up["seconds"], "server_elapsed_ms": answer["elapsed_ms"],
            "resting_mb": peak["resting_mb"], "peak_mb_after_upload": after_upload_mb, "peak_mb": peak["peak_mb"],
            "sampled_peak_mb": peak["sampled_peak_mb"], "cache_bytes": health["cache_bytes"],
            "cached_images": health["cached_images"],
            "answer_bytes": len(plain["body"]), "answer_gzip_bytes": len(gz["body"]),
            "answer_gzip_encoding": gz["headers"].get("content-encoding"),
            "listing_seconds": plain["seconds"], "listing_gzip_seconds": gz["seconds"],
            "first_prompt_ms": first["seconds"] * 1000, "first_prompt_status": first["status"],
            "prompt_statuses": sorted({c["status"] for c in timed}),
            "prompt_ms_median": statistics.median(latencies), "prompt_ms_p95": float(np.percentile(latencies, 95)),
            "prompt_hits": sum(json.loads(c["body"])["masks"][0]["index"] >= 0 for c in timed if c["status"] == 200),
            "box_prompt_ms_median": statistics.median(c["seconds"] * 1000 for c in box_calls),
            "box_statuses": sorted({c["status"] for c in box_calls}),
        }  # fmt: skip
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return rows


def section_concurrent(a: argparse.Namespace, image: Path, work: Path) -> list[dict]:
    data = image.read_bytes()
    weights = vu.ensure_checkpoint("s")
    rows = []
    for budget in (int(v) for v in a.budgets.split(",")):
        server = Server(weights, ["--memory-mb", str(budget)], work / f"concurrent_{budget}.log")
        results: list[dict | None] = [None] * a.clients
        barrier = threading.Barrier(a.clients)

        def client(k: int, base: str, barrier: threading.Barrier, results: list) -> None:
            barrier.wait()
            results[k] = upload(base, data, a, 0.4)

        try:
            threads = [threading.Thread(target=client, args=(k, server.base, barrier, results))
                       for k in range(a.clients)]  # fmt: skip
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
            health = call(server.base, "GET", "/api/v1/health") if server.alive else {"status": None}
            peak = server.stop()
        finally:
            if server.alive:
                server.stop()
        answers = []
        for r in results:
            body = json.loads(r["body"]) if r["body"][:1] == b"{" else {}
            answers.append({"status": r["status"], "seconds": round(r["seconds"], 2),
                            "retry_after": r["headers"].get("retry-after"), "error": body.get("error")})  # fmt: skip
        row = {"memory_mb": budget, "clients": a.clients, "wall_seconds": wall, "answers": answers,
               "statuses": [x["status"] for x in answers], "health_after": health["status"], **peak,
               "under_budget": peak["peak_mb"] is not None and peak["peak_mb"] < budget}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return rows


def main() -> None:
    a = parse_args()
    sections = a.sections.split(",")
    image = photo(a.megapixels, vu.CACHE / "big")
    payload = {"command": vu.command_line(), "machine": vu.machine_info(os.cpu_count() or 1),
               "versions": vu.package_versions("torch", "numpy", "pillow", "fastapi", "starlette", "uvicorn"),
               "git": vu.git_state(), "image": image.name, "imgsz": a.imgsz}  # fmt: skip
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fastsam-big-server-") as tmp:
        work = Path(tmp)
        try:
            if "one" in sections:
                payload["one"] = section_one(a, image, work)
            if "concurrent" in sections:
                payload["concurrent"] = section_concurrent(a, image, work)
        except Exception:
            for log in sorted(work.glob("*.log")):
                print(f"--- {log.name}\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise
    path = vu.write_json(a.output, payload)
    print(f"wrote {path}", file=sys.stderr)
    print_tables(payload)


def print_tables(payload: dict) -> None:
    for r in payload.get("one", []):
        print(f"\n{r['network']} ({r['weights']}, conf {r['conf']}), {r['size'][1]} x {r['size'][0]}, "
              f"{r['masks']} masks")
        print("| upload | server peak RSS (at rest) | cache holds | answer (gzip) | first prompt | point prompt median "
              "(p95) | box prompt median |\n|---|---|---|---|---|---|---|")  # fmt: skip
        print(f"| {r['upload_seconds']:.1f} s | {r['peak_mb']:,.0f} MB ({r['resting_mb']:,.0f} MB) | "
              f"{r['cache_bytes'] / 2**20:.0f} MB | {r['answer_bytes'] / 2**20:.1f} MB "
              f"({r['answer_gzip_bytes'] / 2**20:.1f} MB) | "
              f"{r['first_prompt_ms']:.0f} ms | {r['prompt_ms_median']:.0f} ms ({r['prompt_ms_p95']:.0f} ms) | "
              f"{r['box_prompt_ms_median']:.0f} ms |")  # fmt: skip
    rows = payload.get("concurrent", [])
    if rows:
        print("\n| --memory-mb | uploads at once | answers | server peak RSS | alive |\n|---|---|---|---|---|")
        for r in rows:
            statuses = ", ".join(str(s) for s in r["statuses"])
            print(f"| {r['memory_mb']} | {r['clients']} | {statuses} | {r['peak_mb']:,.0f} MB | {r['alive_at_end']} |")


if __name__ == "__main__":
    main()
