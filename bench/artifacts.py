"""Artifacts at any size, measured: uploads and downloads of one large file through gunicorn.

For each storage backend (local disk; S3 = a moto server on 127.0.0.1), one gunicorn worker of
gunicorn.conf.py's class:

- upload the file with the runner client as a multipart form (through the worker) and through a
  direct upload URL (local: the service's signed PUT URL; s3: a presigned PUT to the bucket);
- download it back whole, and again as four sequential ``Range`` requests (s3: the service
  answers 302 to a presigned GET, which requests follows). The client counts the bytes and
  compares the start of each response with the source file, but does not write them to disk:
  the client's disk is not the service, and on one machine its writes would slow the server's;
- throughput of each as a ratio of a plain local file copy of the same size (copy + fsync, on
  the same disk), taken next to each transfer (before it in even rounds, after it in odd
  ones), round after round: the disk of a shared virtual machine varies several-fold from one
  second to the next, so each transfer is compared with a copy taken a moment apart and the
  median of the paired ratios is reported (``--rounds``, default 4). Target >= 0.5;
- s3 only: the same transfers done straight against the store with no designrun in between
  ("store alone": a presigned PUT, boto3's upload in parts as the worker relays a multipart
  form, a presigned GET whole and in ranges): the most any client gets from that S3 endpoint
  (moto's server, its own process, is Python), and the ratio of designrun's transfer to it
  ("vs store"). moto, not the service, bounds the s3 rows: their target is "vs store" >= 0.5;
- the JSON bound: a POST of a 1 GiB JSON body to the events endpoint, declared by its
  Content-Length (target: 413 in < 100 ms, no growth of the worker's peak RSS) and chunked
  without one (413 once MAX_JSON_BYTES has been read; informational);
- the worker's peak RSS growth (VmHWM at the end minus VmRSS after a warm-up): target < 64 MiB.

    .venv/bin/python bench/artifacts.py              # 1 GiB, 4 rounds, about 6 minutes
    .venv/bin/python bench/artifacts.py --size-mib 256 --backends local --rounds 1

Everything stays on 127.0.0.1; the scratch folder is removed at the end (``--keep`` keeps it).
Results are printed as a table and written to bench/results/artifacts-<time>.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from harness import ROOT, VENV_BIN, clean_env, free_port, gunicorn, stop_group

from designrun.auth import runner_tokens
from designrun.runner import RunnerClient
from designrun.runner.wire import _MultipartBody
from designrun.storage.s3 import _TRANSFER

MiB = 1024 * 1024
GiB = 1024 * MiB
SECRET = "bench-artifacts-runner-secret-0123456789abcdef"  # noqa: S105  (a scratch server)
TARGET_RATIO = 0.5
TARGET_RSS_MIB = 64
TARGET_REFUSAL_MS = 100  # a declared 1 GiB JSON body: 413 from its headers
# The "store alone" row each s3 transfer is compared with ("vs store").
STORE_ROW = {
    "upload multipart": "store alone: boto3 parts",
    "upload direct": "store alone: upload",
    "download whole": "store alone: download",
    "download 4 ranges": "store alone: 4 ranges",
}


def make_file(path: Path, size: int) -> None:
    block = os.urandom(MiB)
    with path.open("wb") as out:
        left = size
        while left > 0:
            out.write(block[: min(MiB, left)])
            left -= MiB
        out.flush()
        os.fsync(out.fileno())  # not left for the kernel to write back during the measurements


def timed(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def copy_seconds(src: Path, workdir: Path) -> float:
    """Seconds for a plain copy of ``src`` on the same disk, fsynced like the local backend."""
    dst = workdir / "baseline.copy"

    def copy() -> None:
        with src.open("rb") as inp, dst.open("wb") as out:
            shutil.copyfileobj(inp, out, MiB)
            out.flush()
            os.fsync(out.fileno())

    try:
        return timed(copy)
    finally:
        dst.unlink(missing_ok=True)


def settle(*warm: Path) -> None:
    """Start each measurement from the same memory state: dirty pages written, the page cache
    dropped (when we may: root), the files it reads (the source; a download's object) read
    back into it, as the copy's source is.

    On this virtual machine a write into page-cache pages that the guest has never touched
    costs a host page fault per page: kernel profiles of a slow 1 GiB upload showed 72 % of
    the time in ``copy_folio_from_iter_atomic``. Which pages a write gets depended on what ran
    before it (a copy just deleted leaves warm pages for the next writer), and that, not the
    code measured, decided ratios between 0.25 and 0.9. Dropping the cache returns the pages
    of every file written so far to the free pool, for whichever writer comes next.
    """
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError:
        pass  # not root: measurements are noisier, the median still helps
    for path in warm:
        with path.open("rb") as file:
            while file.read(MiB):
                pass


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def download(url: str, headers: dict[str, str], src: Path, offset: int = 0) -> int:
    """GET ``url``; the number of bytes received (their first KiB checked against ``src``)."""
    received = 0
    with requests.get(url, headers=headers, stream=True, timeout=600) as r:
        r.raise_for_status()
        for chunk in r.iter_content(MiB):
            if not received:
                with src.open("rb") as expected:
                    expected.seek(offset)
                    assert chunk[:1024] == expected.read(min(1024, len(chunk))), "wrong bytes"
            received += len(chunk)
    return received


class Session:
    """A signed-in user of one designrun server, and the runs it creates."""

    def __init__(self, url: str) -> None:
        self.url = url
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        r = requests.post(
            f"{url}/api/auth/sign-up/email",
            json={"email": email, "password": "bench password 123", "name": "bench"},
            timeout=30,
        )
        r.raise_for_status()
        self.headers = {"Authorization": f"Bearer {r.json()['token']}"}

    def new_run(self) -> tuple[str, str, str]:
        """(run id, runner callback URL, runner token) of a new run."""
        r = requests.post(
            f"{self.url}/api/design/runs",
            json={"prompt": "bench"},
            headers=self.headers,
            timeout=30,
        )
        r.raise_for_status()
        run_id = r.json()["run"]["id"]
        token, _ = runner_tokens.mint(SECRET, uuid.UUID(run_id), 86400)
        return run_id, f"{self.url}/api/runner/runs/{run_id}", token

    def delete_run(self, run_id: str) -> None:
        """Delete the run and its stored objects (so the disk does not fill round after round)."""
        requests.delete(
            f"{self.url}/api/design/runs/{run_id}", headers=self.headers, timeout=600
        ).raise_for_status()


def start_moto(folder: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Any]:
    """moto's S3 server in its own process on 127.0.0.1 (as a real endpoint is: not sharing
    this client's interpreter), with a fresh bucket; env gets the S3 settings."""
    import boto3

    port = free_port()
    log = (folder / "moto.log").open("wb")
    moto = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    env.update(
        S3_BUCKET=bucket,
        S3_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        S3_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106  (moto's)
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(folder / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(folder / "no-aws-credentials"),
    )
    client = boto3.client(
        "s3",
        endpoint_url=env["S3_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket=bucket)
            return moto, client
        except Exception:
            if time.monotonic() > deadline or moto.poll() is not None:
                stop_group(moto)
                raise
            time.sleep(0.2)


def store_alone(
    client: Any, bucket: str, src: Path, size: int, before: Callable[[], None]
) -> dict[str, float]:
    """Seconds to PUT ``src`` to a presigned URL and GET it back (whole, then in four ranges),
    as designrun's clients do, but with no designrun in between; ``before`` runs before each
    (moto keeps large objects in temporary files: a cold page cache slows its reads too)."""
    key = f"store-alone/{uuid.uuid4().hex}"
    put_url = client.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600
    )

    def put() -> None:
        with src.open("rb") as file:
            body = _MultipartBody(b"", file, size, b"")  # as designrun.runner sends it
            requests.put(put_url, data=body, timeout=600).raise_for_status()

    before()
    seconds = {"store alone: upload": timed(put)}

    def relay() -> None:  # what the worker does with a multipart form's file: boto3, in parts
        with src.open("rb") as file:
            client.upload_fileobj(_Unseekable(file), bucket, key + "-parts", Config=_TRANSFER)

    before()
    seconds["store alone: boto3 parts"] = timed(relay)
    client.delete_object(Bucket=bucket, Key=key + "-parts")
    get_url = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600
    )
    before()
    seconds["store alone: download"] = timed(lambda: download(get_url, {}, src))
    before()
    seconds["store alone: 4 ranges"] = timed(lambda: ranged(get_url, {}, src, size))
    client.delete_object(Bucket=bucket, Key=key)
    return seconds


class _Unseekable:
    """A file as the worker's multipart parser hands it to boto3: read() only."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._file.read(size)
        return data


def ranged(url: str, headers: dict[str, str], src: Path, size: int) -> None:
    """GET ``url`` as four sequential ``Range`` requests, checking each one's length."""
    quarter = size // 4
    for i in range(4):
        stop = size - 1 if i == 3 else (i + 1) * quarter - 1
        asked = {**headers, "Range": f"bytes={i * quarter}-{stop}"}
        assert download(url, asked, src, i * quarter) == stop - i * quarter + 1


def refuse_json(url: str, path: str, token: str, chunked: bool) -> tuple[int, float]:
    """POST a 1 GiB JSON body (declared by Content-Length, or chunked without one), sending it
    as fast as the socket takes it; (status, seconds from the first byte sent to the status
    line). The server must answer 413 without reading the body (declared) or once it has read
    MAX_JSON_BYTES of it (chunked), and stay as small as it was."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        + ("Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {GiB}\r\n\r\n")
    ).encode()
    piece = b'{"type": "log", "message": "' + b"x" * (MiB - 40) + b'"},'
    if chunked:
        piece = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    answered = threading.Event()

    def send(sock: socket.socket) -> None:
        try:
            for _ in range(GiB // MiB):
                if answered.is_set():
                    return
                sock.sendall(piece)
        except OSError:
            pass  # the server closed the connection after its answer

    with socket.create_connection((host, int(port)), timeout=60) as sock:
        start = time.perf_counter()
        sock.sendall(head + (b"1\r\n[\r\n" if chunked else b"["))
        sender = threading.Thread(target=send, args=(sock,), daemon=True)
        sender.start()
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
        seconds = time.perf_counter() - start
        answered.set()
    sender.join(timeout=60)
    return int(answer.split(b" ", 2)[1]), seconds


def _upload(runner: RunnerClient, src: Path, answer: dict[str, Any]) -> None:
    answer.update(runner.upload_artifact(src, "big"))


def bench_backend(
    backend: str, src: Path, size: int, workdir: Path, rounds: int
) -> dict[str, list[tuple[float, float]]]:
    """{transfer: [(seconds, seconds of the copy taken just before), ...]}, and RSS growth."""
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
    moto = s3 = None
    if backend == "s3":
        moto, s3 = start_moto(folder, env)
    subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "designrun", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    samples: dict[str, list[tuple[float, float]]] = {}

    def measure(name: str, action: Callable[[], Any], *warm: Path) -> None:
        """One paired sample. The disk of this machine writes a burst fast and then slows down
        for a while: whichever of the two goes second pays for the first's writes, so the
        order alternates from round to round."""
        copy_first = len(samples.get(name, [])) % 2 == 0
        if copy_first:
            settle(src)
            baseline = copy_seconds(src, workdir)
        settle(src, *warm)
        prime()
        seconds = timed(action)
        if not copy_first:
            settle(src)
            baseline = copy_seconds(src, workdir)
        samples.setdefault(name, []).append((seconds, baseline))

    def prime() -> None:
        """Dropping the page cache also dropped the servers' code: fault it back in first."""
        requests.get(f"{server.url}/livez", timeout=30).raise_for_status()
        if s3 is not None:
            s3.head_bucket(Bucket=env["S3_BUCKET"])

    try:
        with gunicorn(f"designrun-{backend}", "wsgi:app", env, folder, 1, None) as server:
            session = Session(server.url)
            (worker,) = server.worker_pids()
            small = folder / "warm.bin"
            small.write_bytes(b"w" * MiB)
            run_id, callback, token = session.new_run()
            for threshold in (None, 1):  # imports and first connections, both upload paths
                with RunnerClient(callback, token, direct_upload_threshold=threshold) as runner:
                    runner.upload_artifact(small, "warm-up")
            session.delete_run(run_id)
            base_rss = rss_kib(worker, "VmRSS")
            if backend == "local":  # the JSON bound does not depend on the store
                run_id, _, token = session.new_run()
                path = f"/api/runner/runs/{run_id}/events"
                for chunked in (False, True):  # declared first: its growth must be nil
                    name = f"1 GiB JSON, {'chunked' if chunked else 'declared'}"
                    before = rss_kib(worker, "VmHWM")
                    status, seconds = refuse_json(server.url, path, token, chunked)
                    assert status == 413, (name, status)
                    samples[name] = [(seconds, (rss_kib(worker, "VmHWM") - before) / 1024)]
            for _ in range(rounds):
                run_id, callback, token = session.new_run()
                uploaded: dict[str, Any] = {}
                for mode, threshold in (("multipart", None), ("direct", 1)):
                    with RunnerClient(callback, token, direct_upload_threshold=threshold) as rc:
                        answer: dict[str, Any] = {}
                        uploaded[mode] = answer
                        measure(f"upload {mode}", functools.partial(_upload, rc, src, answer))
                    assert uploaded[mode]["sizeBytes"] == size, uploaded[mode]
                artifact = uploaded["direct"]["artifactId"]
                content = f"{server.url}/api/design/runs/{run_id}/artifacts/{artifact}/content"

                # local: the object's file, read into the page cache as the copy's source is
                stored = folder / "artifacts" / uploaded["direct"]["storageKey"]
                warm = (stored,) if backend == "local" else ()

                def whole(url: str = content) -> None:
                    assert download(url, session.headers, src) == size

                measure("download whole", whole, *warm)
                measure(
                    "download 4 ranges",
                    functools.partial(ranged, content, session.headers, src, size),
                    *warm,
                )
                session.delete_run(run_id)
                if s3 is not None:
                    settle(src)
                    baseline = copy_seconds(src, workdir)

                    def cold() -> None:  # the state designrun's transfers start from
                        settle(src)
                        prime()

                    alone = store_alone(s3, env["S3_BUCKET"], src, size, cold)
                    for name, seconds in alone.items():
                        samples.setdefault(name, []).append((seconds, baseline))
            growth = (rss_kib(worker, "VmHWM") - base_rss) / 1024
            samples["worker peak RSS growth MiB"] = [(growth, 0.0)]
    finally:
        if moto is not None:
            stop_group(moto)
    return samples


def summarize(samples: list[tuple[float, float]]) -> dict[str, float]:
    """Median seconds and median paired ratio (copy seconds / transfer seconds)."""
    return {
        "seconds": statistics.median(s for s, _ in samples),
        "ratio": statistics.median(base / s for s, base in samples),
        "copy_seconds": statistics.median(base for _, base in samples),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--backends", default="local,s3")
    parser.add_argument("--rounds", type=int, default=4, help="paired measurements per transfer")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    size = args.size_mib * MiB
    workdir = Path(tempfile.mkdtemp(prefix="designrun-bench-artifacts-"))
    report: dict[str, Any] = {"size_mib": args.size_mib, "rounds": args.rounds, "backends": {}}
    failed = False
    try:
        src = workdir / "source.bin"
        make_file(src, size)
        copy_seconds(src, workdir)  # warm the page cache, as the uploads read a warm file too
        print(
            f"{args.size_mib} MiB, {args.rounds} rounds; 'copy' is the plain local copy taken "
            "next to each transfer (median MiB/s), 'ratio' the median of copy/transfer"
        )
        print(
            f"{'backend':8} {'transfer':24} {'seconds':>8} {'MiB/s':>7} {'copy':>7} "
            f"{'ratio':>6} {'vs store':>8}  target"
        )
        for backend in args.backends.split(","):
            samples = bench_backend(backend, src, size, workdir, args.rounds)
            growth = samples.pop("worker peak RSS growth MiB")[0][0]
            refusals = {n: samples.pop(n)[0] for n in list(samples) if n.startswith("1 GiB")}
            rows = {name: summarize(values) for name, values in samples.items()}
            report["backends"][backend] = {"rows": rows, "samples": samples, "rss_mib": growth}
            for name, row in rows.items():
                alone = name.startswith("store alone")
                store = rows.get(STORE_ROW.get(name, ""))
                versus = store["seconds"] / row["seconds"] if store and not alone else None
                # s3: the store is the ceiling (see the docstring); local: the disk copy is.
                judged, column = (row["ratio"], "copy") if versus is None else (versus, "store")
                ok = alone or judged >= TARGET_RATIO
                verdict = "" if alone else f"{'PASS' if ok else 'FAIL'} (vs {column} >= 0.5)"
                rate = args.size_mib / row["seconds"]
                copy_rate = args.size_mib / row["copy_seconds"]
                print(
                    f"{backend:8} {name:24} {row['seconds']:8.2f} {rate:7.0f} {copy_rate:7.0f} "
                    f"{row['ratio']:6.2f} {'' if versus is None else f'{versus:.2f}':>8}  {verdict}"
                )
                failed = failed or not ok
            for name, (seconds, grew) in refusals.items():
                report["backends"][backend][name] = {"seconds": seconds, "rss_growth_mib": grew}
                declared = name.endswith("declared")
                ok = not declared or (seconds * 1000 < TARGET_REFUSAL_MS and grew < 1)
                verdict = f"{'PASS' if ok else 'FAIL'} (< {TARGET_REFUSAL_MS} ms, no growth)"
                verdict = verdict if declared else "(reads MAX_JSON_BYTES first)"
                print(
                    f"{backend:8} {name + ': 413':24} {seconds * 1000:8.1f} ms, "
                    f"peak RSS +{grew:5.1f} MiB {'':12}{verdict}"
                )
                failed = failed or not ok
            ok = growth < TARGET_RSS_MIB
            print(
                f"{backend:8} {'worker peak RSS growth':24} {growth:8.1f} MiB "
                f"{'':32}{'PASS' if ok else 'FAIL'} (< {TARGET_RSS_MIB} MiB)"
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
