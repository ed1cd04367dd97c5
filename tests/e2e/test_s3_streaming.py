"""S3 object data streams between the socket and disk in bounded memory:
multi-GB uploads (boto3 multipart, boto3 single PUT, signed aws-chunked,
the AWS CLI) and downloads keep the server's resident memory under a fixed
bound, per-chunk signatures are checked as chunks arrive, and anonymous
large bodies are refused without being read.

Data comes from a seeded RNG stream (never held in memory); the server's
data directory lives in the test's tmp dir, and objects are deleted after
each test."""

import hashlib
import hmac
import http.client
import random
import select
import threading
import time
from datetime import datetime, timezone
from urllib.parse import quote

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from conftest import REGION, unique

MiB = 1024 * 1024
GiB = 1024 * MiB
# The server's resident memory must stay under this while it moves GBs.
RSS_BOUND = 150 * MiB
BLOCK = MiB


def rng_blocks(seed, size, block=BLOCK):
    """`size` bytes from a seeded RNG, a block at a time."""
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(block, left)
        yield rng.randbytes(n)
        left -= n


def rng_sha256(seed, size):
    h = hashlib.sha256()
    for b in rng_blocks(seed, size):
        h.update(b)
    return h.hexdigest()


class RngReader:
    """A read-only, non-seekable file object over `rng_blocks`."""

    def __init__(self, seed, size):
        self._it = rng_blocks(seed, size)
        self._buf = b""

    def read(self, n=-1):
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._it)
            except StopIteration:
                break
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


