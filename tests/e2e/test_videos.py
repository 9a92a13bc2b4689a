"""Videos (`/v1/videos`) through the official OpenAI SDK on Cinder's own image model: a job
created, polled until `completed` with `progress` only growing, its MP4 decoded by ffmpeg
(frame count, size, frames that differ), thumbnail and spritesheet decoded; list, delete and
remix as OpenAI's; an input_reference file; bad input named; tenants kept apart; a job in
progress when Cinder is killed taken up again after the restart; a deleted video's files gone."""

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import httpx
import openai
import pytest
from PIL import Image

from conftest import own_server, start_server, write_config

# openai-python marks the videos API deprecated (OpenAI's Sora service closes); the API is
# what clients call, and Cinder serves it.
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")

# Keeps the tests short: frames of 32x32 (the model's native size), 4 a second.
SMALL = {"fps = 8\n": "fps = 4\n"}


def ffprobe(path):
    """Stream facts as ffprobe reads them, counting decoded frames (Debian's ffmpeg, installed
    by `cargo xtask setup`)."""
    if shutil.which("ffprobe") is None:
        pytest.fail("ffprobe is missing: run `cargo xtask setup` (it installs Debian's ffmpeg)")
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries",
         "stream=codec_name,width,height,nb_read_frames,r_frame_rate,pix_fmt", "-of", "json", path],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out)["streams"][0]


