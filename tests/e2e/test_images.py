"""Images through the official SDK: `client.images.generate` on the tiny random-weight Stable
Diffusion pipeline of tests/fixtures/sd-tiny (what it paints is noise, but the pipeline, its
sizes, seeds, encoders and limits are the real ones), served as an image model beside the
default chat model."""

import base64
import io
import os
import time

import openai
import pytest
from PIL import Image

from conftest import own_server

SD_TINY = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "fixtures", "sd-tiny", "pipeline"))
ANCHOR = "# More chat models run beside the first"
MODEL = "sd-tiny"


def images_config(image_table="", edits=None):
    block = (
        f'[[models]]\nid = "{MODEL}"\npath = "{SD_TINY}"\nbackend = "cpu"\naliases = ["gpt-image-1"]\n'
        f"[models.image]\nsteps = 4\n{image_table}\n"
    )
    return {ANCHOR: block + ANCHOR, **(edits or {})}


@pytest.fixture(scope="module")
def images_server():
    with own_server("cinder-images-", images_config()) as srv:
        yield srv


@pytest.fixture(scope="module")
def ic(images_server):
    c = openai.OpenAI(base_url=f"{images_server.url}/v1", api_key="x", max_retries=0, timeout=120)
    yield c
    c.close()


def decoded(b64):
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_generate_returns_decodable_images_of_the_requested_size(ic):
    assert MODEL in {m.id for m in ic.models.list().data}
    r = ic.images.generate(model=MODEL, prompt="a lighthouse at dusk", size="96x64", extra_body={"seed": 11})
    assert len(r.data) == 1 and r.data[0].url is None
    img = decoded(r.data[0].b64_json)
    assert img.format == "PNG" and img.size == (96, 64) and img.mode == "RGB"
    assert r.size == "96x64" and r.output_format == "png" and r.quality == "high"
    assert r.usage.input_tokens > 2 and r.usage.input_tokens_details.text_tokens == r.usage.input_tokens
    assert r.usage.output_tokens == 6 * 4 and r.usage.total_tokens == r.usage.input_tokens + 24
    # Random weights still make an image, not a flat field.
    raw = img.tobytes()
    assert len({raw[i:i + 3] for i in range(0, len(raw), 3)}) > 10

    for fmt, pil in (("jpeg", "JPEG"), ("webp", "WEBP")):
        r = ic.images.generate(model=MODEL, prompt="a lighthouse", output_format=fmt, size="32x32",
                               extra_body={"seed": 2})
        img = decoded(r.data[0].b64_json)
        assert img.format == pil and img.size == (32, 32), fmt


def test_the_same_seed_gives_the_same_image_and_n_gives_distinct_ones(ic):
    def make(seed, n=1):
        return ic.images.generate(model=MODEL, prompt="a red bicycle", n=n, size="64x64", extra_body={"seed": seed})

    a, b, c = make(5), make(5), make(6)
    pixels = lambda r, i=0: decoded(r.data[i].b64_json).tobytes()
    assert pixels(a) == pixels(b)
    assert pixels(a) != pixels(c)
    three = make(5, n=3)
    assert len(three.data) == 3
    # Image i of n is made from seed + i: the first is the seed's own image.
    assert pixels(three, 0) == pixels(a) and pixels(three, 1) == pixels(c)
    assert len({pixels(three, i) for i in range(3)}) == 3


def test_the_alias_and_quality_and_the_default_size(ic):
    # `gpt-image-1` is the fixture's alias here, and the plugin's default model.
    r = ic.images.generate(prompt="a snowy owl", quality="low", extra_body={"seed": 1})
    assert decoded(r.data[0].b64_json).size == (64, 64) and r.quality == "low"
    r = ic.images.generate(model="gpt-image-1", prompt="a snowy owl", size="auto", quality="medium")
    assert decoded(r.data[0].b64_json).size == (64, 64)


def test_streaming_sends_partial_images_and_the_completed_one(ic):
    stream = ic.images.generate(model=MODEL, prompt="a tall cactus", stream=True, partial_images=2,
                                size="64x64", extra_body={"seed": 9, "steps": 6})
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds == ["image_generation.partial_image"] * 2 + ["image_generation.completed"], kinds
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    for e in events:
        assert decoded(e.b64_json).size == (64, 64)
    done = events[-1]
    assert done.usage.output_tokens == 16 and done.size == "64x64"
    whole = ic.images.generate(model=MODEL, prompt="a tall cactus", size="64x64", extra_body={"seed": 9, "steps": 6})
    assert decoded(whole.data[0].b64_json).tobytes() == decoded(done.b64_json).tobytes()


