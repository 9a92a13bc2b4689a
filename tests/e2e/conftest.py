"""End-to-end fixtures: one real `cinder` server for the whole run.

`cargo xtask test` sets CINDER_BIN, CINDER_CONFIG and CINDER_PLUGINS and runs
`python -m pytest -q tests/e2e` from the repository root. The server is started with
`--port 0`; its port is read from the `listening on http://HOST:PORT` log line it writes
on stderr once the models are loaded.
"""

import collections
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import httpx
import openai
import pytest

# Loading the model on a slow 2-core machine can take a minute; leave plenty of room.
STARTUP_TIMEOUT_S = 300
STOP_TIMEOUT_S = 10
# Generation is slow (~10 tokens/s); one request may legitimately take a while.
REQUEST_TIMEOUT_S = 300
LOG_TAIL_LINES = 200

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
LISTENING = re.compile(r"listening on http://(\S+?):(\d+)")


class Server:
    """A running `cinder` process whose combined stdout/stderr is drained by a thread."""

    def __init__(self, argv):
        self.argv = argv
        self.port = None
        self.ready = threading.Event()
        self.tail = collections.deque(maxlen=LOG_TAIL_LINES)
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.reader = threading.Thread(target=self._drain, name="cinder-log", daemon=True)
        self.reader.start()

    def _drain(self):
        # Keep reading until EOF so the pipe never fills and blocks the server.
        for raw in iter(self.proc.stdout.readline, b""):
            line = ANSI_ESCAPE.sub("", raw.decode("utf-8", errors="replace")).rstrip("\r\n")
            self.tail.append(line)
            if self.port is None:
                m = LISTENING.search(line)
                if m:
                    self.port = int(m.group(2))
                    self.ready.set()
        self.proc.stdout.close()

    def log(self):
        return "\n".join(self.tail)

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.2):
            if self.proc.poll() is not None:
                self.reader.join(5)  # collect what it printed before dying
                return f"cinder exited with code {self.proc.returncode} before it was ready"
            if time.monotonic() > deadline:
                return f"cinder did not log 'listening on http://...' within {timeout} s"
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)


def _required_env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: run the end-to-end tests through `cargo xtask test`, "
            "or set CINDER_BIN, CINDER_CONFIG and CINDER_PLUGINS yourself",
            pytrace=False,
        )
    return value


def start_server(config=None, plugins=None):
    """Starts a `cinder` of its own (default config and plugins unless given) on a free port
    and waits until it serves; fails the test with its output if it does not."""
    argv = [
        _required_env("CINDER_BIN"),
        "--config",
        config or _required_env("CINDER_CONFIG"),
        "--plugins",
        plugins or _required_env("CINDER_PLUGINS"),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ]
    srv = Server(argv)
    problem = srv.wait_ready(STARTUP_TIMEOUT_S)
    if problem is not None:
        srv.stop()
        pytest.fail(f"{problem}\ncommand: {' '.join(argv)}\n--- server output ---\n{srv.log()}", pytrace=False)
    srv.url = f"http://127.0.0.1:{srv.port}"
    return srv


DEFAULT_STORAGE = 'dir = "~/.local/share/cinder/documents"'


def write_config(root, edits=None):
    """Writes a copy of the default config into `root` with its state under `root/documents`
    and `edits` ({old: new}, each `old` must be in the file; an edit of `DEFAULT_STORAGE`
    replaces that default); returns the copy's path."""
    config = os.path.join(root, "cinder.toml")
    text = open(_required_env("CINDER_CONFIG")).read()
    edits = {DEFAULT_STORAGE: f'dir = "{root}/documents"', **(edits or {})}
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    # Paths relative to the default config (the committed image model) stay where they are.
    repo = os.path.dirname(os.path.abspath(_required_env("CINDER_CONFIG")))
    text = text.replace('path = "models/', f'path = "{repo}/models/')
    with open(config, "w") as f:
        f.write(text)
    return config


@contextlib.contextmanager
def own_server(prefix, edits):
    """A server of its own on a copy of the default config with `edits` ({old: new}, each
    `old` must be in the file) and its documents in a fresh folder; stopped and removed after,
    failing the test if it died on the way."""
    root = tempfile.mkdtemp(prefix=prefix)
    srv = start_server(config=write_config(root, edits))
    try:
        yield srv
    finally:
        died = srv.proc.poll()
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert died is None, srv.log()


@pytest.fixture(scope="session")
def server():
    srv = start_server()
    yield srv
    died = srv.proc.poll()
    srv.stop()
    if died is not None:
        pytest.fail(f"cinder exited with code {died} during the run\n--- server output ---\n{srv.log()}", pytrace=False)


@pytest.fixture(scope="session")
def root_url(server):
    """The server's root, e.g. http://127.0.0.1:PORT (where /health lives)."""
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture(scope="session")
def base_url(root_url):
    """The OpenAI base URL, e.g. http://127.0.0.1:PORT/v1."""
    return f"{root_url}/v1"


@pytest.fixture(scope="session")
def client(base_url):
    c = openai.OpenAI(base_url=base_url, api_key="sk-anything", max_retries=0, timeout=REQUEST_TIMEOUT_S)
    yield c
    c.close()


@pytest.fixture(scope="session")
def http(root_url):
    """A raw HTTP client on the server's root, for checking bodies byte for byte."""
    with httpx.Client(base_url=root_url, timeout=REQUEST_TIMEOUT_S) as c:
        yield c
