"""Load on the REST server (``python -m pyserini_hypencoder.server.rest``) against the bare searcher, in one run.

    python benchmarks/bench_server.py --index indexes/scifact [--encoder default] [--topics FILE] [--threads 2]
        [--concurrency 1,8,32,64] [--requests 400] [--seconds 20] [--batch-size 32] [--batch-wait-ms 2]
        [--memory-seconds 300] [--json OUT.json]

1. The bare searcher (this process, the same index, model and thread count): the best single query (each query
   ``search``\\ ed alone, best of 3 repeats) and ``batch_search`` of ``--batch-size`` queries (best of 3).
2. The server as a child process on 127.0.0.1 (a free port), driven by an asyncio load generator: ``c`` clients
   on keep-alive connections, each sending the next topic as soon as its last answer came, at concurrency 1, 8,
   32 and 64, each level bounded by ``--requests`` and ``--seconds``: requests per second, p50/p95/p99 latency,
   errors, the mean batch the server formed.  The load generator shares the machine's cores with the server.
3. Answers against the bare searcher: every topic asked at concurrency 32 (so in batches) compared with
   ``search`` alone (docids and float scores).
4. ``--memory-seconds S``: concurrency 32 for S seconds, the server's resident memory sampled each second.

It prints the issue's goals as ratios: c=32 throughput / batch_search throughput (goal >= 0.8), c=1 median latency
against the best single query (goal <= 1.2 x + 2 ms), c=32 p99 / (2 x 32 / throughput) (goal <= 1), errors.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_TOPICS = ROOT.parent / "shared" / "data" / "scifact" / "topics.test.tsv"
NAME = "bench"


# -- the bare searcher ---------------------------------------------------------------------------------------
def bare(args, queries):
    import torch
    from pyserini_hypencoder.encoders import HypencoderQueryEncoder
    from pyserini_hypencoder.search import HypencoderSearcher
    torch.set_num_threads(args.threads)
    searcher = HypencoderSearcher(args.index, HypencoderQueryEncoder(args.encoder))
    for q in queries[:4]:
        searcher.search(q, k=args.hits)
    batch = queries[:args.batch_size]
    qids = [str(i) for i in range(len(batch))]
    best_batch = min(_timed(lambda: searcher.batch_search(batch, qids, k=args.hits)) for _ in range(3))
    singles = [min(_timed(lambda: searcher.search(q, k=args.hits)) for _ in range(3)) for q in batch]
    answers = {q: [(h.docid, h.score) for h in searcher.search(q, k=args.hits)] for q in queries[:args.check]}
    return {"batch_ms_per_query": 1000 * best_batch / len(batch), "batch_qps": len(batch) / best_batch,
            "single_ms_median": 1000 * statistics.median(singles), "single_ms_min": 1000 * min(singles),
            "single_ms_mean": 1000 * statistics.mean(singles)}, answers


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# -- the server ----------------------------------------------------------------------------------------------
class Server:
    def __init__(self, args, log: Path):
        command = [sys.executable, "-m", "pyserini_hypencoder.server.rest", "--index", f"{NAME}={args.index}",
                   "--encoder", args.encoder, "--threads", str(args.threads), "--batch-size", str(args.batch_size),
                   "--batch-wait-ms", str(args.batch_wait_ms), "--max-queue", str(args.max_queue), "--port", "0",
                   "--quiet"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        self.log = log
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=log.open("w"), env=env)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            found = re.search(r"serving on http://(127\.0\.0\.1):(\d+)", log.read_text())
            if found:
                self.host, self.port = found.group(1), int(found.group(2))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"the server did not start:\n{log.read_text()[-2000:]}")

    def memory(self, field="VmRSS") -> int:
        """kB of resident memory (VmRSS) or its peak (VmHWM), from /proc."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