@pytest.mark.parametrize(
    "kwargs,param",
    [
        ({"size": "1024x1024"}, "size"),
        ({"size": "huge"}, "size"),
        ({"n": 11}, "n"),
        ({"quality": "ultra"}, "quality"),
        ({"output_format": "gif"}, "output_format"),
        ({"output_compression": 50}, "output_compression"),
        ({"background": "transparent"}, "background"),
        ({"style": "vivid"}, "style"),
        ({"response_format": "url", "stream": True}, "response_format"),
        ({"extra_body": {"steps": 500}}, "steps"),
        ({"extra_body": {"seed": -3}}, "seed"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(ic, kwargs, param):
    with pytest.raises(openai.BadRequestError) as e:
        ic.images.generate(model=MODEL, prompt="x", **kwargs)
    assert e.value.body["param"] == param, e.value.body


def test_models_that_do_not_make_images_and_routes_not_built(ic, images_server):
    with pytest.raises(openai.BadRequestError) as e:
        ic.images.generate(model="smollm2-135m-instruct", prompt="x")
    assert e.value.body["param"] == "model" and "does not generate images" in e.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        ic.images.generate(model="no-such-model", prompt="x")
    with pytest.raises(openai.BadRequestError) as e:
        ic.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert "is an image model" in e.value.body["message"]
    png = io.BytesIO()
    Image.new("RGB", (64, 64)).save(png, format="PNG")
    with pytest.raises(openai.BadRequestError) as e:
        ic.images.edit(model=MODEL, image=("a.png", png.getvalue(), "image/png"), prompt="x")
    assert e.value.body["param"] == "image"
    with pytest.raises(openai.BadRequestError) as e:
        ic.images.create_variation(model=MODEL, image=("a.png", png.getvalue(), "image/png"))
    assert e.value.body["param"] == "image"
    import httpx
    r = httpx.get(f"{images_server.url}/v1/images/generations")
    assert r.status_code == 405


def test_urls_serve_without_a_key_and_a_full_queue_is_a_429_with_retry_after():
    # API keys required; no request may wait behind the running one.
    edits = {'api_keys = []': 'api_keys = ["sk-images"]',
             "[plugins.settings.images]": "[plugins.settings.images]\nurl_expires_secs = 2"}
    with own_server("cinder-images-queue-", images_config("max_waiting = 0\n", edits)) as srv:
        import concurrent.futures
        import httpx

        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-images", max_retries=0, timeout=120)
        r = c.images.generate(model=MODEL, prompt="a red kite", n=2, response_format="url", output_format="jpeg",
                              extra_body={"seed": 4})
        assert all(d.b64_json is None and d.url.startswith(f"{srv.url}/links/link-") for d in r.data)
        # Fetched as OpenAI's are: no key; the content type is the format's.
        got = httpx.get(r.data[0].url)
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
        img = Image.open(io.BytesIO(got.content))
        assert img.format == "JPEG" and img.size == (64, 64)
        same = c.images.generate(model=MODEL, prompt="a red kite", output_format="jpeg", extra_body={"seed": 4})
        assert base64.b64decode(same.data[0].b64_json) == got.content
        assert httpx.get(r.data[1].url).content != got.content
        guessed = r.data[0].url[:-4] + "zzzz"
        assert httpx.get(guessed).status_code == 404
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{srv.url}/v1", api_key="wrong", max_retries=0).images.generate(
                model=MODEL, prompt="x")
        # The link lives `url_expires_secs` (2 s here), then serves nothing.
        time.sleep(2.5)
        gone = httpx.get(r.data[0].url)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "link_not_found"

        slow = {"model": MODEL, "prompt": "a slow one", "size": "96x64", "n": 10, "extra_body": {"steps": 40}}
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(c.images.generate, **slow)
            time.sleep(0.5)
            refused = None
            for _ in range(50):
                try:
                    c.images.generate(model=MODEL, prompt="x", extra_body={"steps": 1})
                except openai.RateLimitError as e:
                    refused = e
                    break
            assert refused is not None, "a second request was never refused"
            assert int(refused.response.headers["retry-after"]) >= 1
            assert len(first.result().data) == 10
