"""`infsh serve --files s3://BUCKET/PREFIX` against a real S3-compatible
server: moto's `moto_server` (PyPI `moto[server]`, in
scripts/dev-requirements.txt; installed here when missing, and the module
skips when it cannot be) on a free loopback port, started and killed by
the module. The real `inferencesh` client uploads; the files app reads a
file input and writes file outputs; downloads are ranged; deletions reach
the bucket, which boto3 (moto's dependency) inspects directly.

Bad `--files` values end `infsh serve` with exit code 2 and one line naming
the URL (docs/cli.md "Exit codes").
"""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import requests

from conftest import _binary, serve
from support import API_KEY

MOTO = "moto[server]==5.2.6"
BUCKET = "infsh-test"
PREFIX = "fleet/files"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
AWS_ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


def _moto_server() -> Path:
    exe = Path(sys.executable).parent / "moto_server"
    if not exe.exists():
        try:
            subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                            "--disable-pip-version-check", MOTO],
                           check=True, timeout=600, stdout=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as e:
            pytest.skip(f"{MOTO} cannot be installed: {e}")
    if not exe.exists():
        pytest.skip(f"{MOTO} installed no moto_server")
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The endpoint URL of a fresh moto_server holding an empty BUCKET."""
    exe = _moto_server()
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        # Its first request loads moto's backends: seconds on a busy machine.
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(endpoint + "/", timeout=30).close()
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:  # refused while it starts, or a read timed out
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto_server never answered; log:\n{log.read_text()}")
            time.sleep(0.05)
        _bucket_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        proc.kill()
        proc.wait()


def _bucket_client(endpoint):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=AWS_ENV["AWS_REGION"],
                        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"])


def _keys(endpoint):
    listed = _bucket_client(endpoint).list_objects_v2(Bucket=BUCKET, Prefix=PREFIX + "/")
    return {o["Key"]: o["Size"] for o in listed.get("Contents", [])}


def _object(endpoint, file_id):
    return _bucket_client(endpoint).get_object(
        Bucket=BUCKET, Key=f"{PREFIX}/{file_id}")["Body"].read()


def _file_id(uri: str) -> str:
    # Output URIs carry their signature (`?sig=`, files are private on a
    # server with keys): the id is the path segment before it.
    return uri.split("/files/", 1)[1].split("/")[0].split("?", 1)[0]


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory, own_store_flags, s3):
    saved = {k: os.environ.get(k) for k in [*AWS_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(AWS_ENV)
    os.environ["AWS_ENDPOINT_URL"] = s3
    try:
        yield from serve(tmp_path_factory, own_store_flags, ["files-app"],
                         ["--files", f"s3://{BUCKET}/{PREFIX}"])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture()
def s3_client(s3_server):
    from inferencesh import Inference

    return Inference(api_key=API_KEY, base_url=s3_server.url)


def test_uploads_inputs_outputs_ranges_and_deletes_go_through_the_bucket(s3, s3_server, s3_client):
    body = b"raw bytes in a bucket"
    uploaded = s3_client.files.upload(body)
    upload_id = _file_id(uploaded["uri"])
    assert _object(s3, upload_id) == body
    # Nothing under the data folder: the bytes are only in the bucket.
    data_files = s3_server.apps_dir.parent / "data" / "files"
    assert not data_files.exists() or not any(data_files.iterdir())

    # A file input read by the app from the bucket, through the API.
    out = s3_client.run({"app": "tests/files-app", "function": "describe",
                         "input": {"file": uploaded["uri"]}})["output"]
    assert out["size"] == len(body)
    assert out["first_bytes_hex"] == body[:8].hex()

    # File outputs land in the bucket and download from the API.
    task = s3_client.run({"app": "tests/files-app", "function": "make_files",
                          "input": {"label": "L"}})
    outputs = [*task["output"]["files"], task["output"]["nested"]["file"]]
    output_ids = [_file_id(f["uri"]) for f in outputs]
    assert [_object(s3, i) for i in output_ids] == [b"one\n", b"two\n", b"nested\n"]
    assert [requests.get(f["uri"], timeout=30).content for f in outputs] == \
        [b"one\n", b"two\n", b"nested\n"]

    # Ranged GETs: a middle, a suffix, and one past the end.
    resp = requests.get(uploaded["uri"], headers={"Range": "bytes=4-8"}, timeout=30)
    assert resp.status_code == 206
    assert resp.content == body[4:9]
    assert resp.headers["content-range"] == f"bytes 4-8/{len(body)}"
    resp = requests.get(uploaded["uri"], headers={"Range": "bytes=-6"}, timeout=30)
    assert (resp.status_code, resp.content) == (206, body[-6:])
    resp = requests.get(uploaded["uri"], headers={"Range": "bytes=100-"}, timeout=30)
    assert resp.status_code == 416
    assert resp.headers["content-range"] == f"bytes */{len(body)}"
    assert resp.json()["detail"] == \
        f"the requested range is outside file \"{upload_id}\", which has {len(body)} bytes"

    # /metrics counts the bucket's bytes from the records.
    metrics = requests.get(s3_server.url + "/metrics", headers=AUTH, timeout=30).text
    gauge = next(int(line.split()[1]) for line in metrics.splitlines()
                 if line.startswith("infsh_files_bytes "))
    assert gauge == sum(_keys(s3).values())

    # DELETE /files/{id} removes the object; DELETE /tasks/{id}?files=true the outputs'.
    assert requests.delete(f"{s3_server.url}/files/{upload_id}", headers=AUTH,
                           timeout=30).status_code in (200, 204)
    assert f"{PREFIX}/{upload_id}" not in _keys(s3)
    assert requests.get(uploaded["uri"], timeout=30).status_code == 404
    resp = requests.delete(f"{s3_server.url}/tasks/{task['id']}?files=true", headers=AUTH,
                           timeout=30)
    assert resp.status_code in (200, 204), resp.text
    left = _keys(s3)
    assert not [i for i in output_ids if f"{PREFIX}/{i}" in left]


def test_a_large_upload_goes_up_in_parts_and_reads_back_by_range(s3, s3_server, s3_client):
    # 12 MiB: past the 5 MiB part size, so a multipart upload of 3 parts.
    body = os.urandom(12 * 1024 * 1024 + 123)
    uploaded = s3_client.files.upload(body)
    file_id = _file_id(uploaded["uri"])
    assert _keys(s3)[f"{PREFIX}/{file_id}"] == len(body)
    head = _bucket_client(s3).head_object(Bucket=BUCKET, Key=f"{PREFIX}/{file_id}")
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # a multipart ETag
    # A range across the first part boundary.
    start, end = 5 * 1024 * 1024 - 10, 5 * 1024 * 1024 + 9
    resp = requests.get(uploaded["uri"], headers={"Range": f"bytes={start}-{end}"}, timeout=60)
    assert resp.status_code == 206
    assert resp.content == body[start:end + 1]
    whole = requests.get(uploaded["uri"], timeout=60)
    assert whole.content == body


def _start_fails(tmp_path, files_url, env):
    proc = subprocess.run(
        [str(_binary()), "serve", "--apps", str(tmp_path), "--data-dir", str(tmp_path / "data"),
         "--host", "127.0.0.1", "--port", "0", "--files", files_url],
        env={**os.environ, **env}, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    return proc.returncode, proc.stderr.decode(errors="replace")


def test_an_unknown_scheme_ends_the_start_with_exit_code_2(tmp_path):
    code, err = _start_fails(tmp_path, "gs://bucket/files", {})
    assert code == 2, err
    assert ("--files gs://bucket/files: unknown scheme \"gs\": "
            "use file:///PATH or s3://BUCKET[/PREFIX]") in err


def test_a_missing_bucket_ends_the_start_with_exit_code_2(tmp_path, s3):
    code, err = _start_fails(tmp_path, "s3://no-such-bucket/x",
                             {**AWS_ENV, "AWS_ENDPOINT_URL": s3})
    assert code == 2, err
    assert "--files s3://no-such-bucket/x: cannot connect: " in err
    assert "NoSuchBucket" in err or "does not exist" in err, err


def test_an_unreachable_endpoint_ends_the_start_with_exit_code_2(tmp_path):
    closed = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    code, err = _start_fails(tmp_path, f"s3://{BUCKET}", {**AWS_ENV, "AWS_ENDPOINT_URL": closed})
    assert code == 2, err
    assert f"--files s3://{BUCKET}: cannot connect: " in err
    assert time.monotonic() - started < 60, "a dead endpoint fails the start in seconds"