class Connection:
    """One keep-alive HTTP/1.1 connection (a few lines of asyncio: lighter on the shared cores than a full client)."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes = b""):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:   # the server closed an idle connection: once more on a new one
            self.close()
            return await self.request(method, path, body)
        length, close = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        data = await self.reader.readexactly(length)
        if close:
            self.close()
        return int(status_line.split()[1]), data

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def health(server) -> dict:
    """/v1/health on a connection of its own (an idle keep-alive connection is closed by the server after 5 s)."""
    conn = Connection(server.host, server.port)
    try:
        return json.loads((await conn.request("GET", "/v1/health"))[1])
    finally:
        conn.close()


async def level(server, queries, concurrency, requests, seconds, hits, collect=None):
    """``concurrency`` clients until ``requests`` are answered or ``seconds`` pass."""
    counter = {"next": 0}
    latencies, errors = [], {}
    before = await health(server)
    deadline = time.perf_counter() + seconds

    async def client():
        conn = Connection(server.host, server.port)
        try:
            while counter["next"] < requests and time.perf_counter() < deadline:
                i = counter["next"]
                counter["next"] += 1
                query = queries[i % len(queries)]
                body = json.dumps({"query": query, "hits": hits}).encode()
                started = time.perf_counter()
                status, data = await conn.request("POST", f"/v1/indexes/{NAME}/search", body)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors[status] = errors.get(status, 0) + 1
                elif collect is not None:
                    collect[query] = [(c["docid"], c["score"]) for c in json.loads(data)["candidates"]]
        finally:
            conn.close()
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    after = await health(server)
    batches, served = after["batches"] - before["batches"], after["queries"] - before["queries"]
    ms = sorted(1000 * x for x in latencies)

    def pct(p):
        return ms[min(len(ms) - 1, int(round(p / 100 * (len(ms) - 1))))] if ms else float("nan")
    return {"concurrency": concurrency, "requests": len(ms), "seconds": round(elapsed, 2),
            "rps": len(ms) / elapsed, "mean_ms": statistics.mean(ms) if ms else float("nan"), "p50_ms": pct(50),
            "p95_ms": pct(95), "p99_ms": pct(99), "errors": errors, "mean_batch": served / batches if batches else 0}


async def memory_run(server, queries, seconds, hits):
    samples = []

    async def sample():
        while True:
            samples.append((time.perf_counter(), server.memory()))
            await asyncio.sleep(1.0)
    sampler = asyncio.create_task(sample())
    try:
        result = await level(server, queries, 32, 10 ** 9, seconds, hits)
    finally:
        sampler.cancel()
    kb = [m for _, m in samples]
    third = max(1, len(kb) // 3)
    result.update({"rss_start_mb": kb[0] / 1024, "rss_end_mb": kb[-1] / 1024, "rss_max_mb": max(kb) / 1024,
                   "rss_first_third_mean_mb": statistics.mean(kb[:third]) / 1024,
                   "rss_last_third_mean_mb": statistics.mean(kb[-third:]) / 1024, "samples": len(kb)})
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True, help="index directory (SciFact's, encoded with --encoder)")
    parser.add_argument("--encoder", default="default")
    parser.add_argument("--topics", default=str(DEFAULT_TOPICS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--requests", type=int, default=400, help="requests per level at most")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per level at most")
    parser.add_argument("--hits", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batch-wait-ms", type=float, default=2.0)
    parser.add_argument("--max-queue", type=int, default=256)
    parser.add_argument("--check", type=int, default=64, help="topics whose served answers are compared")
    parser.add_argument("--memory-seconds", type=float, default=0.0, help="a concurrency-32 run this long (0: none)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    from pyserini_hypencoder.formats import read_topics
    queries = list(read_topics(args.topics).values())
    args.check = min(args.check, len(queries))
    print(f"{len(queries)} topics from {args.topics}; index {args.index}; encoder {args.encoder}; "
          f"{args.threads} torch threads", flush=True)

    base, answers = bare(args, queries)
    print(f"bare searcher: best single query {base['single_ms_median']:.1f} ms median, {base['single_ms_min']:.1f} "
          f"ms min, {base['single_ms_mean']:.1f} ms mean (of {args.batch_size}, best of 3 each); batch_search of "
          f"{args.batch_size}: {base['batch_ms_per_query']:.2f} ms/query = {base['batch_qps']:.1f} queries/s",
          flush=True)
    report = {"bare": base, "levels": [], "settings": {k: v for k, v in vars(args).items() if k != "json"}}
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(args, Path(tmp) / "server.log")
        try:
            report["rss_after_start_mb"] = server.memory() / 1024

            async def run():
                await level(server, queries, 4, 16, 30, args.hits)                 # warm-up, not counted
                served = {}
                await level(server, queries[:args.check], 32, args.check, 120, args.hits, collect=served)
                report["answers_compared"] = len(answers)
                report["answers_different"] = sum(served.get(q) != a for q, a in answers.items())
                for c in (int(x) for x in args.concurrency.split(",")):
                    result = await level(server, queries, c, args.requests, args.seconds, args.hits)
                    report["levels"].append(result)
                    print(f"c={c:3d}: {result['rps']:6.1f} req/s  p50 {result['p50_ms']:7.1f} ms  p95 "
                          f"{result['p95_ms']:7.1f}  p99 {result['p99_ms']:7.1f}  mean {result['mean_ms']:7.1f}  "
                          f"errors {result['errors'] or 0}  mean batch {result['mean_batch']:.1f}  "
                          f"({result['requests']} requests, {result['seconds']} s)", flush=True)
                if args.memory_seconds > 0:
                    report["memory_run"] = await memory_run(server, queries, args.memory_seconds, args.hits)
            asyncio.run(run())
            report["peak_rss_mb"] = server.memory("VmHWM") / 1024
        finally:
            code = server.stop()
            report["server_exit"] = code
    print(f"answers at concurrency 32 against search() alone: {report['answers_different']} of "
          f"{report['answers_compared']} differ")
    print(f"server peak memory (VmHWM): {report['peak_rss_mb']:.0f} MB (after start {report['rss_after_start_mb']:.0f} "
          f"MB); exit status after SIGTERM {report['server_exit']}")
    if "memory_run" in report:
        m = report["memory_run"]
        print(f"memory run: {m['requests']} requests in {m['seconds']} s at c=32 ({m['rps']:.1f} req/s, errors "
              f"{m['errors'] or 0}): RSS {m['rss_start_mb']:.0f} -> {m['rss_end_mb']:.0f} MB, max {m['rss_max_mb']:.0f}"
              f"; mean of the first third {m['rss_first_third_mean_mb']:.0f} MB, of the last "
              f"{m['rss_last_third_mean_mb']:.0f} MB ({m['samples']} samples)")
    by_c = {r["concurrency"]: r for r in report["levels"]}
    goals = {}
    if 32 in by_c:
        r = by_c[32]
        goals["c32_throughput_vs_batch_search"] = r["rps"] / base["batch_qps"]
        goals["c32_p99_vs_twice_littles_mean"] = r["p99_ms"] / (2 * 1000 * 32 / r["rps"])
    if 1 in by_c:
        goals["c1_p50_ms"] = by_c[1]["p50_ms"]
        goals["c1_allowed_ms"] = 1.2 * base["single_ms_median"] + 2
    goals["errors"] = sum(sum(r["errors"].values()) for r in report["levels"])
    report["goals"] = goals
    print("goals:")
    if "c32_throughput_vs_batch_search" in goals:
        print(f"  c=32 throughput / batch_search throughput = {goals['c32_throughput_vs_batch_search']:.2f} "
              f"(goal >= 0.80)")
        print(f"  c=32 p99 / (2 x 32 / throughput) = {goals['c32_p99_vs_twice_littles_mean']:.2f} (goal <= 1.00)")
    if "c1_p50_ms" in goals:
        print(f"  c=1 p50 {goals['c1_p50_ms']:.1f} ms against 1.2 x {base['single_ms_median']:.1f} + 2 = "
              f"{goals['c1_allowed_ms']:.1f} ms (goal: below)")
    print(f"  errors below the queue limit: {goals['errors']} (goal 0)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