def frames_of(path, width, height):
    """Every frame of the video as RGB bytes, decoded by ffmpeg."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         check=True, capture_output=True).stdout
    size = width * height * 3
    assert len(raw) % size == 0
    return [raw[i:i + size] for i in range(0, len(raw), size)]


def mean_diff(a, b):
    return sum(abs(x - y) for x, y in zip(a, b)) / len(a)


def poll(c, vid, timeout_s=180):
    """Polls the video until it is over; every progress seen, and the last retrieve."""
    seen = []
    deadline = time.time() + timeout_s
    while True:
        v = c.videos.retrieve(vid)
        seen.append(v.progress)
        if v.status in ("completed", "failed"):
            return seen, v
        assert v.status in ("queued", "in_progress"), v
        assert time.time() < deadline, f"video {vid} not over after {timeout_s} s: {v}"
        time.sleep(0.2)


def save(content, suffix):
    f = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)
    f.write(content.read())
    f.close()
    return f.name


@pytest.fixture(scope="module")
def small_server():
    with own_server("cinder-videos-", SMALL) as srv:
        yield srv


@pytest.fixture(scope="module")
def vc(small_server):
    c = openai.OpenAI(base_url=f"{small_server.url}/v1", api_key="x", max_retries=0, timeout=120)
    yield c
    c.close()


def test_a_video_is_made_polled_and_downloaded_as_an_mp4_ffmpeg_decodes(client):
    """On the default config: sora-2 (an alias of cinder-emoji), 4 seconds at 8 fps, 256x256."""
    v = client.videos.create(model="sora-2", prompt="a smiling face", seconds="4", size="256x256",
                             extra_body={"seed": 42})
    assert (v.object, v.status, v.progress, v.seconds, v.size) == ("video", "queued", 0, "4", "256x256")
    seen, done = poll(client, v.id)
    assert done.status == "completed", done.error
    assert seen == sorted(seen), seen
    assert seen[-1] == 100 and done.completed_at is not None
    path = save(client.videos.download_content(v.id), ".mp4")
    try:
        s = ffprobe(path)
        assert (s["codec_name"], s["width"], s["height"], s["pix_fmt"]) == ("av1", 256, 256, "yuv420p")
        assert s["r_frame_rate"] == "8/1" and int(s["nb_read_frames"]) == 32
        frames = frames_of(path, 256, 256)
        assert len(frames) == 32
        # Frames move: each second differs from the next, and the last from the first.
        assert mean_diff(frames[0], frames[-1]) > 5
        assert all(mean_diff(frames[i], frames[i + 8]) > 1 for i in range(0, 24, 8))
        # ...and the first frame is the thumbnail, up to the encoder's loss.
        thumb = Image.open(io.BytesIO(client.videos.download_content(v.id, variant="thumbnail").read()))
        assert (thumb.format, thumb.size) == ("WEBP", (256, 256))
        assert mean_diff(thumb.convert("RGB").tobytes(), frames[0]) < 12
    finally:
        os.unlink(path)
    sheet = Image.open(io.BytesIO(client.videos.download_content(v.id, variant="spritesheet").read()))
    assert (sheet.format, sheet.size) == ("JPEG", (4 * 128, 128))


def test_the_sdks_create_and_poll_list_and_delete(vc):
    a = vc.videos.create_and_poll(prompt="a red apple", size="32x32", poll_interval_ms=200)
    assert a.status == "completed" and a.progress == 100
    b = vc.videos.create(prompt="a blue whale", size="32x32", seconds="8")
    page = vc.videos.list(limit=1)
    assert [x.id for x in page.data] == [b.id]
    assert page.has_more
    ids = [x.id for x in vc.videos.list(order="asc", after=a.id)]
    assert b.id in ids and a.id not in ids
    gone = vc.videos.delete(b.id)
    assert (gone.id, gone.object, gone.deleted) == (b.id, "video.deleted", True)
    with pytest.raises(openai.NotFoundError):
        vc.videos.retrieve(b.id)
    with pytest.raises(openai.NotFoundError):
        vc.videos.download_content(b.id)
    # A finished video's frames: 4 seconds of 4 fps at 32x32.
    path = save(vc.videos.download_content(a.id), ".mp4")
    try:
        s = ffprobe(path)
        assert (s["width"], s["height"], int(s["nb_read_frames"])) == (32, 32, 16)
    finally:
        os.unlink(path)


def test_remix_keeps_the_source_and_changes_the_prompt(vc):
    src = vc.videos.create_and_poll(prompt="a cat", size="32x32", extra_body={"seed": 3}, poll_interval_ms=200)
    r = vc.videos.remix(src.id, prompt="a dog")
    assert r.remixed_from_video_id == src.id
    assert (r.prompt, r.size, r.seconds, r.model) == ("a dog", src.size, src.seconds, src.model)
    seen, done = poll(vc, r.id)
    assert done.status == "completed"
    one = save(vc.videos.download_content(src.id), ".mp4")
    two = save(vc.videos.download_content(r.id), ".mp4")
    try:
        assert mean_diff(frames_of(one, 32, 32)[-1], frames_of(two, 32, 32)[-1]) > 1
    finally:
        os.unlink(one)
        os.unlink(two)
    # Not before its source is completed.
    queued = vc.videos.create(prompt="a cow", size="32x32")
    with pytest.raises(openai.BadRequestError) as e:
        vc.videos.remix(queued.id, prompt="a horse")
    assert e.value.body["param"] == "video_id"
    vc.videos.delete(queued.id)


def test_an_input_reference_file_starts_the_video(vc):
    picture = Image.new("RGB", (64, 64), (250, 200, 0))
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    v = vc.videos.create(prompt="a sun", size="32x32", input_reference=("sun.png", buf.getvalue(), "image/png"))
    seen, done = poll(vc, v.id)
    assert done.status == "completed", done.error
    thumb = Image.open(io.BytesIO(vc.videos.download_content(v.id, variant="thumbnail").read())).convert("RGB")
    # Started from a yellow picture at strength 0.6: the first frame stays yellowish.
    r, g, b = [sum(thumb.tobytes()[i::3]) / (32 * 32) for i in range(3)]
    assert r > b and g > b, (r, g, b)


@pytest.mark.parametrize("kwargs,param", [
    ({"size": "720x1280"}, "size"),
    ({"size": "1024x1024"}, "size"),  # made as an image, too large for a video
    ({"seconds": "5"}, "seconds"),
    ({"model": "gpt-4o-mini"}, "model"),  # a chat model
    ({"prompt": ""}, "prompt"),
    ({"input_reference": ("x.png", b"not a picture", "image/png")}, "input_reference"),
])
def test_bad_input_is_a_400_naming_the_parameter(vc, kwargs, param):
    args = {"prompt": "p", **kwargs}
    with pytest.raises(openai.BadRequestError) as e:
        vc.videos.create(**args)
    assert e.value.body["param"] == param, e.value.body


def test_an_input_reference_in_json_is_a_file_id_or_a_data_url(vc, small_server):
    """OpenAI's reference object (the SDK sends only files, so raw JSON here)."""
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (0, 90, 250)).save(buf, format="PNG")
    f = vc.files.create(file=("ref.png", buf.getvalue()), purpose="vision")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    post = lambda ref: httpx.post(f"{small_server.url}/v1/videos", timeout=30,
                                  json={"prompt": "sea", "size": "32x32", "input_reference": ref})
    for ref in ({"file_id": f.id}, {"image_url": url}):
        r = post(ref)
        assert r.status_code == 200, r.text
        vc.videos.delete(r.json()["id"])
    for ref, param in [({"image_url": "https://example.com/x.png"}, "input_reference"),
                       ({"file_id": "file-missing"}, "input_reference.file_id"),
                       ({"file_id": f.id, "detail": "high"}, "input_reference.detail"),
                       ("sun.png", "input_reference")]:
        r = post(ref)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_content_that_is_not_ready_and_a_bad_variant(vc, small_server):
    v = vc.videos.create(prompt="slow", size="32x32", seconds="12")
    with pytest.raises(openai.BadRequestError) as e:
        vc.videos.download_content(v.id)
    assert e.value.body["param"] == "video_id"
    with pytest.raises(openai.BadRequestError) as e:
        vc.videos.download_content(v.id, variant="gif")
    assert e.value.body["param"] == "variant"
    with pytest.raises(openai.NotFoundError):
        vc.videos.retrieve("video_nope")
    with pytest.raises(openai.NotFoundError) as e:
        vc.videos.create(prompt="p", model="no-such-model")
    assert e.value.body["param"] == "model"
    vc.videos.delete(v.id)


