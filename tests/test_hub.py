"""Hub downloads end to end, with the real huggingface_hub client against a local fake Hub.

huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE once, at import, so the client runs in a
fresh Python process with those set, exactly as a user's would; the fake Hub runs in this one
and logs every request it answers. Publishing is tested with HfApi's upload calls replaced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock
from urllib.parse import unquote

import pytest
import torch
import yaml
from huggingface_hub import CommitInfo
from safetensors.torch import save_file

import zoo.hub as hub
from zoo.weights import WeightsError, add_entry, find_weights, load_manifest, save_manifest

from .conftest import WEIGHTS_META as META
from .conftest import random_state

REV_PINNED, REV_MAIN, REV_EXTERNAL = "a" * 40, "b" * 40, "d" * 40


def fake_hub_env(fake, tmp, **extra: str) -> dict[str, str]:
    """The environment of a client process that talks to ``fake`` only: no real HF settings or
    proxies, a fresh HF cache under ``tmp``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and "proxy" not in k.lower()}
    env.update(
        HF_ENDPOINT=fake.url,
        HF_HOME=str(tmp / "hf"),
        HF_HUB_CACHE=str(tmp / "hf" / "hub"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        NO_PROXY="127.0.0.1",
        **extra,
    )
    return env


class FakeHub:
    """Answers HEAD and GET on ``/{org}/{repo}/resolve/{revision}/{filename}`` as the Hub does.

    The headers are those ``huggingface_hub.file_download.get_hf_file_metadata`` reads:
    ``X-Repo-Commit`` (the commit the revision resolved to), ``ETag``/``X-Linked-Etag`` (the
    sha256, as for LFS files), ``X-Linked-Size``/``Content-Length``; errors carry ``X-Error-Code``.
    """

    def __init__(self):
        self.commits: dict[tuple[str, str], dict[str, bytes]] = {}  # (repo, commit) -> files
        self.branches: dict[tuple[str, str], str] = {}  # (repo, branch) -> commit
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, repo: str, commit: str, files: dict[str, bytes], branch: str | None = None) -> None:
        self.commits[(repo, commit)] = files
        if branch:
            self.branches[(repo, branch)] = commit

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def requested(self, method: str, pattern: str) -> list[str]:
        return [path for m, path in self.requests if re.fullmatch(method, m) and re.fullmatch(pattern, path)]

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                self.answer(body=False)

            def do_GET(self):
                self.answer(body=True)

            def answer(self, body: bool):
                hub.requests.append((self.command, self.path))
                match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", self.path)
                if not match:
                    return self.fail(404, "RepoNotFound")
                repo, revision, filename = match[1], unquote(match[2]), unquote(match[3])
                if not any(r == repo for r, _ in hub.commits):
                    return self.fail(404, "RepoNotFound")
                commit = hub.branches.get((repo, revision), revision)
                if (repo, commit) not in hub.commits:
                    return self.fail(404, "RevisionNotFound")
                data = hub.commits[(repo, commit)].get(filename)
                if data is None:
                    return self.fail(404, "EntryNotFound", commit)
                sha = hashlib.sha256(data).hexdigest()
                self.send_response(200)
                for key, value in {
                    "X-Repo-Commit": commit,
                    "ETag": f'"{sha}"',
                    "X-Linked-Etag": f'"{sha}"',
                    "X-Linked-Size": str(len(data)),
                    "Content-Length": str(len(data)),
                    "Content-Type": "application/octet-stream",
                }.items():
                    self.send_header(key, value)
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def fail(self, status: int, code: str, commit: str | None = None):
                message = json.dumps({"error": code}).encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", code)
                if commit:
                    self.send_header("X-Repo-Commit", commit)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(message)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(message)

            def log_message(self, *args):
                pass

        return Handler


# The client: one fresh process, as a user's script would be; it reports instead of raising.
CLIENT = r"""
import json, sys
import torch
from safetensors.torch import load_file
import zoo

results = []
for name, pretrained, expected in json.loads(sys.argv[1]):
    try:
        got = zoo.create_model(name, pretrained=pretrained).state_dict()
        want = load_file(expected)
        results.append({"ok": got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)})
    except Exception as e:
        results.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
print(json.dumps(results))
"""


