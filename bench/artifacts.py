"""Artifacts at any size, measured: uploads and downloads of one large file through gunicorn.

For each storage backend (local disk; S3 = a moto server on 127.0.0.1), one gunicorn sync worker:

- upload the file with the runner client as a multipart form (through the worker) and through a
  direct upload URL (local: the service's signed PUT URL; s3: a presigned PUT to the bucket);
- download it back whole, and again as four sequential ``Range`` requests (s3: the service
  answers 302 to a presigned GET, which requests follows);
- throughput of each as a ratio of a plain local file copy of the same size (copy + fsync, in the
  same run, on the same disk): target >= 0.5;
- the worker's peak RSS growth (VmHWM at the end minus VmRSS after a warm-up): target < 64 MiB.

    .venv/bin/python bench/artifacts.py              # 1 GiB
    .venv/bin/python bench/artifacts.py --size-mib 256 --backends local

Everything stays on 127.0.0.1; the scratch folder is removed at the end (``--keep`` keeps it).
Results are printed as a table and written to bench/results/artifacts-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from harness import ROOT, VENV_BIN, clean_env, gunicorn

from designrun.auth import runner_tokens
from designrun.runner import RunnerClient

MiB = 1024 * 1024
SECRET = "bench-artifacts-runner-secret-0123456789abcdef"  # noqa: S105  (a scratch server)
TARGET_RATIO = 0.5
TARGET_RSS_MIB = 64


def make_file(path: Path, size: int) -> None:
    block = os.urandom(MiB)
    with path.open("wb") as out:
        left = size
        while left > 0:
            out.write(block[: min(MiB, left)])
            left -= MiB


def timed(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def copy_baseline(src: Path, workdir: Path) -> float:
    """Seconds for a plain copy of ``src`` on the same disk, fsynced like the local backend."""

    def copy() -> None:
        dst = workdir / "baseline.copy"
        with src.open("rb") as inp, dst.open("wb") as out:
            shutil.copyfileobj(inp, out, MiB)
            out.flush()
            os.fsync(out.fileno())
        dst.unlink()

    copy()  # warm the page cache, as the uploads read a warm file too
    return timed(copy)


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def download(url: str, headers: dict[str, str], target: Path) -> int:
    with requests.get(url, headers=headers, stream=True, timeout=600) as r:
        r.raise_for_status()
        with target.open("ab") as out:
            for chunk in r.iter_content(MiB):
                out.write(chunk)
        return r.status_code


def bench_backend(backend: str, src: Path, size: int, workdir: Path) -> dict[str, Any]:
    folder = workdir / backend
    folder.mkdir()
    env = clean_env(
        DATABASE_URL=f"sqlite:///{folder}/designrun.db",
        DESIGNRUN_INSTANCE_PATH=str(folder / "instance"),
        RUNNER_AUTH_SECRET=SECRET,
        RUNNER_BACKEND="none",
        STORAGE_BACKEND=backend,
        STORAGE_LOCAL_DIR=str(folder / "artifacts"),
        MAX_UPLOAD_BYTES=str(size + 16 * MiB),
        GUNICORN_TIMEOUT="900",
        NO_PROXY="127.0.0.1,localhost",
    )
    moto = None
    if backend == "s3":
        from moto.server import ThreadedMotoServer

        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        host, port = moto.get_host_and_port()
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        env.update(
            S3_BUCKET=bucket,
            S3_ENDPOINT_URL=f"http://{host}:{port}",
            S3_REGION="us-east-1",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106  (moto's)
            AWS_DEFAULT_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE=str(folder / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(folder / "no-aws-credentials"),
        )
        import boto3

        boto3.client(
            "s3",
            endpoint_url=env["S3_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106
        ).create_bucket(Bucket=bucket)
    subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "designrun", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    results: dict[str, Any] = {}
    try:
        with gunicorn(f"designrun-{backend}", "wsgi:app", env, folder, 1, None) as server:
            email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
            r = requests.post(
                f"{server.url}/api/auth/sign-up/email",
                json={"email": email, "password": "bench password 123", "name": "bench"},
                timeout=30,
            )
            r.raise_for_status()
            user = {"Authorization": f"Bearer {r.json()['token']}"}
            r = requests.post(
                f"{server.url}/api/design/runs", json={"prompt": "bench"}, headers=user, timeout=30
            )
            r.raise_for_status()
            run_id = r.json()["run"]["id"]
            token, _ = runner_tokens.mint(SECRET, uuid.UUID(run_id), 86400)
            callback = f"{server.url}/api/runner/runs/{run_id}"
            (worker,) = server.worker_pids()
            small = folder / "warm.bin"
            small.write_bytes(b"w" * MiB)
            with RunnerClient(callback, token, direct_upload_threshold=None) as runner:
                runner.upload_artifact(small, "warm-up")  # imports and first connections
            base_rss = rss_kib(worker, "VmRSS")

            uploaded: dict[str, str] = {}
            for mode, threshold in (("multipart", None), ("direct", 1)):
                with RunnerClient(callback, token, direct_upload_threshold=threshold) as runner:
                    answer: dict[str, Any] = {}
                    seconds = timed(
                        lambda r=runner, a=answer: a.update(r.upload_artifact(src, "big"))
                    )
                assert answer["sizeBytes"] == size, answer
                uploaded[mode] = answer["artifactId"]
                results[f"upload {mode}"] = seconds
            content = (
                f"{server.url}/api/design/runs/{run_id}/artifacts/{uploaded['direct']}/content"
            )
            target = folder / "download.bin"
            results["download whole"] = timed(lambda: download(content, user, target))
            assert target.stat().st_size == size
            target.unlink()
            quarter = size // 4

            def ranged() -> None:
                for i in range(4):
                    stop = size - 1 if i == 3 else (i + 1) * quarter - 1
                    headers = {**user, "Range": f"bytes={i * quarter}-{stop}"}
                    download(content, headers, target)

            results["download 4 ranges"] = timed(ranged)
            assert target.stat().st_size == size
            target.unlink()
            results["worker peak RSS growth MiB"] = (rss_kib(worker, "VmHWM") - base_rss) / 1024
    finally:
        if moto is not None:
            moto.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--backends", default="local,s3")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    size = args.size_mib * MiB
    workdir = Path(tempfile.mkdtemp(prefix="designrun-bench-artifacts-"))
    report: dict[str, Any] = {"size_mib": args.size_mib, "backends": {}}
    failed = False
    try:
        src = workdir / "source.bin"
        make_file(src, size)
        baseline = copy_baseline(src, workdir)
        report["baseline_copy_seconds"] = baseline
        print(
            f"plain local copy of {args.size_mib} MiB: {baseline:.2f} s "
            f"({args.size_mib / baseline:.0f} MiB/s)"
        )
        print(f"{'backend':8} {'transfer':22} {'seconds':>8} {'MiB/s':>8} {'ratio':>6}  target")
        for backend in args.backends.split(","):
            results = bench_backend(backend, src, size, workdir)
            report["backends"][backend] = results
            for name, value in results.items():
                if name.startswith("worker"):
                    ok = value < TARGET_RSS_MIB
                    print(
                        f"{backend:8} {name:31} {value:8.1f} MiB      "
                        f"{'PASS' if ok else 'FAIL'} (< {TARGET_RSS_MIB})"
                    )
                else:
                    ratio = baseline / value
                    ok = ratio >= TARGET_RATIO
                    print(
                        f"{backend:8} {name:22} {value:8.2f} {args.size_mib / value:8.0f} "
                        f"{ratio:6.2f}  {'PASS' if ok else 'FAIL'} (>= {TARGET_RATIO})"
                    )
                failed = failed or not ok
        results_dir = ROOT / "bench" / "results"
        results_dir.mkdir(exist_ok=True)
        out = results_dir / f"artifacts-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(report, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