def test_tenants_see_only_their_own_videos():
    keys = 'api_keys = ["sk-alice", "sk-bob"]'
    with own_server("cinder-videos-tenants-", {"api_keys = []": keys, **SMALL}) as srv:
        alice = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-alice", max_retries=0)
        bob = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-bob", max_retries=0)
        v = alice.videos.create(prompt="a secret", size="32x32")
        with pytest.raises(openai.NotFoundError):
            bob.videos.retrieve(v.id)
        with pytest.raises(openai.NotFoundError):
            bob.videos.delete(v.id)
        assert [x.id for x in bob.videos.list()] == []
        assert [x.id for x in alice.videos.list()] == [v.id]
        seen, done = poll(alice, v.id)
        assert done.status == "completed"


def blob_files(root):
    d = os.path.join(root, "documents", "blobs")
    return sorted(f for f in os.listdir(d) if f.startswith("blob-"))


def test_a_video_in_progress_when_cinder_is_killed_is_finished_after_restart():
    root = tempfile.mkdtemp(prefix="cinder-video-kill-")
    config = write_config(root, {"lease_secs = 30": "lease_secs = 2", **SMALL})
    srv = start_server(config=config)
    try:
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        v = c.videos.create(prompt="a rocket", size="32x32", seconds="12", extra_body={"seed": 9})
        deadline = time.time() + 120
        while c.videos.retrieve(v.id).progress == 0:
            assert time.time() < deadline
            time.sleep(0.1)
        before = c.videos.retrieve(v.id)
        assert before.status == "in_progress" and 0 < before.progress < 95, before
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        srv = start_server(config=config)
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        seen, done = poll(c, v.id)
        assert done.status == "completed", done.error
        assert seen[0] >= before.progress and seen == sorted(seen)
        path = save(c.videos.download_content(v.id), ".mp4")
        try:
            assert int(ffprobe(path)["nb_read_frames"]) == 48
        finally:
            os.unlink(path)
        # The finished video keeps its three files, and a delete takes them.
        assert len(blob_files(root)) == 3
        c.videos.delete(v.id)
        assert blob_files(root) == []
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)