class RssSampler:
    """Samples a process's VmRSS from /proc until stopped; `peak` in bytes."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def rss(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self.samples += 1
            time.sleep(0.05)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.rss())
        self.samples += 1


def downloaded_sha256(s3, bucket, key):
    h = hashlib.sha256()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    for chunk in iter(lambda: body.read(BLOCK), b""):
        h.update(chunk)
    return h.hexdigest()


def assert_bounded(sampler):
    assert sampler.samples >= 2, "the RSS sampler did not run"
    assert sampler.peak < RSS_BOUND, f"server RSS peaked at {sampler.peak / MiB:.0f} MiB"


def objects_dir_files(kc):
    return sorted(p.name for p in (kc.data_dir / "objects").iterdir())


@pytest.fixture
def kc(keycard_fresh):
    yield keycard_fresh


@pytest.fixture
def s3(kc):
    cfg = Config(
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=600,
    )
    return kc.session().client("s3", endpoint_url=kc.endpoint, config=cfg)


# ---------------------------------------------------------------- signing


def _sign(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret, date):
    k = _sign(("AWS4" + secret).encode(), date)
    for part in (REGION, "s3", "aws4_request"):
        k = _sign(k, part)
    return k


def signed_headers(creds, method, host, path, headers, payload_hash):
    """SigV4 header signing with a given `x-amz-content-sha256` (botocore
    has no signer for aws-chunked). Returns (headers, seed signature, key,
    amz date, scope)."""
    now = datetime.now(timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = now.strftime("%Y%m%d")
    scope = f"{date}/{REGION}/s3/aws4_request"
    h = {k.lower(): str(v) for k, v in headers.items()}
    h.update({"host": host, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash})
    names = sorted(h)
    canonical = "\n".join(
        [method, quote(path, safe="/~"), "", *(f"{n}:{h[n].strip()}" for n in names), "", ";".join(names), payload_hash]
    )
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = signing_key(creds["SecretAccessKey"], date)
    sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    h["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={creds['AccessKeyId']}/{scope}, SignedHeaders={';'.join(names)}, Signature={sig}"
    )
    return h, sig, key, amz_date, scope


EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def chunk_frames(blocks, key, amz_date, scope, seed_sig, tamper_at=None):
    """Signed aws-chunked framing of `blocks`, then the final chunk."""
    prev = seed_sig
    for i, data in enumerate(_with_end(blocks)):
        sts = "\n".join(
            ["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, EMPTY_SHA256, hashlib.sha256(data).hexdigest()]
        )
        prev = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        sig = prev if i != tamper_at else ("0" if prev[0] != "0" else "1") + prev[1:]
        # A data chunk ends with CRLF; after the final one, CRLF ends the body.
        yield f"{len(data):x};chunk-signature={sig}\r\n".encode() + data + b"\r\n"


def _with_end(blocks):
    yield from blocks
    yield b""


def chunked_length(size, block):
    """Content-Length of signed aws-chunked framing of `size` bytes."""
    n, total = size, 0
    while n > 0:
        c = min(block, n)
        total += len(f"{c:x}") + len(";chunk-signature=") + 64 + 2 + c + 2
        n -= c
    return total + 1 + len(";chunk-signature=") + 64 + 2 + 2


def put_streaming(kc, creds, bucket, key, size, seed, block=64 * 1024, tamper_at=None):
    """PUT `size` seeded bytes as signed aws-chunked (STREAMING-AWS4-HMAC-SHA256-PAYLOAD)."""
    host = f"127.0.0.1:{kc.port}"
    path = f"/{bucket}/{key}"
    headers = {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(size),
        "content-length": str(chunked_length(size, block)),
    }
    h, seed_sig, skey, amz_date, scope = signed_headers(
        creds, "PUT", host, path, headers, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    )
    conn = http.client.HTTPConnection("127.0.0.1", kc.port, timeout=600)
    try:
        conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
        for k, v in h.items():
            conn.putheader(k, v)
        conn.endheaders()
        try:
            for frame in chunk_frames(rng_blocks(seed, size, block), skey, amz_date, scope, seed_sig, tamper_at):
                conn.send(frame)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-stream: the answer is already there
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


# ------------------------------------------------------------------ tests


def test_multipart_upload_fileobj_2gib(kc, s3):
    b = unique("big")
    s3.create_bucket(Bucket=b)
    size, seed = 2 * GiB, 1
    cfg = TransferConfig(multipart_threshold=64 * MiB, multipart_chunksize=64 * MiB, max_concurrency=4)
    with RssSampler(kc.proc.pid) as rss:
        s3.upload_fileobj(RngReader(seed, size), b, "two-gib.bin", Config=cfg)
        head = s3.head_object(Bucket=b, Key="two-gib.bin")
        assert head["ContentLength"] == size
        assert head["ETag"].strip('"').endswith("-32")
        assert downloaded_sha256(s3, b, "two-gib.bin") == rng_sha256(seed, size)
    assert_bounded(rss)
    # Parts are gone once concatenated; the object is the only file.
    assert len(objects_dir_files(kc)) == 1
    s3.delete_object(Bucket=b, Key="two-gib.bin")
    assert objects_dir_files(kc) == []


def write_rng_file(path, seed, size):
    with open(path, "wb") as f:
        for blk in rng_blocks(seed, size):
            f.write(blk)


def test_single_put_1_5gib_boto3_cli_and_ranges(kc, s3, tmp_path):
    """One 1.5 GiB PUT from boto3 (a file streamed as the body) and one from
    `aws s3 cp` (threshold raised so it is a single PUT), each read back."""
    b = unique("big")
    s3.create_bucket(Bucket=b)
    size, seed = 3 * GiB // 2, 2
    src = tmp_path / "src.bin"
    write_rng_file(src, seed, size)
    want = rng_sha256(seed, size)
    cfg_file = tmp_path / "aws-config"
    cfg_file.write_text(kc.config_file.read_text().replace("s3 =\n", "s3 =\n    multipart_threshold = 5GB\n"))
    try:
        with RssSampler(kc.proc.pid) as rss:
            with open(src, "rb") as f:
                out = s3.put_object(Bucket=b, Key="one.bin", Body=f)
            assert "-" not in out["ETag"]
            assert downloaded_sha256(s3, b, "one.bin") == want
            # A range deep inside streams from disk too.
            start, n = GiB + 12345, 3 * MiB
            got = s3.get_object(Bucket=b, Key="one.bin", Range=f"bytes={start}-{start + n - 1}")
            assert got["ContentRange"] == f"bytes {start}-{start + n - 1}/{size}"
            with open(src, "rb") as f:
                f.seek(start)
                assert got["Body"].read() == f.read(n)

            kc.aws("s3", "cp", src, f"s3://{b}/cli.bin", env_extra={"AWS_CONFIG_FILE": str(cfg_file)}, timeout=900)
            head = s3.head_object(Bucket=b, Key="cli.bin")
            assert head["ContentLength"] == size
            assert "-" not in head["ETag"], "expected a single PUT"
            assert downloaded_sha256(s3, b, "cli.bin") == want
        assert_bounded(rss)
    finally:
        src.unlink()
    s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "one.bin"}, {"Key": "cli.bin"}]})
    assert objects_dir_files(kc) == []


def test_signed_aws_chunked_1_5gib(kc, s3):
    b = unique("big")
    s3.create_bucket(Bucket=b)
    size, seed = 3 * GiB // 2, 3
    with RssSampler(kc.proc.pid) as rss:
        status, body = put_streaming(kc, kc.root_creds, b, "chunked.bin", size, seed)
        assert status == 200, body
        assert downloaded_sha256(s3, b, "chunked.bin") == rng_sha256(seed, size)
    assert_bounded(rss)
    s3.delete_object(Bucket=b, Key="chunked.bin")
    assert objects_dir_files(kc) == []


def test_tampered_chunk_is_refused_and_leaves_nothing(kc, s3):
    b = unique("chunks")
    s3.create_bucket(Bucket=b)
    size = 40 * MiB
    status, body = put_streaming(kc, kc.root_creds, b, "bad.bin", size, 4, tamper_at=100)
    assert status == 403, body
    assert b"<Code>SignatureDoesNotMatch</Code>" in body
    assert s3.list_objects_v2(Bucket=b).get("KeyCount") == 0
    assert objects_dir_files(kc) == []
    # The same body, untampered, is stored.
    status, body = put_streaming(kc, kc.root_creds, b, "good.bin", size, 4)
    assert status == 200, body
    assert downloaded_sha256(s3, b, "good.bin") == rng_sha256(4, size)


def _anonymous_put(port, path, size, results, i):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    sent = 0
    try:
        conn.putrequest("PUT", path)
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        for blk in rng_blocks(i, size):
            # Stop sending once the server has answered.
            if select.select([conn.sock], [], [], 0)[0]:
                break
            try:
                conn.sock.sendall(blk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(blk)
        r = conn.getresponse()
        results[i] = (r.status, r.read(), sent)
    except Exception as e:  # noqa: BLE001 - reported by the assertion below
        results[i] = ("error", repr(e), sent)
    finally:
        conn.close()


def test_anonymous_large_puts_are_refused_unread(kc, s3):
    b = unique("anon")
    s3.create_bucket(Bucket=b)
    size = 400 * 1000 * 1000
    results = {}
    with RssSampler(kc.proc.pid) as rss:
        threads = [
            threading.Thread(target=_anonymous_put, args=(kc.port, f"/{b}/anon-{i}.bin", size, results, i))
            for i in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    assert_bounded(rss)
    for i in range(4):
        status, body, sent = results[i]
        assert status == 403, (status, body)
        assert b"<Code>AccessDenied</Code>" in body
        assert sent < size, "the whole body was sent before the answer"
    assert objects_dir_files(kc) == []


def put_unsigned_trailer(kc, creds, bucket, key, size, seed, crc=None, block=64 * 1024):
    """PUT as STREAMING-UNSIGNED-PAYLOAD-TRAILER with a CRC32 trailer
    (`crc` overrides the computed value)."""
    import base64
    import zlib

    c = 0
    for blk in rng_blocks(seed, size, block):
        c = zlib.crc32(blk, c)
    crc = crc or base64.b64encode(c.to_bytes(4, "big")).decode()
    trailer = f"x-amz-checksum-crc32:{crc}\r\n\r\n".encode()
    frames_len = sum(len(f"{min(block, size - o):x}") + 4 + min(block, size - o) for o in range(0, size, block))
    host = f"127.0.0.1:{kc.port}"
    path = f"/{bucket}/{key}"
    headers = {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(size),
        "x-amz-trailer": "x-amz-checksum-crc32",
        "content-length": str(frames_len + 3 + len(trailer)),
    }
    h, *_ = signed_headers(creds, "PUT", host, path, headers, "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    conn = http.client.HTTPConnection("127.0.0.1", kc.port, timeout=600)
    try:
        conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
        for k, v in h.items():
            conn.putheader(k, v)
        conn.endheaders()
        for blk in rng_blocks(seed, size, block):
            conn.send(f"{len(blk):x}\r\n".encode() + blk + b"\r\n")
        conn.send(b"0\r\n" + trailer)
        r = conn.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read(), crc
    finally:
        conn.close()


def test_unsigned_trailer_aws_chunked(kc, s3):
    b = unique("trailer")
    s3.create_bucket(Bucket=b)
    size = 20 * MiB + 7
    status, headers, body, crc = put_unsigned_trailer(kc, kc.root_creds, b, "t.bin", size, 6)
    assert status == 200, body
    assert headers["x-amz-checksum-crc32"] == crc
    assert downloaded_sha256(s3, b, "t.bin") == rng_sha256(6, size)
    # A trailer checksum that doesn't match: BadDigest, nothing stored.
    status, _, body, _ = put_unsigned_trailer(kc, kc.root_creds, b, "bad.bin", size, 6, crc="AAAAAA==")
    assert status == 400, body
    assert b"<Code>BadDigest</Code>" in body
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=b)["Contents"]] == ["t.bin"]
    assert len(objects_dir_files(kc)) == 1