def run_client(env: dict, calls: list, client: str = CLIENT) -> list[dict]:
    """Run the ``client`` script in a fresh process on ``calls``; its JSON result."""
    done = subprocess.run(
        [sys.executable, "-c", client, json.dumps(calls)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def online(tmp_path_factory):
    """The fake Hub with three repos' worth of commits, and one client run against it, online.

    ``resnet20.pinned`` is published at REV_PINNED; the repo's main branch has since moved to
    REV_MAIN, holding other weights. ``resnet20.moved`` claims the pinned file's hash at REV_MAIN,
    ``resnet20.gone`` a commit the Hub does not have. ``someorg/resnet18-test`` is a timm repo.
    """
    tmp = tmp_path_factory.mktemp("hub")
    files = {}
    for key, name, seed in [("pinned", "resnet20", 0), ("main", "resnet20", 1)]:
        save_file(random_state(name, seed), tmp / f"{key}.safetensors")
        files[key] = tmp / f"{key}.safetensors"
    import timm

    torch.manual_seed(2)
    save_file(timm.create_model("resnet18").state_dict(), tmp / "timm_resnet18.safetensors")

    fake = FakeHub()
    fake.add("zoo-test/resnet20", REV_PINNED, {"model.safetensors": files["pinned"].read_bytes()})
    fake.add("zoo-test/resnet20", REV_MAIN, {"model.safetensors": files["main"].read_bytes()}, branch="main")
    fake.add(
        "someorg/resnet18-test",
        REV_EXTERNAL,
        {"model.safetensors": (tmp / "timm_resnet18.safetensors").read_bytes()},
        branch="main",
    )

    manifest = tmp / "manifest.json"
    manifest.write_text("[]\n")
    with mock.patch.dict(os.environ, {"ZOO_WEIGHTS_DIR": str(tmp / "publisher_weights")}):
        for tag in ("pinned", "moved", "gone"):
            add_entry(f"resnet20.{tag}", files["pinned"], default=tag == "pinned", manifest=manifest, **META)
    revisions = {"pinned": REV_PINNED, "moved": REV_MAIN, "gone": "c" * 40}
    entries = [
        dataclasses.replace(w, hf_repo_id="zoo-test/resnet20", hf_revision=revisions[w.name.split(".")[1]])
        for w in load_manifest(manifest)
    ]
    save_manifest(entries, manifest)

    env = fake_hub_env(
        fake,
        tmp,
        ZOO_MANIFEST=str(manifest),
        ZOO_WEIGHTS_DIR=str(tmp / "user_weights"),  # empty: the Hub is the only source
    )
    calls = [
        ["resnet20.pinned", True, str(files["pinned"])],
        ["resnet20", True, str(files["pinned"])],  # the default again: from the cache
        ["resnet20.moved", True, str(files["pinned"])],
        ["resnet20.gone", True, str(files["pinned"])],
        ["resnet18", "hf-hub:someorg/resnet18-test", str(tmp / "timm_resnet18.safetensors")],
    ]
    results = dict(zip(["pinned", "cached", "moved", "gone", "external"], run_client(env, calls)))
    yield dict(fake=fake, env=env, results=results, files=files, tmp=tmp)
    fake.stop()


def test_first_download_goes_through_the_hub_cache(online):
    assert online["results"]["pinned"] == {"ok": True}
    snapshot = Path(online["env"]["HF_HUB_CACHE"]) / "models--zoo-test--resnet20" / "snapshots" / REV_PINNED
    assert (snapshot / "model.safetensors").read_bytes() == online["files"]["pinned"].read_bytes()


def test_cached_file_is_reused_without_a_second_download(online):
    assert online["results"]["cached"] == {"ok": True}
    gets = online["fake"].requested("GET", f"/zoo-test/resnet20/resolve/{REV_PINNED}/model.safetensors")
    assert len(gets) == 1


def test_pinned_revision_is_the_one_requested(online):
    fake = online["fake"]
    assert fake.requested("HEAD", f"/zoo-test/resnet20/resolve/{REV_PINNED}/model.safetensors")
    assert not fake.requested("HEAD|GET", "/zoo-test/resnet20/resolve/main/.*")


def test_other_revision_content_is_refused_by_hash(online):
    pinned_sha = hashlib.sha256(online["files"]["pinned"].read_bytes()).hexdigest()
    main_sha = hashlib.sha256(online["files"]["main"].read_bytes()).hexdigest()
    error = online["results"]["moved"]["error"]
    assert error.startswith("WeightsError: ") and REV_MAIN in error
    assert f"sha256 expected {pinned_sha}, got {main_sha}" in error


def test_missing_revision_is_a_clear_error(online):
    error = online["results"]["gone"]["error"]
    assert error.startswith("WeightsError: cannot get model.safetensors from Hub repo zoo-test/resnet20")
    assert f"revision {'c' * 40}" in error and "RevisionNotFoundError" in error


def test_external_timm_weights_load_strictly(online):
    assert online["results"]["external"] == {"ok": True}
    assert online["fake"].requested("GET", "/someorg/resnet18-test/resolve/main/model.safetensors")


def test_offline_mode_uses_only_the_cache(online):
    # The fake Hub still answers, so an online client would be seen asking it about "main".
    count = len(online["fake"].requests)
    env = {**online["env"], "HF_HUB_OFFLINE": "1"}
    calls = [
        ["resnet20.pinned", True, str(online["files"]["pinned"])],
        ["resnet18", "hf-hub:someorg/resnet18-test", str(online["tmp"] / "timm_resnet18.safetensors")],
        ["resnet18", "hf-hub:someorg/never-fetched", str(online["tmp"] / "timm_resnet18.safetensors")],
    ]
    pinned, external, never = run_client(env, calls)
    assert pinned == {"ok": True} and external == {"ok": True}
    assert "cannot get model.safetensors from Hub repo someorg/never-fetched" in never["error"]
    assert "LocalEntryNotFoundError" in never["error"] and "offline" in never["error"].lower()
    assert len(online["fake"].requests) == count


# -- publishing --------------------------------------------------------------------------------------------


@pytest.fixture
def published(weight_store):
    for tag in ("pinned", "other"):
        weight_store.add(f"resnet20.{tag}", default=tag == "pinned")
    return weight_store.manifest


def front_matter(card: str) -> dict:
    _, meta, _ = card.split("---\n", 2)
    return yaml.safe_load(meta)


def test_push_dry_run_writes_a_complete_folder(published, tmp_path, capsys):
    before = published.read_bytes()
    hub.main(
        ["push", "resnet20.pinned", "--repo", "org/resnet20", "--dry-run", "--out", str(tmp_path / "out")]
    )
    out, w = tmp_path / "out", find_weights("resnet20.pinned")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest() == w.sha256

    config = json.loads((out / "config.json").read_text())
    assert (config["architecture"], config["num_classes"], config["model_args"]) == ("resnet20", 10, {})
    assert config["input"] == dataclasses.asdict(w.input)
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]

    card = (out / "README.md").read_text()
    meta = front_matter(card)
    assert (meta["library_name"], meta["license"], meta["datasets"]) == ("zoo", "mit", ["cifar10"])
    assert meta["pipeline_tag"] == "image-classification" and "zoo" in meta["tags"]
    (index,) = meta["model-index"]
    (result,) = index["results"]
    assert index["name"] == "resnet20.pinned"
    assert result["dataset"] == {"name": "cifar10", "type": "cifar10", "split": "test"}
    assert {m["type"]: m["value"] for m in result["metrics"]} == w.metrics
    assert w.provenance.command in card and w.provenance.eval_command in card and w.sha256 in card
    assert "dry run" in capsys.readouterr().out
    assert published.read_bytes() == before  # nothing recorded


@pytest.mark.parametrize("repo", ["not a repo id!!", "org/name/extra", "org/-name", ""])
def test_push_refuses_a_repo_id_the_hub_would(published, tmp_path, repo):
    with pytest.raises(SystemExit, match=f"error: --repo '{re.escape(repo)}' is not a Hub repo id"):
        hub.main(["push", "resnet20.pinned", "--repo", repo, "--dry-run", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_push_uploads_the_folder_and_pins_the_commit(published, monkeypatch):
    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = (repo_id, kwargs)

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls["uploaded"] = (repo_id, sorted(p.name for p in Path(folder_path).iterdir()))
        oid = "e" * 40
        return CommitInfo(f"https://huggingface.co/{repo_id}/commit/{oid}", kwargs["commit_message"], "", oid)

    monkeypatch.setattr(hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(hub.HfApi, "upload_folder", upload_folder)
    monkeypatch.delenv("ZOO_MANIFEST")  # the manifest it records in is the one it is given
    hub.main(["push", "resnet20.pinned", "--repo", "org/resnet20", "--manifest", str(published)])
    assert calls["create_repo"] == ("org/resnet20", {"private": None, "exist_ok": True})
    assert calls["uploaded"] == ("org/resnet20", ["README.md", "config.json", "model.safetensors"])
    by_name = {w.name: w for w in load_manifest(published)}
    assert (by_name["resnet20.pinned"].hf_repo_id, by_name["resnet20.pinned"].hf_revision) == (
        "org/resnet20",
        "e" * 40,
    )
    assert by_name["resnet20.other"].hf_revision == ""


def test_push_refuses_a_file_that_does_not_match(published, tmp_path):
    path = tmp_path / "weights" / "resnet20.pinned.safetensors"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(WeightsError, match="not the file the manifest records for resnet20.pinned"):
        hub.push("resnet20.pinned", "org/resnet20", dry_run=True, folder=tmp_path / "out")
